//! `timekd random-model`: a GPT-2-shaped checkpoint with seeded random weights.
//!
//! For benchmarks and tests where real weights cannot be had (no network): same shapes and
//! Hugging Face layout as a real checkpoint, so extraction costs exactly what it would with
//! real weights. Initialisation follows GPT-2's: normal(0, 0.02) matrices and embeddings,
//! zero biases, LayerNorm gain 1 and shift 0. Its embeddings are meaningless as features.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use safetensors::{Dtype, tensor::TensorView};

/// Write a GPT-2-shaped model with seeded random weights (config.json + model.safetensors).
///
/// Example (GPT-2 small's shape): `timekd random-model --out /tmp/gpt2-random`
#[derive(Args, Debug)]
pub struct RandomModelArgs {
    /// Transformer blocks.
    #[arg(long, default_value_t = 12)]
    layers: usize,
    /// Hidden width d.
    #[arg(long, default_value_t = 768)]
    width: usize,
    /// Attention heads (must divide the width).
    #[arg(long, default_value_t = 12)]
    heads: usize,
    /// Positions (longest prompt).
    #[arg(long, default_value_t = 1024)]
    positions: usize,
    /// Seed of the weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Directory to write.
    #[arg(long)]
    out: PathBuf,
}

const VOCAB: usize = 50257;

/// Runs the command.
pub fn run(args: RandomModelArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.heads > 0 && args.width.is_multiple_of(args.heads),
        "--heads {} must divide --width {}",
        args.heads,
        args.width
    );
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let (d, inner) = (args.width, 4 * args.width);
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let mut tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)> = BTreeMap::new();
    let mut normal = |shape: Vec<usize>| {
        let n: usize = shape.iter().product();
        (
            shape,
            (0..n)
                .map(|_| 0.02 * standard_normal(&mut rng))
                .collect::<Vec<f32>>(),
        )
    };
    tensors.insert("wte.weight".into(), normal(vec![VOCAB, d]));
    tensors.insert("wpe.weight".into(), normal(vec![args.positions, d]));
    for i in 0..args.layers {
        for (name, shape) in [
            ("attn.c_attn.weight", vec![d, 3 * d]),
            ("attn.c_proj.weight", vec![d, d]),
            ("mlp.c_fc.weight", vec![d, inner]),
            ("mlp.c_proj.weight", vec![inner, d]),
        ] {
            tensors.insert(format!("h.{i}.{name}"), normal(shape));
        }
        for (name, len, value) in [
            ("attn.c_attn.bias", 3 * d, 0.0),
            ("attn.c_proj.bias", d, 0.0),
            ("mlp.c_fc.bias", inner, 0.0),
            ("mlp.c_proj.bias", d, 0.0),
            ("ln_1.weight", d, 1.0),
            ("ln_1.bias", d, 0.0),
            ("ln_2.weight", d, 1.0),
            ("ln_2.bias", d, 0.0),
        ] {
            tensors.insert(format!("h.{i}.{name}"), (vec![len], vec![value; len]));
        }
    }
    tensors.insert("ln_f.weight".into(), (vec![d], vec![1.0; d]));
    tensors.insert("ln_f.bias".into(), (vec![d], vec![0.0; d]));

    let bytes: BTreeMap<&String, (Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, (shape, values))| {
            (
                name,
                (
                    shape.clone(),
                    values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                ),
            )
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, (shape, data))| {
            Ok((
                name.as_str(),
                TensorView::new(Dtype::F32, shape.clone(), data)?,
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let weights = args.out.join("model.safetensors");
    safetensors::serialize_to_file(views, None, &weights)
        .with_context(|| format!("writing {}", weights.display()))?;
    let config = serde_json::json!({
        "model_type": "gpt2",
        "vocab_size": VOCAB,
        "n_positions": args.positions,
        "n_embd": d,
        "n_layer": args.layers,
        "n_head": args.heads,
        "layer_norm_epsilon": 1e-5,
        "activation_function": "gelu_new",
        "timekd_note": format!("random weights, seed {}: for benchmarks only", args.seed),
    });
    std::fs::write(
        args.out.join("config.json"),
        serde_json::to_string_pretty(&config)?,
    )?;
    eprintln!(
        "wrote a {}-layer, width-{d} GPT-2 with random weights (seed {}) to {}",
        args.layers,
        args.seed,
        args.out.display()
    );
    Ok(())
}

/// One standard normal sample (Box–Muller).
fn standard_normal(rng: &mut ChaCha8Rng) -> f32 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}
