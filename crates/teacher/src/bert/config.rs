//! BERT's `config.json` (Hugging Face layout): the fields the forward needs.

use serde::Deserialize;

/// The BERT hyper-parameters read from `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct BertConfig {
    /// Vocabulary size (30522 for bert-base-uncased).
    pub vocab_size: usize,
    /// Width D (768).
    pub hidden_size: usize,
    /// Blocks in the checkpoint (12).
    pub num_hidden_layers: usize,
    /// Attention heads (12).
    pub num_attention_heads: usize,
    /// Inner width of the MLP (3072).
    pub intermediate_size: usize,
    /// Longest prompt the model takes (512).
    pub max_position_embeddings: usize,
    /// Rows of the token-type embedding (2); the teacher's prompts are all type 0.
    pub type_vocab_size: usize,
    /// LayerNorm epsilon (1e-12).
    pub layer_norm_eps: f64,
    /// Whether the MLP uses GELU's tanh approximation rather than the exact erf form
    /// (`gelu`, BERT's own).
    pub tanh_gelu: bool,
}

#[derive(Deserialize)]
struct RawConfig {
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    #[serde(default = "default_positions")]
    max_position_embeddings: usize,
    #[serde(default = "default_types")]
    type_vocab_size: usize,
    #[serde(default = "default_eps")]
    layer_norm_eps: f64,
    #[serde(default = "default_act")]
    hidden_act: String,
    #[serde(default = "default_position_type")]
    position_embedding_type: String,
}

fn default_positions() -> usize {
    512
}

fn default_types() -> usize {
    2
}

fn default_eps() -> f64 {
    1e-12
}

fn default_act() -> String {
    "gelu".to_string()
}

fn default_position_type() -> String {
    "absolute".to_string()
}

impl BertConfig {
    /// Parses the text of a `config.json`; the error says what is wrong.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let raw: RawConfig = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let tanh_gelu = match raw.hidden_act.as_str() {
            "gelu" => false,
            "gelu_new" | "gelu_pytorch_tanh" => true,
            other => {
                return Err(format!(
                    "hidden_act `{other}` is not supported (gelu, gelu_new)"
                ));
            }
        };
        if raw.position_embedding_type != "absolute" {
            return Err(format!(
                "position_embedding_type `{}` is not supported (absolute)",
                raw.position_embedding_type
            ));
        }
        let heads = raw.num_attention_heads;
        if heads == 0 || !raw.hidden_size.is_multiple_of(heads) {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {heads}",
                raw.hidden_size
            ));
        }
        if raw.num_hidden_layers == 0 || raw.vocab_size == 0 || raw.type_vocab_size == 0 {
            return Err(
                "num_hidden_layers, vocab_size and type_vocab_size must be positive".to_string(),
            );
        }
        Ok(BertConfig {
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: heads,
            intermediate_size: raw.intermediate_size,
            max_position_embeddings: raw.max_position_embeddings,
            type_vocab_size: raw.type_vocab_size,
            layer_norm_eps: raw.layer_norm_eps,
            tanh_gelu,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `bert-base-uncased`'s config.json.
    const BERT_BASE: &str = r#"{"architectures":["BertForMaskedLM"],
        "attention_probs_dropout_prob":0.1,"gradient_checkpointing":false,"hidden_act":"gelu",
        "hidden_dropout_prob":0.1,"hidden_size":768,"initializer_range":0.02,
        "intermediate_size":3072,"layer_norm_eps":1e-12,"max_position_embeddings":512,
        "model_type":"bert","num_attention_heads":12,"num_hidden_layers":12,"pad_token_id":0,
        "position_embedding_type":"absolute","transformers_version":"4.6.0.dev0",
        "type_vocab_size":2,"use_cache":true,"vocab_size":30522}"#;

    #[test]
    fn parses_bert_base_uncased() {
        let c = BertConfig::from_json(BERT_BASE).unwrap();
        assert_eq!(
            (c.hidden_size, c.max_position_embeddings, c.tanh_gelu),
            (768, 512, false)
        );
        let err = BertConfig::from_json(&BERT_BASE.replace("\"absolute\"", "\"relative_key\""))
            .unwrap_err();
        assert!(err.contains("relative_key"), "{err}");
    }
}
