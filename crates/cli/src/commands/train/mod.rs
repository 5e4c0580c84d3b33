//! `timekd train`: distil the teacher's embeddings into the dual student.
//!
//! Reads the train and val stores `timekd extract` wrote for the dataset and H, trains with
//! the settings of `--config` overridden by flags, and writes a run directory: `config.toml`
//! (resolved), `metrics.jsonl`, `loss.png`, `checkpoints/{best,last}/`, and at the end
//! `test.json` (test MSE/MAE of the best checkpoint) and `summary.json`
//! ([`RunSummary`]: what `cargo xtask train` tabulates).
//!
//! With several `--output-len` values each H trains in turn: lengths without finished
//! stores are skipped, finished runs (a `summary.json`) reused, interrupted ones resumed, and
//! a table of every run ends the output.
//!
//! SIGTERM or SIGINT (a scheduler's time limit, Ctrl-C) stops training at the next step
//! boundary with a resumable checkpoint and exit status 0; `--resume` continues it.

mod args;
mod stores;

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use timekd_data::{DataSource, SplitKind};
use timekd_student::{
    DataInfo, RunDir, RunSummary, SplitData, TrainConfig, TrainData, Trainer, test_best_checkpoint,
};

pub use args::TrainArgs;

/// Runs `timekd train`.
pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let lengths = args.data.output_len.clone();
    let several = lengths.len() > 1;
    if several && args.run_dir.is_some() {
        bail!("--run-dir names the run of one output length; with several, runs go under --runs");
    }
    let source = args.data.source()?;
    let stop = crate::signals::stop_flag()?;
    let mut done = Vec::new();
    for h in lengths {
        if let Some(summary) = train_length(&args, &source, h, several, &stop)? {
            done.push(summary);
        }
        if stop.load(Ordering::Relaxed) {
            eprintln!("stopped by a signal; run the same command with --resume to continue");
            return Ok(());
        }
    }
    if several {
        if done.is_empty() {
            bail!(
                "no output length of {:?} has finished train + val stores under {}",
                args.data.output_len,
                args.stores.display()
            );
        }
        print_table(source.name(), &args, &done);
    }
    Ok(())
}

/// Trains (or, with several lengths, reuses or resumes) the run of H = `output_len`; `None`
/// when it was skipped for want of stores.
fn train_length(
    args: &TrainArgs,
    source: &DataSource,
    output_len: usize,
    several: bool,
    stop: &AtomicBool,
) -> anyhow::Result<Option<RunSummary>> {
    let dataset = source.load(&args.data.options(output_len))?;
    let mut config = args::resolve_config(args, output_len)?;
    let run = match &args.run_dir {
        Some(dir) => RunDir::new(dir),
        None => RunDir::for_run(&args.runs, source.name(), output_len, config.seed),
    };
    if args.fresh && run.path().exists() {
        std::fs::remove_dir_all(run.path())
            .with_context(|| format!("--fresh: cannot remove {}", run.path().display()))?;
    }
    if several && run.summary().is_file() {
        eprintln!(
            "H = {output_len}: finished run in {}; reused",
            run.path().display()
        );
        return Ok(Some(RunSummary::read(&run)?));
    }
    let resume = (args.resume || several) && run.has_checkpoint();
    if args.resume && !resume {
        eprintln!(
            "{}: nothing to resume yet; starting the run",
            run.path().display()
        );
    }
    if !resume && run.has_checkpoint() {
        bail!(
            "{}: a run already exists there; pass --resume to continue it, --fresh to replace \
             it, or choose another --run-dir",
            run.path().display()
        );
    }
    let limit = |kind| {
        let split = dataset.split(kind);
        args.max_windows.map_or(split.clone(), |k| split.head(k))
    };
    let (train_split, val_split) = (limit(SplitKind::Train), limit(SplitKind::Val));
    let Some((mut train_source, mut val_source)) =
        stores::open(args, source, &train_split, &val_split, several)?
    else {
        return Ok(None);
    };
    // The prompt branch's input width is the teacher's width, recorded in the store.
    config.model.d_llm = train_source.reader().dims().d_model;
    std::fs::create_dir_all(run.path())
        .with_context(|| format!("{}: cannot create", run.path().display()))?;
    write_toml(&run, &config)?;
    eprintln!(
        "training on {} ({} train / {} val windows, H = {output_len}) into {}",
        source.origin(),
        train_split.num_windows(),
        val_split.num_windows(),
        run.path().display()
    );
    let devices = args.device.devices()?;
    let started = Instant::now();
    let data = TrainData {
        info: DataInfo {
            dataset: source.name().to_string(),
            var_names: dataset.var_names().to_vec(),
        },
        train: SplitData {
            split: train_split,
            embeddings: &mut train_source,
        },
        val: SplitData {
            split: val_split,
            embeddings: &mut val_source,
        },
    };
    let trained = Trainer::new(&config, &run)
        .devices(&devices)
        .resume(resume)
        .stop_on(stop)
        .on_epoch(&mut |m| {
            eprintln!(
                "epoch {:>3}  lr {:.2e}  train {:.5}  val {:.5}{}  ({:.1} s, training steps {:.1} s)",
                m.epoch,
                m.lr,
                m.train.total,
                m.val.total,
                if m.best { "  *best" } else { "" },
                m.seconds,
                m.train_seconds
            );
            ControlFlow::Continue(())
        })
        .train(data)?;
    if trained.interrupted {
        eprintln!(
            "H = {output_len}: interrupted after {} complete epochs; a resumable checkpoint is in \
             {}",
            trained.epochs_done,
            run.last().display()
        );
        return Ok(None);
    }
    let seconds = started.elapsed().as_secs_f64();
    let test = dataset.split(SplitKind::Test);
    let report = test_best_checkpoint(&run, &test, config.batch_size, &devices[0])?;
    let device = args.device.to_string();
    let summary = RunSummary::new(
        output_len,
        &trained,
        &report,
        seconds,
        device,
        devices.len(),
    );
    summary.write(&run)?;
    println!(
        "{} epochs{}; best val loss {:.5} at epoch {}; test MSE {:.4} MAE {:.4} ({})",
        summary.epochs,
        if summary.stopped_early {
            " (early stop)"
        } else {
            ""
        },
        summary.best_val_loss.unwrap_or(f64::NAN),
        summary.best_epoch.unwrap_or(0),
        summary.test_mse,
        summary.test_mae,
        run.test_report().display()
    );
    Ok(Some(summary))
}

/// The resolved settings as the run's `config.toml`.
fn write_toml(run: &RunDir, config: &TrainConfig) -> anyhow::Result<()> {
    let path = run.config();
    let text = toml::to_string_pretty(config).context("serialising the resolved config")?;
    timekd_data::files::write_atomic(&path, text.as_bytes())
        .with_context(|| format!("{}: cannot write {} bytes", path.display(), text.len()))
}

/// One line per run: H, epochs, best validation loss, test MSE/MAE, time.
fn print_table(dataset: &str, args: &TrainArgs, runs: &[RunSummary]) {
    println!("student runs for {dataset} (device {})", args.device);
    println!(
        "{:>5} {:>7} {:>14} {:>10} {:>10} {:>10}",
        "H", "epochs", "best val loss", "test MSE", "test MAE", "time s"
    );
    for r in runs {
        println!(
            "{:>5} {:>6}{} {:>14.5} {:>10.4} {:>10.4} {:>10.1}",
            r.output_len,
            r.epochs,
            if r.stopped_early { "*" } else { " " },
            r.best_val_loss.unwrap_or(f64::NAN),
            r.test_mse,
            r.test_mae,
            r.train_seconds_this_invocation
        );
    }
    println!(
        "(* early stop on the validation loss; test metrics of the best checkpoint, scaled data)"
    );
}
