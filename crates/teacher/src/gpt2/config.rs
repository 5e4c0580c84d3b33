//! GPT-2's `config.json` (Hugging Face layout): the fields the forward needs.

use std::path::Path;

use serde::Deserialize;

use super::Gpt2Module;
use crate::arch::Architecture;
use crate::error::TeacherError;

/// The GPT-2 hyper-parameters read from `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Gpt2Config {
    /// Vocabulary size (50257 for GPT-2).
    pub vocab_size: usize,
    /// Number of positions, the longest prompt the model takes (1024).
    pub n_positions: usize,
    /// Width D (768 for GPT-2 small).
    pub n_embd: usize,
    /// Number of transformer blocks in the checkpoint (12).
    pub n_layer: usize,
    /// Attention heads (12).
    pub n_head: usize,
    /// Inner width of the MLP (`n_inner`, default 4·D).
    pub n_inner: usize,
    /// LayerNorm epsilon (1e-5).
    pub layer_norm_epsilon: f64,
    /// Whether the MLP uses GELU's tanh approximation (`gelu_new`, the GPT-2 default) rather
    /// than the exact erf form (`gelu`).
    pub tanh_gelu: bool,
}

#[derive(Deserialize)]
struct RawConfig {
    vocab_size: usize,
    n_positions: usize,
    n_embd: usize,
    n_layer: usize,
    n_head: usize,
    #[serde(default)]
    n_inner: Option<usize>,
    #[serde(default = "default_eps")]
    layer_norm_epsilon: f64,
    #[serde(default = "default_activation")]
    activation_function: String,
}

fn default_eps() -> f64 {
    1e-5
}

fn default_activation() -> String {
    "gelu_new".to_string()
}

impl Gpt2Config {
    /// Reads `<dir>/config.json` and checks a request for the first `layers` blocks (all of
    /// them for `None`); the config and the block count to build.
    pub fn for_model_dir(dir: &Path, layers: Option<usize>) -> Result<(Self, usize), TeacherError> {
        let config = crate::families::read_config::<Gpt2Module>(dir)?;
        let layers = Gpt2Module::shape(&config).layers_in_use(layers)?;
        Ok((config, layers))
    }

    /// Reads and checks `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, TeacherError> {
        let text = crate::families::read_config_text(path)?;
        Self::from_json(&text).map_err(|reason| TeacherError::BadConfig {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parses the text of a `config.json`; the error says what is wrong.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let raw: RawConfig = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let tanh_gelu = match raw.activation_function.as_str() {
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => true,
            "gelu" => false,
            other => {
                return Err(format!(
                    "activation_function `{other}` is not supported (gelu_new, gelu_pytorch_tanh, gelu)"
                ));
            }
        };
        if raw.n_head == 0 || !raw.n_embd.is_multiple_of(raw.n_head) {
            return Err(format!(
                "n_embd {} is not a multiple of n_head {}",
                raw.n_embd, raw.n_head
            ));
        }
        if raw.n_layer == 0 || raw.n_positions == 0 || raw.vocab_size == 0 {
            return Err("n_layer, n_positions and vocab_size must be positive".to_string());
        }
        Ok(Gpt2Config {
            vocab_size: raw.vocab_size,
            n_positions: raw.n_positions,
            n_embd: raw.n_embd,
            n_layer: raw.n_layer,
            n_head: raw.n_head,
            n_inner: raw.n_inner.unwrap_or(4 * raw.n_embd),
            layer_norm_epsilon: raw.layer_norm_epsilon,
            tanh_gelu,
        })
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hugging_face_config() {
        let c = Gpt2Config::from_json(
            r#"{"activation_function":"gelu_new","n_embd":32,"n_head":4,"n_inner":null,
                "n_layer":2,"n_positions":1024,"vocab_size":50257,"layer_norm_epsilon":1e-05}"#,
        )
        .unwrap();
        assert_eq!((c.n_inner, c.head_dim(), c.tanh_gelu), (128, 8, true));
    }

    #[test]
    fn rejects_bad_configs() {
        let err = Gpt2Config::from_json(r#"{"n_embd":32}"#).unwrap_err();
        assert!(err.contains("missing field"), "{err}");
        let err = Gpt2Config::from_json(
            r#"{"n_embd":30,"n_head":4,"n_layer":2,"n_positions":8,"vocab_size":9}"#,
        )
        .unwrap_err();
        assert!(err.contains("multiple of n_head"), "{err}");
        let err = Gpt2Config::from_json(
            r#"{"n_embd":32,"n_head":4,"n_layer":2,"n_positions":8,"vocab_size":9,"activation_function":"relu"}"#,
        )
        .unwrap_err();
        assert!(err.contains("relu"), "{err}");
    }
}
