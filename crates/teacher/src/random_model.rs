//! A GPT-2-shaped checkpoint with seeded random weights ([`write_random_gpt2`]), and the
//! GPT-2 small preset of [`Gpt2Config`].
//!
//! For benchmarks and tests where real weights cannot be had (no network): same shapes and
//! Hugging Face layout as a real checkpoint, so extraction costs exactly what it would with
//! real weights. Initialisation follows GPT-2's: normal(0, 0.02) matrices and embeddings,
//! zero biases, LayerNorm gain 1 and shift 0. Its embeddings are meaningless as features.

use std::path::Path;

use timekd_data::files::{TensorRef, write_atomic, write_safetensors};
use timekd_data::seeded::SplitMix64;

use crate::error::TeacherError;
use crate::gpt2::Gpt2Config;
use crate::gpt2::names::{self, BlockNames};

impl Gpt2Config {
    /// GPT-2 small (124M): 12 blocks of width 768 with 12 heads, 1024 positions.
    pub fn gpt2_small() -> Self {
        Gpt2Config {
            vocab_size: 50257,
            n_positions: 1024,
            n_embd: 768,
            n_layer: 12,
            n_head: 12,
            n_inner: 4 * 768,
            layer_norm_epsilon: 1e-5,
            tanh_gelu: true,
        }
    }
}

/// Writes `config.json` and `model.safetensors` of a GPT-2 shaped as `config`, its weights
/// drawn from `seed`, into `dir` (created if needed).
pub fn write_random_gpt2(dir: &Path, config: &Gpt2Config, seed: u64) -> Result<(), TeacherError> {
    let bad = |reason: String| TeacherError::BadConfig {
        path: dir.join("config.json"),
        reason,
    };
    if config.n_head == 0 || !config.n_embd.is_multiple_of(config.n_head) {
        return Err(bad(format!(
            "the heads ({}) must divide the width ({})",
            config.n_head, config.n_embd
        )));
    }
    std::fs::create_dir_all(dir).map_err(|source| write_error(dir, source))?;
    let (d, inner) = (config.n_embd, config.n_inner);
    let mut rng = SplitMix64::new(seed);
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut normal = |name: String, shape: Vec<usize>| {
        let n = shape.iter().product();
        let values = (0..n)
            .map(|_| (0.02 * rng.standard_normal()) as f32)
            .collect();
        tensors.push((name, shape, values));
    };
    normal(names::TOKEN_EMBEDDING.into(), vec![config.vocab_size, d]);
    normal(
        names::POSITION_EMBEDDING.into(),
        vec![config.n_positions, d],
    );
    let weight = |layer: String| format!("{layer}.weight");
    let bias = |layer: String| format!("{layer}.bias");
    for i in 0..config.n_layer {
        let n = BlockNames(i);
        for (layer, shape) in [
            (n.attn(), vec![d, 3 * d]),
            (n.attn_proj(), vec![d, d]),
            (n.fc(), vec![d, inner]),
            (n.mlp_proj(), vec![inner, d]),
        ] {
            normal(weight(layer), shape);
        }
    }
    for i in 0..config.n_layer {
        let n = BlockNames(i);
        for (name, len, value) in [
            (bias(n.attn()), 3 * d, 0.0),
            (bias(n.attn_proj()), d, 0.0),
            (bias(n.fc()), inner, 0.0),
            (bias(n.mlp_proj()), d, 0.0),
            (weight(n.ln_1()), d, 1.0),
            (bias(n.ln_1()), d, 0.0),
            (weight(n.ln_2()), d, 1.0),
            (bias(n.ln_2()), d, 0.0),
        ] {
            tensors.push((name, vec![len], vec![value; len]));
        }
    }
    tensors.push((weight(names::FINAL_NORM.into()), vec![d], vec![1.0; d]));
    tensors.push((bias(names::FINAL_NORM.into()), vec![d], vec![0.0; d]));
    let refs: Vec<TensorRef<'_>> = tensors
        .iter()
        .map(|(name, shape, values)| (name.as_str(), shape.as_slice(), values.as_slice()))
        .collect();
    let weights = dir.join("model.safetensors");
    write_safetensors(&weights, &refs).map_err(|source| write_error(&weights, source))?;
    let json = serde_json::json!({
        "model_type": "gpt2",
        "vocab_size": config.vocab_size,
        "n_positions": config.n_positions,
        "n_embd": d,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": inner,
        "layer_norm_epsilon": config.layer_norm_epsilon,
        "activation_function": if config.tanh_gelu { "gelu_new" } else { "gelu" },
        "timekd_note": format!("random weights, seed {seed}: for benchmarks only"),
    });
    let path = dir.join("config.json");
    let text = serde_json::to_string_pretty(&json).expect("a JSON value serialises");
    write_atomic(&path, text.as_bytes()).map_err(|source| write_error(&path, source))
}

fn write_error(path: &Path, source: std::io::Error) -> TeacherError {
    TeacherError::Write {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_random_model_loads_and_is_seeded() {
        let dir = tempfile::tempdir().unwrap();
        let config = Gpt2Config {
            n_positions: 64,
            n_embd: 16,
            n_layer: 2,
            n_head: 2,
            n_inner: 64,
            ..Gpt2Config::gpt2_small()
        };
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        write_random_gpt2(&a, &config, 7).unwrap();
        write_random_gpt2(&b, &config, 7).unwrap();
        let read = |dir: &Path| std::fs::read(dir.join("model.safetensors")).unwrap();
        assert_eq!(read(&a), read(&b), "the same seed gave other weights");
        assert_eq!(
            Gpt2Config::from_file(&a.join("config.json")).unwrap(),
            config
        );
        let device = burn::tensor::Device::flex();
        let gpt2 = crate::Gpt2::load_dir(&a, None, &device).unwrap();
        assert_eq!((gpt2.layers(), gpt2.d_model()), (2, 16));

        let odd = Gpt2Config {
            n_head: 3,
            ..config
        };
        let err = write_random_gpt2(&dir.path().join("c"), &odd, 7).unwrap_err();
        assert!(err.to_string().contains("must divide"), "{err}");
    }
}
