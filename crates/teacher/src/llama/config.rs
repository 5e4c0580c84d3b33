//! LLaMA's `config.json` (Hugging Face layout): the fields the forward needs.

use serde::Deserialize;
use serde_json::Value;

/// The LLaMA hyper-parameters read from `config.json` (LLaMA-2 and 3.x).
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// Vocabulary size (128256 for LLaMA-3).
    pub vocab_size: usize,
    /// Width D (`hidden_size`: 2048 for Llama-3.2-1B, 3072 for 3B).
    pub hidden_size: usize,
    /// Inner width of the SwiGLU MLP (8192 for 1B).
    pub intermediate_size: usize,
    /// Blocks in the checkpoint (16 for 1B, 28 for 3B).
    pub num_hidden_layers: usize,
    /// Query heads (32 for 1B).
    pub num_attention_heads: usize,
    /// Key/value heads (8 for 1B: grouped-query attention).
    pub num_key_value_heads: usize,
    /// Width of one head (`head_dim`, default `hidden_size / num_attention_heads`).
    pub head_dim: usize,
    /// Longest prompt the model takes.
    pub max_position_embeddings: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// Base of the rotary frequencies (500000 for LLaMA-3).
    pub rope_theta: f64,
    /// LLaMA-3.1's frequency scaling (`rope_type: llama3`), `None` for plain rotary positions.
    pub rope_scaling: Option<Llama3Scaling>,
    /// Biases on the q, k, v and o projections.
    pub attention_bias: bool,
    /// Biases on the MLP's projections.
    pub mlp_bias: bool,
}

/// The `llama3` rotary scaling: long wavelengths divided by `factor`, short ones kept, a
/// smooth blend between.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Llama3Scaling {
    /// Divisor of the long-wavelength frequencies (32 for Llama-3.2).
    pub factor: f64,
    /// Wavelengths above `original / low_freq_factor` are divided by `factor`.
    pub low_freq_factor: f64,
    /// Wavelengths below `original / high_freq_factor` are kept.
    pub high_freq_factor: f64,
    /// The context length the model was trained at before scaling (8192).
    pub original_max_position_embeddings: f64,
}

#[derive(Deserialize)]
struct RawConfig {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    #[serde(default)]
    num_key_value_heads: Option<usize>,
    #[serde(default)]
    head_dim: Option<usize>,
    #[serde(default = "default_positions")]
    max_position_embeddings: usize,
    #[serde(default = "default_eps")]
    rms_norm_eps: f64,
    #[serde(default)]
    rope_theta: Option<f64>,
    /// The hub's files (transformers 4).
    #[serde(default)]
    rope_scaling: Option<Value>,
    /// transformers 5 writes `rope_theta` and the scaling here.
    #[serde(default)]
    rope_parameters: Option<Value>,
    #[serde(default = "default_act")]
    hidden_act: String,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
}

fn default_positions() -> usize {
    2048
}

fn default_eps() -> f64 {
    1e-6
}

fn default_act() -> String {
    "silu".to_string()
}

impl LlamaConfig {
    /// Parses the text of a `config.json`; the error says what is wrong.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let raw: RawConfig = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if raw.hidden_act != "silu" {
            return Err(format!(
                "hidden_act `{}` is not supported (LLaMA's SwiGLU uses silu)",
                raw.hidden_act
            ));
        }
        let heads = raw.num_attention_heads;
        let kv_heads = raw.num_key_value_heads.unwrap_or(heads);
        if heads == 0 || kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
            return Err(format!(
                "num_attention_heads {heads} is not a multiple of num_key_value_heads {kv_heads}"
            ));
        }
        let head_dim = match raw.head_dim {
            Some(hd) => hd,
            None if raw.hidden_size.is_multiple_of(heads) => raw.hidden_size / heads,
            None => {
                return Err(format!(
                    "hidden_size {} is not a multiple of num_attention_heads {heads}",
                    raw.hidden_size
                ));
            }
        };
        if head_dim == 0 || !head_dim.is_multiple_of(2) {
            return Err(format!(
                "head_dim {head_dim} must be even for rotary positions"
            ));
        }
        if raw.num_hidden_layers == 0 || raw.vocab_size == 0 || raw.max_position_embeddings == 0 {
            return Err(
                "num_hidden_layers, vocab_size and max_position_embeddings must be positive"
                    .to_string(),
            );
        }
        let parameters = raw.rope_parameters.as_ref();
        let rope_theta = raw
            .rope_theta
            .or_else(|| {
                parameters
                    .and_then(|p| p.get("rope_theta"))
                    .and_then(Value::as_f64)
            })
            .unwrap_or(10000.0);
        let rope_scaling = match raw.rope_scaling.as_ref().or(parameters) {
            Some(scaling) if !scaling.is_null() => parse_scaling(scaling)?,
            _ => None,
        };
        Ok(LlamaConfig {
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: heads,
            num_key_value_heads: kv_heads,
            head_dim,
            max_position_embeddings: raw.max_position_embeddings,
            rms_norm_eps: raw.rms_norm_eps,
            rope_theta,
            rope_scaling,
            attention_bias: raw.attention_bias,
            mlp_bias: raw.mlp_bias,
        })
    }

    /// `meta-llama/Llama-3.2-1B`'s configuration (1.24 B parameters): 16 blocks of width 2048,
    /// 32 query heads of 64 over 8 key/value heads, MLP 8192, `llama3` rotary scaling.
    pub fn llama_3_2_1b() -> Self {
        LlamaConfig {
            vocab_size: 128_256,
            hidden_size: 2048,
            intermediate_size: 8192,
            num_hidden_layers: 16,
            num_attention_heads: 32,
            num_key_value_heads: 8,
            head_dim: 64,
            max_position_embeddings: 131_072,
            rms_norm_eps: 1e-5,
            rope_theta: 500_000.0,
            rope_scaling: Some(Llama3Scaling {
                factor: 32.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192.0,
            }),
            attention_bias: false,
            mlp_bias: false,
        }
    }

    /// `meta-llama/Llama-3.2-3B`'s configuration (3.21 B parameters): 28 blocks of width
    /// 3072, 24 query heads of 128 over 8 key/value heads, MLP 8192.
    pub fn llama_3_2_3b() -> Self {
        LlamaConfig {
            hidden_size: 3072,
            num_hidden_layers: 28,
            num_attention_heads: 24,
            head_dim: 128,
            ..Self::llama_3_2_1b()
        }
    }

    /// The rotary inverse frequencies, one per pair of a head's dimensions, with the scaling
    /// applied (Hugging Face's `_compute_llama3_parameters`).
    pub fn inverse_frequencies(&self) -> Vec<f32> {
        let half = self.head_dim / 2;
        (0..half)
            .map(|i| {
                let base = 1.0 / self.rope_theta.powf((2 * i) as f64 / self.head_dim as f64);
                let scaled = match self.rope_scaling {
                    Some(s) => s.scale(base),
                    None => base,
                };
                scaled as f32
            })
            .collect()
    }
}

impl Llama3Scaling {
    /// One inverse frequency after the scaling.
    fn scale(&self, inv_freq: f64) -> f64 {
        let original = self.original_max_position_embeddings;
        let low_freq_wavelen = original / self.low_freq_factor;
        let high_freq_wavelen = original / self.high_freq_factor;
        let wavelen = 2.0 * std::f64::consts::PI / inv_freq;
        if wavelen < high_freq_wavelen {
            inv_freq
        } else if wavelen > low_freq_wavelen {
            inv_freq / self.factor
        } else {
            let smooth = (original / wavelen - self.low_freq_factor)
                / (self.high_freq_factor - self.low_freq_factor);
            (1.0 - smooth) * inv_freq / self.factor + smooth * inv_freq
        }
    }
}

/// A `rope_scaling` / `rope_parameters` object: `default` (none) or `llama3`.
fn parse_scaling(scaling: &Value) -> Result<Option<Llama3Scaling>, String> {
    let kind = scaling
        .get("rope_type")
        .or_else(|| scaling.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    match kind {
        "default" => Ok(None),
        "llama3" => {
            let field = |name: &str| {
                scaling
                    .get(name)
                    .and_then(Value::as_f64)
                    .ok_or_else(|| format!("rope scaling `llama3` needs a number `{name}`"))
            };
            let s = Llama3Scaling {
                factor: field("factor")?,
                low_freq_factor: field("low_freq_factor")?,
                high_freq_factor: field("high_freq_factor")?,
                original_max_position_embeddings: field("original_max_position_embeddings")?,
            };
            if s.factor <= 0.0
                || s.high_freq_factor <= s.low_freq_factor
                || s.low_freq_factor <= 0.0
            {
                return Err(format!(
                    "rope scaling `llama3` needs factor > 0 and high_freq_factor > low_freq_factor > 0 (got {s:?})"
                ));
            }
            Ok(Some(s))
        }
        other => Err(format!(
            "rope scaling `{other}` is not supported (default, llama3)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `meta-llama/Llama-3.2-1B`'s config.json as the hub ships it (transformers 4 layout).
    const LLAMA_32_1B: &str = r#"{"architectures":["LlamaForCausalLM"],"attention_bias":false,
        "attention_dropout":0.0,"bos_token_id":128000,"eos_token_id":128001,"head_dim":64,
        "hidden_act":"silu","hidden_size":2048,"initializer_range":0.02,
        "intermediate_size":8192,"max_position_embeddings":131072,"mlp_bias":false,
        "model_type":"llama","num_attention_heads":32,"num_hidden_layers":16,
        "num_key_value_heads":8,"pretraining_tp":1,"rms_norm_eps":1e-05,
        "rope_scaling":{"factor":32.0,"high_freq_factor":4.0,"low_freq_factor":1.0,
        "original_max_position_embeddings":8192,"rope_type":"llama3"},"rope_theta":500000.0,
        "tie_word_embeddings":true,"torch_dtype":"bfloat16","vocab_size":128256}"#;

    #[test]
    fn parses_the_hub_layout_of_llama_3_2() {
        let c = LlamaConfig::from_json(LLAMA_32_1B).unwrap();
        assert_eq!(c, LlamaConfig::llama_3_2_1b());
        assert_eq!(
            (
                c.hidden_size,
                c.num_key_value_heads,
                c.head_dim,
                c.rope_theta
            ),
            (2048, 8, 64, 500000.0)
        );
        let s = c.rope_scaling.unwrap();
        assert_eq!(
            (s.factor, s.original_max_position_embeddings),
            (32.0, 8192.0)
        );
        // Short wavelengths keep their frequency; the longest are divided by the factor.
        let f = c.inverse_frequencies();
        assert_eq!(f[0], 1.0);
        let plain = 1.0 / 500000f64.powf(62.0 / 64.0);
        assert!((f[31] as f64 - plain / 32.0).abs() < 1e-12);
    }

    #[test]
    fn refuses_what_it_cannot_run() {
        let swap = |from: &str, to: &str| LlamaConfig::from_json(&LLAMA_32_1B.replace(from, to));
        let err = swap(r#""rope_type":"llama3""#, r#""rope_type":"yarn""#).unwrap_err();
        assert!(err.contains("yarn"), "{err}");
        let err = swap(r#""num_key_value_heads":8"#, r#""num_key_value_heads":7"#).unwrap_err();
        assert!(err.contains("multiple"), "{err}");
        let err = swap(r#""hidden_act":"silu""#, r#""hidden_act":"relu""#).unwrap_err();
        assert!(err.contains("relu"), "{err}");
    }
}
