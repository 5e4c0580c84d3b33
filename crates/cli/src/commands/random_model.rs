//! `timekd random-model`: a GPT-2-shaped checkpoint with seeded random weights
//! ([`timekd_teacher::write_random_gpt2`]), for benchmarks without network access.

use std::path::PathBuf;

use clap::Args;
use timekd_teacher::{Gpt2Config, write_random_gpt2};

/// Write a GPT-2-shaped model with seeded random weights (config.json + model.safetensors).
///
/// Same shapes and Hugging Face layout as a real checkpoint, so extraction costs what it would
/// with real weights; its embeddings are meaningless as features.
///
/// Example (GPT-2 small's shape): `timekd random-model --out /tmp/gpt2-random`
#[derive(Args, Debug)]
pub struct RandomModelArgs {
    /// Transformer blocks.
    #[arg(long, default_value_t = Gpt2Config::gpt2_small().n_layer)]
    layers: usize,
    /// Hidden width d.
    #[arg(long, default_value_t = Gpt2Config::gpt2_small().n_embd)]
    width: usize,
    /// Attention heads (must divide the width).
    #[arg(long, default_value_t = Gpt2Config::gpt2_small().n_head)]
    heads: usize,
    /// Positions (longest prompt).
    #[arg(long, default_value_t = Gpt2Config::gpt2_small().n_positions)]
    positions: usize,
    /// Seed of the weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Directory to write.
    #[arg(long)]
    out: PathBuf,
}

/// Runs the command.
pub fn run(args: RandomModelArgs) -> anyhow::Result<()> {
    let config = Gpt2Config {
        n_layer: args.layers,
        n_embd: args.width,
        n_head: args.heads,
        n_inner: 4 * args.width,
        n_positions: args.positions,
        ..Gpt2Config::gpt2_small()
    };
    write_random_gpt2(&args.out, &config, args.seed)?;
    eprintln!(
        "wrote a {}-layer, width-{} GPT-2 with random weights (seed {}) to {}",
        args.layers,
        args.width,
        args.seed,
        args.out.display()
    );
    Ok(())
}
