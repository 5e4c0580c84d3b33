//! `cargo xtask train`: trains the student for every output length that has finished
//! embedding stores (and every seed of `--seeds`), in one `timekd train --output-len <every
//! length>` run, which skips lengths without stores, reuses finished runs, resumes
//! interrupted ones, prints one table (H, seed, epochs, best val loss, test MSE/MAE, time)
//! and writes results.csv / results.md / results.tex (mean ± std over seeds).

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
    /// cpu, cuda, cuda:N or cuda:all (runs spread over every GPU).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Runs trained at once per device (timekd's default: half the CPU cores on GPUs, at
    /// most 8 per GPU; 1 on the CPU).
    #[arg(long)]
    jobs: Option<usize>,
    /// Train each length's seeds as one packed model (timekd's default on GPUs).
    #[arg(long, conflicts_with = "no_pack")]
    pack: bool,
    /// Train every seed on its own.
    #[arg(long)]
    no_pack: bool,
    /// Train and validate on the first K windows (stores extracted with the same limit).
    #[arg(long)]
    max_windows: Option<usize>,
    /// Root of the run directories: `<runs>/<dataset>/<H>/seed-<seed>`.
    #[arg(long, default_value = "runs/student")]
    runs: PathBuf,
    /// Start runs afresh instead of resuming unfinished ones and reusing finished ones.
    #[arg(long)]
    fresh: bool,
    /// Seeds to train, each a run (e.g. the paper's 2024,6666,8888); default: the config's.
    #[arg(long, value_delimiter = ',')]
    seeds: Option<Vec<u64>>,
    /// Feature mode: M, S or MS (timekd's default: M).
    #[arg(long)]
    features: Option<String>,
    /// Target column of S and MS (timekd's default: OT).
    #[arg(long)]
    target: Option<String>,
    /// Also score in the data's units.
    #[arg(long)]
    inverse: bool,
    /// A TOML file of training settings, e.g. configs/ETTh1.toml.
    #[arg(long)]
    config: Option<PathBuf>,
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
    for (flag, value) in [("--max-windows", args.max_windows), ("--jobs", args.jobs)] {
        if let Some(value) = value {
            command.args([flag, &value.to_string()]);
        }
    }
    for (flag, on) in [
        ("--fresh", args.fresh),
        ("--pack", args.pack),
        ("--no-pack", args.no_pack),
    ] {
        if on {
            command.arg(flag);
        }
    }
    if let Some(seeds) = &args.seeds {
        let seeds: Vec<String> = seeds.iter().map(u64::to_string).collect();
        command.args(["--seeds", &seeds.join(",")]);
    }
    for (flag, value) in [("--features", &args.features), ("--target", &args.target)] {
        if let Some(value) = value {
            command.args([flag, value]);
        }
    }
    if args.inverse {
        command.arg("--inverse");
    }
    if let Some(config) = &args.config {
        command.arg("--config").arg(config);
    }
    run(&mut command)
}
