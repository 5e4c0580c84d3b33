//! `cargo xtask train`: trains the student for every output length that has finished
//! embedding stores, then prints one table (H, epochs, best val loss, test MSE/MAE, time).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::Context;
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
    /// cpu or cuda[:N].
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Train and validate on the first K windows (stores extracted with the same limit).
    #[arg(long)]
    max_windows: Option<usize>,
    /// Root of the run directories: `<runs>/<dataset>/<H>`.
    #[arg(long, default_value = "runs/student")]
    runs: PathBuf,
    /// Start runs afresh instead of resuming unfinished ones and reusing finished ones.
    #[arg(long)]
    fresh: bool,
    /// A prebuilt timekd binary (default: build target/release/timekd).
    #[arg(long)]
    timekd: Option<PathBuf>,
}

/// One line of the table.
struct Row {
    h: usize,
    epochs: u64,
    stopped_early: bool,
    best_val: f64,
    mse: f64,
    mae: f64,
    seconds: f64,
}

/// The dataset's directory name under the stores root: a CSV's file stem, else the name.
fn dataset_dir(data: &str) -> String {
    let path = Path::new(data);
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
    {
        path.file_stem()
            .map_or_else(|| data.to_string(), |s| s.to_string_lossy().into_owned())
    } else {
        data.to_string()
    }
}

/// Trains every length with finished stores and prints the table.
pub fn train_all(args: TrainAll) -> anyhow::Result<()> {
    let timekd = timekd_binary(args.timekd.as_deref())?;
    let dataset = dataset_dir(&args.data);
    let mut rows = Vec::new();
    for &h in &args.lengths {
        let stores = args.out.join(&dataset).join(h.to_string());
        if !["train", "val"]
            .iter()
            .all(|s| stores.join(format!("{s}.h5")).is_file())
        {
            eprintln!(
                "xtask: H = {h}: no finished train + val stores under {}; skipped (run `cargo \
                 xtask extract --all-lengths` first)",
                stores.display()
            );
            continue;
        }
        let run_dir = args.runs.join(&dataset).join(h.to_string());
        let summary_path = run_dir.join("summary.json");
        if args.fresh && run_dir.exists() {
            std::fs::remove_dir_all(&run_dir)
                .with_context(|| format!("{}: cannot remove", run_dir.display()))?;
        }
        let started = Instant::now();
        if summary_path.is_file() {
            eprintln!(
                "xtask: H = {h}: finished run in {}; reused",
                run_dir.display()
            );
        } else {
            eprintln!("xtask: training H = {h} into {}", run_dir.display());
            let mut command = Command::new(&timekd);
            command
                .args([
                    "train",
                    "--data",
                    &args.data,
                    "--output-len",
                    &h.to_string(),
                ])
                .args(["--device", &args.device])
                .arg("--stores")
                .arg(&args.out)
                .arg("--run-dir")
                .arg(&run_dir);
            if let Some(epochs) = args.epochs {
                command.args(["--epochs", &epochs.to_string()]);
            }
            if let Some(k) = args.max_windows {
                command.args(["--max-windows", &k.to_string()]);
            }
            // An interrupted run left its last checkpoint: continue it.
            if run_dir.join("checkpoints").join("last").is_dir() {
                command.arg("--resume");
            }
            run(&mut command)?;
        }
        rows.push(read_row(h, &summary_path, started.elapsed().as_secs_f64())?);
    }
    if rows.is_empty() {
        anyhow::bail!(
            "no output length of {:?} has finished stores under {}",
            args.lengths,
            args.out.join(&dataset).display()
        );
    }
    println!("student runs for {dataset} (device {})", args.device);
    println!(
        "{:>5} {:>7} {:>14} {:>10} {:>10} {:>10}",
        "H", "epochs", "best val loss", "test MSE", "test MAE", "time s"
    );
    for r in rows {
        println!(
            "{:>5} {:>6}{} {:>14.5} {:>10.4} {:>10.4} {:>10.1}",
            r.h,
            r.epochs,
            if r.stopped_early { "*" } else { " " },
            r.best_val,
            r.mse,
            r.mae,
            r.seconds
        );
    }
    println!(
        "(* early stop on the validation loss; test metrics of the best checkpoint, scaled data)"
    );
    Ok(())
}

fn read_row(h: usize, path: &Path, seconds: f64) -> anyhow::Result<Row> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    let number = |key: &str| {
        json[key]
            .as_f64()
            .with_context(|| format!("{}: no number `{key}`", path.display()))
    };
    Ok(Row {
        h,
        epochs: number("epochs")? as u64,
        stopped_early: json["stopped_early"].as_bool().unwrap_or(false),
        best_val: number("best_val_loss")?,
        mse: number("test_mse")?,
        mae: number("test_mae")?,
        seconds: number("train_seconds_this_invocation").unwrap_or(seconds),
    })
}
