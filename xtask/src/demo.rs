//! `cargo xtask demo`: the whole TimeKD job on the built-in ETTh1 with the tiny test model.
//!
//! inspect → extract train + val embeddings (H = 24) → train the student → forecast. Every
//! step is the `timekd` binary, so this is also what a user would type.

use std::path::Path;
use std::process::Command;

use clap::Args;

use crate::{run, timekd_binary};

/// Demo flags.
#[derive(Args, Debug)]
pub struct Demo {
    /// Output length H.
    #[arg(long, default_value_t = 24)]
    output_len: usize,
    /// Student training epochs.
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Windows of train and val to use (the CPU extracts ≈16 windows/s with the tiny model
    /// on two cores, so the whole 11,378 take about 12 minutes); 0 = all.
    #[arg(long, default_value_t = 384)]
    max_windows: usize,
    /// Where everything is written.
    #[arg(long, default_value = "runs/demo")]
    out: String,
}

/// Runs the demo end to end.
pub fn demo(args: Demo) -> anyhow::Result<()> {
    let timekd = timekd_binary(None)?;
    let model = "models/tiny-gpt2";
    println!(
        "demo: teacher = {model}, the TINY 2-layer GPT-2 test model with random weights shipped \
         in this repository (no real GPT-2 weights can be downloaded here); its embeddings exercise \
         the pipeline but carry no language knowledge. Use --model with real weights for research."
    );
    let h = args.output_len.to_string();
    let limit: Vec<String> = match args.max_windows {
        0 => Vec::new(),
        k => vec!["--max-windows".into(), k.to_string()],
    };
    let out = Path::new(&args.out);
    let stores = out.join("embeddings");
    let run_dir = out.join("student");
    let step = |what: &str, command: &mut Command| {
        println!("\ndemo: {what}");
        run(command)
    };
    step(
        "the dataset",
        Command::new(&timekd).args(["inspect", "--output-len", &h]),
    )?;
    step(
        "teacher embeddings for train and val (resumable: rerun to continue)",
        Command::new(&timekd)
            .args([
                "extract",
                "--output-len",
                &h,
                "--model",
                model,
                "--split",
                "all",
            ])
            .args(&limit)
            .arg("--out")
            .arg(&stores),
    )?;
    // Stores are resumed (and skipped when finished); the short training is simply redone.
    if run_dir.exists() {
        std::fs::remove_dir_all(&run_dir)?;
    }
    step(
        "the student, distilled from the stored embeddings",
        Command::new(&timekd)
            .args([
                "train",
                "--output-len",
                &h,
                "--epochs",
                &args.epochs.to_string(),
            ])
            .args(&limit)
            .arg("--stores")
            .arg(&stores)
            .arg("--run-dir")
            .arg(&run_dir),
    )?;
    step(
        "a forecast of the next H hours after the data's last window",
        Command::new(&timekd)
            .args([
                "forecast",
                "--data",
                "ETTh1",
                "--format",
                "csv",
                "--checkpoint",
            ])
            .arg(run_dir.join("checkpoints").join("best"))
            .arg("--plot")
            .arg(out.join("forecast.png")),
    )?;
    println!("\ndemo: done; outputs under {}", out.display());
    Ok(())
}
