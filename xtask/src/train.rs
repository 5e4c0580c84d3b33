//! `cargo xtask train`: trains the student for every output length that has finished
//! embedding stores, in one `timekd train --output-len <every length>` run, which skips
//! lengths without stores, reuses finished runs, resumes interrupted ones and prints one
//! table (H, epochs, best val loss, test MSE/MAE, time).

use std::path::PathBuf;
use std::process::Command;

use clap::Args;

use crate::{run, timekd_binary};

/// Train flags.
#[derive(Args, Debug)]
pub struct TrainAll {
    /// Dataset: a CSV path or a name (ETTh1 is built in).
    #[arg(long, default_value = "ETTh1")]
    data: String,
    /// Root directory of the embedding stores (`cargo xtask extract --out`).
    #[arg(long, default_value = "runs/embeddings")]
    out: PathBuf,
    /// Output lengths H to consider; those without finished train + val stores are skipped.
    #[arg(long, value_delimiter = ',', default_value = "24,36,48,96,192")]
    lengths: Vec<usize>,
    /// Maximum epochs (timekd's default: 100, with early stopping).
    #[arg(long)]
    epochs: Option<usize>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Train and validate on the first K windows (stores extracted with the same limit).
    #[arg(long)]
    max_windows: Option<usize>,
    /// Root of the run directories: `<runs>/<dataset>/<H>/seed-<seed>`.
    #[arg(long, default_value = "runs/student")]
    runs: PathBuf,
    /// Start runs afresh instead of resuming unfinished ones and reusing finished ones.
    #[arg(long)]
    fresh: bool,
    /// A prebuilt timekd binary (default: build target/release/timekd).
    #[arg(long)]
    timekd: Option<PathBuf>,
}

/// Runs `timekd train` over every length.
pub fn train_all(args: TrainAll) -> anyhow::Result<()> {
    let timekd = timekd_binary(args.timekd.as_deref())?;
    let lengths: Vec<String> = args.lengths.iter().map(usize::to_string).collect();
    let mut command = Command::new(&timekd);
    command.args([
        "train",
        "--data",
        &args.data,
        "--output-len",
        &lengths.join(","),
    ]);
    command.args(["--device", &args.device]);
    command
        .arg("--stores")
        .arg(&args.out)
        .arg("--runs")
        .arg(&args.runs);
    if let Some(epochs) = args.epochs {
        command.args(["--epochs", &epochs.to_string()]);
    }
    if let Some(k) = args.max_windows {
        command.args(["--max-windows", &k.to_string()]);
    }
    if args.fresh {
        command.arg("--fresh");
    }
    run(&mut command)
}
