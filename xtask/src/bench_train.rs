//! `cargo xtask bench train`: student training speed on a GPU at the paper's settings (batch
//! 16, channel 64, 2 layers, 4 heads, dropout 0.5). Runs prebuilt binaries; builds nothing.
//!
//! 1. One run alone at `--output-len`: this build and, with `--baseline`, another binary
//!    (e.g. the last release), one after the other in the same invocation. The first epoch
//!    compiles kernels and is reported apart; the rest are the steady state.
//! 2. With `--pack`, the seeds of `--output-len` trained together as one packed model (one
//!    process): the steps/s of each packed run beside the run alone's.
//! 3. With `--table`, every (H, seed) run of a paper table trained at once (`--jobs`; with
//!    `--pack` one packed process per H's seeds), with the GPU's utilisation sampled, and the
//!    table's wall time projected to `--table-epochs` epochs (early stopping not counted)
//!    from the steady epochs measured at that concurrency.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use clap::Args;

use crate::bench::{GpuSampler, captured, check, gpu_name};
use crate::timekd_binary;

/// Bench flags.
#[derive(Args, Debug)]
pub struct BenchTrain {
    /// Dataset: a CSV path or ETTh1.
    #[arg(long, default_value = "ETTh1")]
    data: String,
    /// Output length H of the run alone.
    #[arg(long, default_value_t = 24)]
    output_len: usize,
    /// Teacher whose embeddings the student learns from (extracted first, once).
    #[arg(long, default_value = "models/tiny-gpt2")]
    model: PathBuf,
    /// Use the teacher's first K blocks (`timekd extract --gpt2-layers`): the stores keep the
    /// teacher's width, which is all the student's speed depends on.
    #[arg(long, value_name = "K")]
    teacher_layers: Option<usize>,
    /// Epochs per run; the first includes kernel compilation and is reported apart.
    #[arg(long, default_value_t = 2)]
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
    /// Work directory (stores, runs).
    #[arg(long, default_value = "/tmp/timekd-bench-train")]
    work: PathBuf,
    /// The timekd binary (default: target/release/timekd).
    #[arg(long)]
    timekd: Option<PathBuf>,
    /// Another timekd binary to time on the same run alone, before this one.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Output lengths of the table trained at once (e.g. 24,36,48,96,192); none: no table.
    #[arg(long, value_delimiter = ',')]
    table: Vec<usize>,
    /// Seeds of the table.
    #[arg(long, value_delimiter = ',', default_value = "2024,6666,8888")]
    seeds: Vec<u64>,
    /// Runs at once per GPU for the table (timekd's default when absent); with --pack,
    /// packed processes at once.
    #[arg(long)]
    jobs: Option<usize>,
    /// Train the seeds of a length as one packed model (`timekd train --pack`): time a pack
    /// of --seeds alone, and pack the table's seeds of each H (--no-pack otherwise).
    #[arg(long)]
    pack: bool,
    /// Epochs per run the table's wall time is projected to.
    #[arg(long, default_value_t = 100)]
    table_epochs: usize,
    /// Time the table as that many runs of `--output-len` (seeds from the first of
    /// `--seeds` up), projecting each (H, seed) with its own H's steps: needs the stores of
    /// one H only.
    #[arg(long)]
    table_proxy: bool,
    /// Extract and train on the first K windows of each split only (a shorter bench; the
    /// table's projection still counts full splits).
    #[arg(long, value_name = "K")]
    max_windows: Option<usize>,
}

/// The name of the benched binary in the table and in its run directory.
const THIS_BUILD: &str = "this build";

/// The run directory of the run alone of binary `name`.
fn alone_dir(args: &BenchTrain, name: &str) -> PathBuf {
    args.work.join(format!("alone-{}", name.replace(' ', "-")))
}

/// One epoch of one run, from its metrics.jsonl.
#[derive(Debug, Clone, Copy)]
struct Epoch {
    steps: f64,
    train_seconds: f64,
    seconds: f64,
}

/// The steady epochs (after the first) of one run.
#[derive(Debug)]
struct Steady {
    steps: f64,
    train_seconds: f64,
    seconds: f64,
}

impl Steady {
    fn of(epochs: &[Epoch]) -> anyhow::Result<Steady> {
        anyhow::ensure!(epochs.len() >= 2, "fewer than 2 epochs were trained");
        let rest = &epochs[1..];
        let n = rest.len() as f64;
        Ok(Steady {
            steps: rest.iter().map(|e| e.steps).sum::<f64>() / n,
            train_seconds: rest.iter().map(|e| e.train_seconds).sum::<f64>() / n,
            seconds: rest.iter().map(|e| e.seconds).sum::<f64>() / n,
        })
    }

    fn steps_per_second(&self) -> f64 {
        self.steps / self.train_seconds
    }
}

/// Extracts the stores if missing, times the run alone (and the baseline), then the table.
pub fn bench_train(args: BenchTrain) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.epochs >= 2,
        "--epochs must be at least 2 (the first compiles)"
    );
    let timekd = timekd_binary(args.timekd.as_deref())?;
    let stores = args.work.join("stores");
    let mut lengths = match args.table_proxy {
        true => Vec::new(),
        false => args.table.clone(),
    };
    lengths.push(args.output_len);
    lengths.sort_unstable();
    lengths.dedup();
    extract(&args, &timekd, &stores, &lengths)?;
    let gpu = gpu_name().unwrap_or_else(|| "unknown GPU (nvidia-smi not found)".into());
    println!(
        "student bench on {gpu}, device {}: {}, batch {}, channel {}, 2 layers, 4 heads, dropout \
         0.5, stores of teacher {}{}",
        args.device,
        args.data,
        args.batch_size,
        args.channel,
        args.model.display(),
        args.teacher_layers
            .map_or(String::new(), |k| format!(" (first {k} blocks)"))
    );

    println!(
        "\none run alone, H={} (epoch 0 compiles; steady = mean of the later epochs)",
        args.output_len
    );
    println!(
        "{:<12} {:>6} {:>13} {:>13} {:>9} {:>13}",
        "binary", "epoch", "steps", "training s", "steps/s", "whole epoch s"
    );
    let mut alone = Vec::new();
    let binaries = args
        .baseline
        .iter()
        .map(|b| ("baseline", b.clone()))
        .chain([(THIS_BUILD, timekd.clone())]);
    for (name, binary) in binaries {
        let run = alone_dir(&args, name);
        let epochs = train_alone(&args, &binary, &stores, &run)?;
        for (i, e) in epochs.iter().enumerate() {
            println!(
                "{name:<12} {i:>6} {:>13.0} {:>13.2} {:>9.1} {:>13.2}",
                e.steps,
                e.train_seconds,
                e.steps / e.train_seconds,
                e.seconds
            );
        }
        alone.push((name, Steady::of(&epochs)?));
    }
    if let [(_, base), (_, this)] = &alone[..] {
        println!(
            "this build against the baseline, steady epoch: training steps {:.2}x faster, whole \
             epoch (validation, checkpoints, plot) {:.2}x faster",
            base.train_seconds / this.train_seconds,
            base.seconds / this.seconds
        );
    }
    if args.pack {
        bench_pack(&args, &timekd, &stores, &alone[alone.len() - 1].1)?;
    }
    if !args.table.is_empty() {
        bench_table(&args, &timekd, &stores)?;
        if args.table_proxy || args.table.contains(&args.output_len) {
            print_loss_gap(&args, "with the table", &args.work.join("table"))?;
        }
    }
    Ok(())
}

/// The loss curve of the first seed's run at `--output-len` under `runs` against the run
/// alone's.
fn print_loss_gap(args: &BenchTrain, how: &str, runs: &Path) -> anyhow::Result<()> {
    let alone = read_losses(&alone_dir(args, THIS_BUILD).join("metrics.jsonl"))?;
    let other = read_losses(&find_metrics(runs, args.output_len, args.seeds[0])?)?;
    let gap = alone
        .iter()
        .zip(&other)
        .map(|(a, b)| ((a - b) / a).abs())
        .fold(0.0, f64::max);
    println!(
        "H={} seed {}: trained {how} against alone, {} loss values (train and val totals per \
         epoch): max relative difference {gap:.1e}",
        args.output_len,
        args.seeds[0],
        alone.len().min(other.len())
    );
    Ok(())
}

/// Train and val totals of every epoch, in order.
fn read_losses(metrics: &Path) -> anyhow::Result<Vec<f64>> {
    let mut losses = Vec::new();
    for m in metric_lines(metrics)? {
        for split in ["train", "val"] {
            losses.push(
                m[split]["total"]
                    .as_f64()
                    .with_context(|| format!("{}: no {split}.total", metrics.display()))?,
            );
        }
    }
    Ok(losses)
}

/// Train + val stores of every length in one extraction pass per split (finished stores
/// are skipped by timekd itself).
fn extract(
    args: &BenchTrain,
    timekd: &Path,
    stores: &Path,
    lengths: &[usize],
) -> anyhow::Result<()> {
    let lengths: Vec<String> = lengths.iter().map(usize::to_string).collect();
    for split in ["train", "val"] {
        let mut command = Command::new(timekd);
        command
            .args([
                "extract",
                "--data",
                &args.data,
                "--output-len",
                &lengths.join(","),
            ])
            .args([
                "--split",
                split,
                "--device",
                &args.device,
                "--precision",
                "f16",
            ])
            .arg("--model")
            .arg(&args.model)
            .arg("--out")
            .arg(stores);
        for (flag, value) in [
            ("--gpt2-layers", args.teacher_layers),
            ("--max-windows", args.max_windows),
        ] {
            if let Some(value) = value {
                command.args([flag, &value.to_string()]);
            }
        }
        check(&mut command)?;
    }
    Ok(())
}

/// The flags every timed run shares.
fn train_command(args: &BenchTrain, binary: &Path, stores: &Path) -> Command {
    let mut command = Command::new(binary);
    command
        .args(["train", "--data", &args.data, "--device", &args.device])
        .args(["--epochs", &args.epochs.to_string(), "--patience"])
        .arg(args.epochs.to_string())
        .args(["--batch-size", &args.batch_size.to_string()])
        .args(["--channel", &args.channel.to_string()])
        .arg("--stores")
        .arg(stores)
        .env("TIMEKD_TRAIN_PROFILE", "1");
    if let Some(k) = args.max_windows {
        command.args(["--max-windows", &k.to_string()]);
    }
    command
}

/// Trains the run alone into `run` (afresh) and returns its epochs; prints its profile.
fn train_alone(
    args: &BenchTrain,
    binary: &Path,
    stores: &Path,
    run: &Path,
) -> anyhow::Result<Vec<Epoch>> {
    remove(run)?;
    let mut command = train_command(args, binary, stores);
    command
        .args(["--output-len", &args.output_len.to_string()])
        .args(["--seed", &args.seeds[0].to_string()])
        .arg("--run-dir")
        .arg(run);
    let out = captured(&mut command)?;
    for line in String::from_utf8_lossy(&out.stderr).lines() {
        if line.starts_with("profile epoch") {
            println!("  {line}");
        }
    }
    read_epochs(&run.join("metrics.jsonl"))
}

/// The seeds of `--output-len` trained as one packed model (`--jobs 1`): each run's steady
/// steps/s, their sum, and the sum against the run alone's.
fn bench_pack(
    args: &BenchTrain,
    timekd: &Path,
    stores: &Path,
    alone: &Steady,
) -> anyhow::Result<()> {
    let runs_dir = args.work.join("pack");
    remove(&runs_dir)?;
    let seeds: Vec<String> = args.seeds.iter().map(u64::to_string).collect();
    let mut command = train_command(args, timekd, stores);
    command
        .args(["--output-len", &args.output_len.to_string()])
        .args(["--seeds", &seeds.join(","), "--pack", "--jobs", "1"])
        .arg("--runs")
        .arg(&runs_dir);
    let out = captured(&mut command)?;
    for line in String::from_utf8_lossy(&out.stderr).lines() {
        if line.starts_with("profile epoch") {
            println!("  {line}");
        }
    }
    println!(
        "
{} seeds of H={} packed into one model (one process)",
        args.seeds.len(),
        args.output_len
    );
    println!(
        "{:>6} {:>13} {:>13} {:>9} {:>13}",
        "seed", "steady steps", "training s", "steps/s", "whole epoch s"
    );
    let mut aggregate = 0.0;
    for &seed in &args.seeds {
        let s = Steady::of(&read_epochs(&find_metrics(
            &runs_dir,
            args.output_len,
            seed,
        )?)?)?;
        println!(
            "{seed:>6} {:>13.0} {:>13.2} {:>9.1} {:>13.2}",
            s.steps,
            s.train_seconds,
            s.steps_per_second(),
            s.seconds
        );
        aggregate += s.steps_per_second();
    }
    println!(
        "packed: {aggregate:.1} run-steps/s over {} runs = {:.2}x the run alone's {:.1} steps/s",
        args.seeds.len(),
        aggregate / alone.steps_per_second(),
        alone.steps_per_second()
    );
    print_loss_gap(args, "packed", &runs_dir)
}

/// Every (H, seed) of the table at once (or, with `--table-proxy`, as many runs of the
/// alone run's H); prints each run's steady epoch, the aggregate rate, the GPU's utilisation
/// and the table projected over full splits.
fn bench_table(args: &BenchTrain, timekd: &Path, stores: &Path) -> anyhow::Result<()> {
    let runs_dir = args.work.join("table");
    remove(&runs_dir)?;
    // What trains at once: the table's runs, or the same number of runs at the proxy H.
    let table: Vec<(usize, u64)> = args
        .table
        .iter()
        .flat_map(|&h| args.seeds.iter().map(move |&seed| (h, seed)))
        .collect();
    let timed: Vec<(usize, u64)> = match args.table_proxy {
        true => (0..table.len() as u64)
            .map(|i| (args.output_len, args.seeds[0] + i))
            .collect(),
        false => table.clone(),
    };
    let mut lengths: Vec<usize> = timed.iter().map(|r| r.0).collect();
    lengths.dedup();
    let mut seeds: Vec<u64> = timed.iter().map(|r| r.1).collect();
    seeds.sort_unstable();
    seeds.dedup();
    let list = |v: &[String]| v.join(",");
    let mut command = train_command(args, timekd, stores);
    command
        .args([
            "--output-len",
            &list(&lengths.iter().map(usize::to_string).collect::<Vec<_>>()),
        ])
        .args([
            "--seeds",
            &list(&seeds.iter().map(u64::to_string).collect::<Vec<_>>()),
        ])
        .arg("--runs")
        .arg(&runs_dir);
    if let Some(jobs) = args.jobs {
        command.args(["--jobs", &jobs.to_string()]);
    }
    // Packs as the real table's: the seeds of one H, even when the proxy times one H only.
    let per_process = match args.pack {
        true => {
            let size = args.seeds.len().to_string();
            command.args(["--pack", "--pack-size", &size]);
            args.seeds.len()
        }
        false => {
            command.arg("--no-pack");
            1
        }
    };
    let sampler = GpuSampler::start();
    let started = std::time::Instant::now();
    let out = captured(&mut command)?;
    let wall = started.elapsed().as_secs_f64();
    let samples = sampler.stop();
    let log = String::from_utf8_lossy(&out.stderr);
    let at_once = log
        .lines()
        .find(|l| l.contains(" at once over "))
        .unwrap_or("runs in turn")
        .to_string();
    println!(
        "\n{} runs at once ({at_once}), {} epochs each{}, {wall:.1} s wall",
        timed.len(),
        args.epochs,
        args.max_windows.map_or(String::new(), |k| format!(
            ", first {k} windows of each split"
        ))
    );
    println!(
        "{:>5} {:>6} {:>13} {:>13} {:>9} {:>13}",
        "H", "seed", "steady steps", "training s", "steps/s", "whole epoch s"
    );
    let mut steady = Vec::new();
    for &(h, seed) in &timed {
        let s = Steady::of(&read_epochs(&find_metrics(&runs_dir, h, seed)?)?)?;
        println!(
            "{h:>5} {seed:>6} {:>13.0} {:>13.2} {:>9.1} {:>13.2}",
            s.steps,
            s.train_seconds,
            s.steps_per_second(),
            s.seconds
        );
        steady.push(s);
    }
    let aggregate: f64 = steady.iter().map(Steady::steps_per_second).sum();
    println!(
        "aggregate: {aggregate:.1} steps/s over the {} runs at once",
        timed.len()
    );
    match samples {
        Some(s) => println!(
            "GPU: mean utilisation {:.0}% (nvidia-smi: share of time a kernel ran), peak memory {} MiB",
            s.mean_utilization, s.peak_mib
        ),
        None => println!("GPU: not sampled (nvidia-smi not found)"),
    }
    // Each (H, seed) of the table: its full split's steps at the rate its timed run had at
    // this concurrency, plus the timed epoch's validation and checkpoints. The runs share the
    // GPU `workers` processes at a time, each of `per_process` runs trained together, so the
    // table takes (sum of run times) / (workers x per_process), never less than its slowest
    // run.
    let workers = at_once
        .split(", ")
        .nth(1)
        .and_then(|w| w.split(' ').next())
        .and_then(|w| w.parse::<f64>().ok())
        .unwrap_or(1.0);
    let mut total = 0.0;
    let mut slowest: f64 = 0.0;
    for (&(h, _), s) in table.iter().zip(&steady) {
        let steps = (train_windows(args, timekd, h)? as f64 / args.batch_size as f64).ceil();
        let epoch = steps / s.steps_per_second() + (s.seconds - s.train_seconds);
        total += epoch * args.table_epochs as f64;
        slowest = slowest.max(epoch * args.table_epochs as f64);
    }
    let projected = (total / (workers * per_process as f64)).max(slowest);
    println!(
        "projected table: {} runs ({} H x {} seeds) x {} epochs on full splits (no early stop){} \
         = {:.1} min wall on this GPU",
        table.len(),
        args.table.len(),
        args.seeds.len(),
        args.table_epochs,
        if args.table_proxy {
            format!(
                ", each timed as a run of H={} at this concurrency",
                args.output_len
            )
        } else {
            String::new()
        },
        projected / 60.0
    );
    Ok(())
}

/// Training windows of the dataset at output length `h` (`timekd inspect --json`).
fn train_windows(args: &BenchTrain, timekd: &Path, h: usize) -> anyhow::Result<u64> {
    let out = captured(Command::new(timekd).args([
        "inspect",
        "--data",
        &args.data,
        "--output-len",
        &h.to_string(),
        "--json",
    ]))?;
    let info: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("timekd inspect --json: not JSON")?;
    info["splits"]["train"]["windows"]
        .as_u64()
        .context("timekd inspect --json: no splits.train.windows")
}

/// `<runs>/<experiment>/<H>/seed-<seed>/metrics.jsonl`, whatever the experiment's name.
fn find_metrics(runs: &Path, h: usize, seed: u64) -> anyhow::Result<PathBuf> {
    for entry in std::fs::read_dir(runs).with_context(|| format!("reading {}", runs.display()))? {
        let path = entry?
            .path()
            .join(h.to_string())
            .join(format!("seed-{seed}"))
            .join("metrics.jsonl");
        if path.is_file() {
            return Ok(path);
        }
    }
    anyhow::bail!("no metrics of H={h}, seed {seed} under {}", runs.display())
}

/// Each epoch's steps (from the cumulative counts), training seconds and whole seconds.
fn read_epochs(metrics: &Path) -> anyhow::Result<Vec<Epoch>> {
    let mut epochs = Vec::new();
    let mut before = 0.0;
    for m in metric_lines(metrics)? {
        let number = |key: &str| {
            m[key]
                .as_f64()
                .with_context(|| format!("{}: no {key}", metrics.display()))
        };
        let steps = number("steps")?;
        epochs.push(Epoch {
            steps: steps - before,
            train_seconds: number("train_seconds")?,
            seconds: number("seconds")?,
        });
        before = steps;
    }
    Ok(epochs)
}

/// The JSON objects of a metrics.jsonl, one per epoch.
fn metric_lines(metrics: &Path) -> anyhow::Result<Vec<serde_json::Value>> {
    let text = std::fs::read_to_string(metrics)
        .with_context(|| format!("reading {}", metrics.display()))?;
    text.lines()
        .map(|line| {
            serde_json::from_str(line)
                .with_context(|| format!("{}: not JSON lines", metrics.display()))
        })
        .collect()
}

fn remove(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    Ok(())
}
