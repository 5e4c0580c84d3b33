//! `cargo xtask bench train`: student epoch time on a GPU (the release's setting: ETTh1,
//! H=24, batch 16, channel 64). Extracts the stores it needs with the given teacher first.
//! Runs a prebuilt release binary; builds nothing.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Context;
use clap::Args;

use crate::bench::{check, gpu_name};
use crate::timekd_binary;

/// Bench flags.
#[derive(Args, Debug)]
pub struct BenchTrain {
    /// Dataset: a CSV path or ETTh1.
    #[arg(long, default_value = "ETTh1")]
    data: String,
    /// Output length H.
    #[arg(long, default_value_t = 24)]
    output_len: usize,
    /// Teacher whose embeddings the student learns from (extracted first, once).
    #[arg(long, default_value = "models/tiny-gpt2")]
    model: PathBuf,
    /// Epochs trained; the first includes kernel compilation and is reported apart.
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Windows per batch.
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Student width.
    #[arg(long, default_value_t = 64)]
    channel: usize,
    /// cuda, cuda:N or cuda:all.
    #[arg(long, default_value = "cuda")]
    device: String,
    /// Work directory (stores, run).
    #[arg(long, default_value = "/tmp/timekd-bench-train")]
    work: PathBuf,
    /// The timekd binary (default: target/release/timekd).
    #[arg(long)]
    timekd: Option<PathBuf>,
}

/// Extracts the stores if missing, trains, and prints each epoch's times.
pub fn bench_train(args: BenchTrain) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.epochs >= 2,
        "--epochs must be at least 2 (the first compiles)"
    );
    let timekd = timekd_binary(args.timekd.as_deref())?;
    let stores = args.work.join("stores");
    let h = args.output_len.to_string();
    for split in ["train", "val"] {
        // A finished store is skipped by timekd itself.
        check(
            Command::new(&timekd)
                .args(["extract", "--data", &args.data, "--output-len", &h])
                .args(["--split", split, "--device", &args.device, "--model"])
                .arg(&args.model)
                .arg("--out")
                .arg(&stores),
        )?;
    }
    let run = args.work.join("run");
    if run.exists() {
        std::fs::remove_dir_all(&run).with_context(|| format!("removing {}", run.display()))?;
    }
    check(
        Command::new(&timekd)
            .args(["train", "--data", &args.data, "--output-len", &h])
            .args([
                "--device",
                &args.device,
                "--epochs",
                &args.epochs.to_string(),
            ])
            .args(["--batch-size", &args.batch_size.to_string()])
            .args(["--channel", &args.channel.to_string(), "--patience"])
            .arg(args.epochs.to_string())
            .arg("--stores")
            .arg(&stores)
            .arg("--run-dir")
            .arg(&run),
    )?;
    let metrics = run.join("metrics.jsonl");
    let text = std::fs::read_to_string(&metrics)
        .with_context(|| format!("reading {}", metrics.display()))?;
    let mut epochs = Vec::new();
    for line in text.lines() {
        let m: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{}: not JSON lines", metrics.display()))?;
        let number = |key: &str| {
            m[key]
                .as_f64()
                .with_context(|| format!("{}: no {key}", metrics.display()))
        };
        epochs.push((number("train_seconds")?, number("seconds")?));
    }
    println!(
        "student bench on {}, device {}: {} H={}, batch {}, channel {}, teacher {}",
        gpu_name().unwrap_or_else(|| "unknown GPU (nvidia-smi not found)".into()),
        args.device,
        args.data,
        args.output_len,
        args.batch_size,
        args.channel,
        args.model.display()
    );
    println!(
        "{:>6} {:>16} {:>16}",
        "epoch", "training steps s", "whole epoch s"
    );
    for (i, (steps, whole)) in epochs.iter().enumerate() {
        let note = if i == 0 {
            "  (includes compilation)"
        } else {
            ""
        };
        println!("{i:>6} {steps:>16.2} {whole:>16.2}{note}");
    }
    let steady = &epochs[1..];
    let mean = |f: fn(&(f64, f64)) -> f64| steady.iter().map(f).sum::<f64>() / steady.len() as f64;
    println!(
        "mean after the first epoch: training steps {:.2} s, whole epoch {:.2} s (validation, \
         checkpoints and plot included)",
        mean(|e| e.0),
        mean(|e| e.1)
    );
    Ok(())
}
