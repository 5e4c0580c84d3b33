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
//! would alone; with `--pack` (the default on GPUs) the seeds of each length train in one
//! process as one packed model, each run still exactly as alone.
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
use timekd_student::Selection;

pub use args::TrainArgs;

/// Runs `timekd train`.
pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    args.check_train_engine()?;
    let lengths = args.data.output_len.clone();
    let seeds = args::seeds(&args)?;
    let selections = args::selections(&args)?;
    let sweep = lengths.len() > 1 || seeds.is_some() || selections.len() > 1;
    if sweep && args.run_dir.is_some() {
        bail!(
            "--run-dir names the run of one output length, seed and selection; with several \
             lengths, --seeds or --selection val,paper, runs go under --runs"
        );
    }
    let source = args.data.source()?;
    let seeds: Vec<Option<u64>> = match seeds {
        Some(seeds) => seeds.into_iter().map(Some).collect(),
        None => vec![None],
    };
    let stop = crate::signals::stop_flag()?;
    let runs: Vec<schedule::Run> = lengths
        .iter()
        .flat_map(|&h| seeds.iter().map(move |&seed| (h, seed)))
        .collect();
    let verified = RefCell::new(HashSet::new());
    let notes_said = Cell::new(false);
    let mut all = Vec::new();
    for &selection in &selections {
        let experiment = experiment_name(source.name(), &args, selection);
        let pass = Pass {
            args: &args,
            source: &source,
            experiment: &experiment,
            selection,
            sweep,
            stop: &stop,
            verified: &verified,
            notes_said: &notes_said,
        };
        let done = pass.train(runs.clone())?;
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
            report::write_sweep(
                &args.runs.join(&experiment),
                "results",
                source.name(),
                &done,
            )?;
        }
        all.extend(done);
    }
    if selections.len() > 1 && args.worker_run.is_none() {
        // Side by side: every selection's rows in one table, beside the first selection's.
        let base = experiment_name(source.name(), &args, selections[0]);
        report::write_sweep(
            &args.runs.join(base),
            "results-by-selection",
            source.name(),
            &all,
        )?;
    }
    Ok(())
}

/// The runs of one selection protocol: one experiment directory.
struct Pass<'a> {
    args: &'a TrainArgs,
    source: &'a timekd_data::DataSource,
    experiment: &'a str,
    selection: Selection,
    sweep: bool,
    stop: &'a std::sync::atomic::AtomicBool,
    verified: &'a RefCell<HashSet<std::path::PathBuf>>,
    notes_said: &'a Cell<bool>,
}

impl Pass<'_> {
    /// Trains `runs` (in child processes with `--jobs`, then reused here) and returns the
    /// finished ones.
    fn train(&self, runs: Vec<schedule::Run>) -> anyhow::Result<Vec<one::RunOutcome>> {
        let args = self.args;
        let mut works = schedule::works(&runs, args.pack_size());
        if let Some(name) = &args.worker_run {
            // A child of a sweep's `--jobs`: this work, with a sweep's reuse and resume.
            works.retain(|work| schedule::worker_run_name(work) == *name);
            if works.is_empty() {
                bail!(
                    "--worker-run {name} names no runs of these --output-len and --seeds (with \
                     this --pack setting)"
                );
            }
        } else {
            let workers = args.device.workers()?;
            let processes = schedule::workers(args.jobs, args.device, workers.len(), works.len());
            if self.sweep && processes > 1 {
                let specs: Vec<String> = workers.iter().map(|w| w.spec().to_string()).collect();
                let pool = schedule::Pool {
                    args,
                    experiment: self.experiment,
                    selection: self.selection,
                    device_specs: &specs,
                    workers: processes,
                };
                pool.run(&works, self.stop)?;
                // Every run is finished now (or stopped); the pass below reuses them.
            }
        }
        let mut done = Vec::new();
        for (h, seeds) in works {
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            let seeds = seeds
                .iter()
                .map(|&seed| one::SeedRun {
                    seed,
                    // Time-Series-Library's `ii`: the seed's place among this length's runs.
                    iteration: runs
                        .iter()
                        .filter(|run| run.0 == h)
                        .position(|run| run.1 == seed)
                        .unwrap_or(0),
                })
                .collect();
            let request = one::RunRequest {
                args,
                source: self.source,
                experiment: self.experiment,
                output_len: h,
                seeds,
                selection: self.selection,
                sweep: self.sweep || args.worker_run.is_some(),
                stop: self.stop,
                verified: self.verified,
                notes_said: self.notes_said,
            };
            done.extend(request.train()?);
        }
        Ok(done)
    }
}

/// The directory a dataset's runs go under: its name in `M` mode (where runs have always
/// been), `<name>-<features>-<target>` in `S` and `MS`; `-paper` appended for runs chosen by
/// the release's rule.
fn experiment_name(dataset: &str, args: &TrainArgs, selection: Selection) -> String {
    let name = match args.features {
        Features::M => dataset.to_string(),
        features => format!("{dataset}-{features}-{}", args.data.target),
    };
    match selection {
        Selection::Val => name,
        Selection::Paper => format!("{name}-paper"),
    }
}
