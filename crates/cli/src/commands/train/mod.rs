//! `timekd train`: distil the teacher's embeddings into the dual student.
//!
//! Reads the train and val stores `timekd extract` wrote for the dataset and H, trains with
//! the settings of `--config` overridden by flags, and writes a run directory: `config.toml`
//! (resolved), `metrics.jsonl`, `loss.png`, `checkpoints/{best,last}/`, and at the end the
//! test results of the best checkpoint (`test.json`, `results.json`, `pred.npy`,
//! `true.npy`, `forecast.png`; see [`timekd_student::test_run`]) and `summary.json`
//! ([`RunSummary`]).
//!
//! With several `--output-len` values or `--seeds`, each (H, seed) trains in turn: lengths
//! without finished stores are skipped, finished runs (a `summary.json`) reused, interrupted
//! ones resumed; a table of every run ends the output, and `results.csv`, `results.md` and
//! `results.tex` (mean ± std over seeds) are written beside the runs.
//!
//! SIGTERM or SIGINT (a scheduler's time limit, Ctrl-C) stops training at the next step
//! boundary with a resumable checkpoint and exit status 0; `--resume` continues it.

mod args;
mod one;
mod report;
mod stores;

use std::cell::RefCell;
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
    let verified = RefCell::new(HashSet::new());
    let mut done = Vec::new();
    for &h in &lengths {
        for &seed in &seeds {
            let run = one::RunRequest {
                args: &args,
                source: &source,
                experiment: &experiment,
                output_len: h,
                seed,
                sweep,
                stop: &stop,
                verified: &verified,
            };
            if let Some(outcome) = run.train()? {
                done.push(outcome);
            }
            if stop.load(Ordering::Relaxed) {
                eprintln!("stopped by a signal; run the same command with --resume to continue");
                return Ok(());
            }
        }
    }
    if sweep {
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
