//! `timekd train`: distil the teacher's embeddings into the dual student.
//!
//! Reads the train and val stores `timekd extract` wrote for the dataset and H, trains with
//! the settings of `--config` overridden by flags, and writes a run directory: `config.toml`
//! (resolved), `metrics.jsonl`, `loss.png`, `checkpoints/{best,last}/`, and at the end the
//! test results of the best checkpoint (`test.json`, `results.json`, `pred.npy`,
//! `true.npy`, `forecast.png`; see [`timekd_student::test_run`]) and `summary.json`
//! ([`RunSummary`]).
//!
//! With several `--output-len` values or `--seeds`, every (H, seed) is a run: lengths
//! without finished stores are skipped, finished runs (a `summary.json`) reused, interrupted
//! ones resumed; a table of every run ends the output, and `results.csv`, `results.md` and
//! `results.tex` (mean ± std over seeds) are written beside the runs. Runs train `--jobs` at
//! a time on each device, one process each (see the `schedule` module), each exactly as it
//! would alone.
//!
//! SIGTERM or SIGINT (a scheduler's time limit, Ctrl-C) stops training at the next step
//! boundary with a resumable checkpoint and exit status 0; `--resume` continues it.

mod args;
mod one;
mod report;
mod schedule;
mod stores;

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::sync::atomic::Ordering;

use anyhow::bail;
use timekd_data::Features;

pub use args::TrainArgs;

/// Runs `timekd train`.
pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let lengths = args.data.output_len.clone();
    let seeds = args::seeds(&args)?;
    let sweep = lengths.len() > 1 || seeds.is_some();
    if sweep && args.run_dir.is_some() {
        bail!(
            "--run-dir names the run of one output length and seed; with several lengths or \
             --seeds, runs go under --runs"
        );
    }
    let source = args.data.source()?;
    let experiment = experiment_name(source.name(), &args);
    let seeds: Vec<Option<u64>> = match seeds {
        Some(seeds) => seeds.into_iter().map(Some).collect(),
        None => vec![None],
    };
    let stop = crate::signals::stop_flag()?;
    let mut runs: Vec<schedule::Run> = lengths
        .iter()
        .flat_map(|&h| seeds.iter().map(move |&seed| (h, seed)))
        .collect();
    if let Some(name) = &args.worker_run {
        // A child of a sweep's `--jobs`: this one run, with a sweep's reuse and resume.
        runs.retain(|&run| schedule::worker_run_name(run) == *name);
        if runs.is_empty() {
            bail!("--worker-run {name} names no run of these --output-len and --seeds");
        }
    } else {
        let workers = args.device.workers()?;
        let processes = schedule::workers(args.jobs, args.device, workers.len(), runs.len());
        if sweep && processes > 1 {
            let specs: Vec<String> = workers
                .iter()
                .map(|w| w.cuda_ordinal.map_or("cpu".into(), |k| format!("cuda:{k}")))
                .collect();
            schedule::run_processes(&args, &experiment, &runs, &specs, processes, &stop)?;
            // Every run is finished now (or stopped); the pass below reuses them and tabulates.
        }
    }
    let verified = RefCell::new(HashSet::new());
    let notes_said = Cell::new(false);
    let mut done = Vec::new();
    for &(h, seed) in &runs {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let run = one::RunRequest {
            args: &args,
            source: &source,
            experiment: &experiment,
            output_len: h,
            seed,
            sweep: sweep || args.worker_run.is_some(),
            stop: &stop,
            verified: &verified,
            notes_said: &notes_said,
        };
        if let Some(outcome) = run.train()? {
            done.push(outcome);
        }
    }
    if stop.load(Ordering::Relaxed) {
        eprintln!("stopped by a signal; run the same command with --resume to continue");
        return Ok(());
    }
    if sweep && args.worker_run.is_none() {
        if done.is_empty() {
            bail!(
                "no output length of {:?} has finished train + val stores under {}",
                args.data.output_len,
                args.stores.display()
            );
        }
        report::print_table(source.name(), &args, &done);
        report::write_sweep(&args.runs.join(&experiment), source.name(), &done)?;
    }
    Ok(())
}

/// The directory a dataset's runs go under: its name in `M` mode (where runs have always
/// been), `<name>-<features>-<target>` in `S` and `MS`.
fn experiment_name(dataset: &str, args: &TrainArgs) -> String {
    match args.features {
        Features::M => dataset.to_string(),
        features => format!("{dataset}-{features}-{}", args.data.target),
    }
}
