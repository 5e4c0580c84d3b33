//! The runs of one output length in `timekd train`: each (dataset, H, seed) into its run
//! directory, then its test results. Several seeds of the length train together as one
//! packed model (`--pack`, see [`timekd_student::Trainer::and_run`]); each run is still
//! reused, resumed and tested on its own.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Context, bail};
use burn::tensor::Device;
use timekd_data::{DataSource, Dataset, SplitFamily, SplitKind};
use timekd_student::{
    DataInfo, EvalReport, RunDir, RunSummary, Selection, SplitData, TestOptions, TestResults,
    TrainConfig, TrainData, TrainSummary, Trainer, TslibSetting, read_state, test_run, write_tslib,
};

use super::TrainArgs;
#[cfg(feature = "cuda")]
use super::args::TrainEngine;
use super::args::resolve_config;
use crate::train_progress::TrainProgress;

/// What a finished run reports.
pub struct RunOutcome {
    /// Its `summary.json`.
    pub summary: RunSummary,
    /// Its seed.
    pub seed: u64,
    /// Its `results.json`.
    pub results: TestResults,
}

/// One seed of a [`RunRequest`].
#[derive(Debug, Clone, Copy)]
pub struct SeedRun {
    /// `--seeds`' seed, else the config's.
    pub seed: Option<u64>,
    /// The seed's place among the runs of this length (Time-Series-Library's `ii`).
    pub iteration: usize,
}

/// The runs of one H: one seed, or several trained together (packed).
pub struct RunRequest<'a> {
    pub args: &'a TrainArgs,
    pub source: &'a DataSource,
    /// The directory under `--runs` (the dataset's name, with the feature mode).
    pub experiment: &'a str,
    pub output_len: usize,
    /// The seeds, trained together when there are several.
    pub seeds: Vec<SeedRun>,
    /// How the kept checkpoint is chosen.
    pub selection: Selection,
    /// Part of a sweep: reuse finished runs, resume interrupted ones, skip missing stores.
    pub sweep: bool,
    /// Set by SIGTERM/SIGINT: stop at the next step boundary with a resumable checkpoint.
    pub stop: &'a AtomicBool,
    /// Stores already checked against their checksums in this invocation.
    pub verified: &'a RefCell<HashSet<PathBuf>>,
    /// Whether the data's notes were printed in this invocation.
    pub notes_said: &'a Cell<bool>,
}

/// A run to train: its resolved settings, directory and name.
struct Planned {
    config: TrainConfig,
    run: RunDir,
    label: String,
    seed: SeedRun,
    resume: bool,
}

impl RunRequest<'_> {
    /// Trains (or reuses, or resumes) the runs; the finished ones, in seed order (a run
    /// skipped for want of stores, or stopped by a signal, is left out).
    pub fn train(&self) -> anyhow::Result<Vec<RunOutcome>> {
        let (args, h) = (self.args, self.output_len);
        let mut options = args.data.options(h);
        options.features = args.features;
        let dataset = self.source.load(&options)?;
        if !self.notes_said.replace(true) {
            crate::data_args::say_notes(dataset.notes());
        }
        let mut done = Vec::new();
        let mut planned = Vec::new();
        for &seed in &self.seeds {
            match self.plan(seed, &dataset)? {
                Ok(outcome) => done.push(outcome),
                Err(plan) => planned.push(plan),
            }
        }
        if planned.is_empty() {
            return Ok(done);
        }
        let limit = |kind| {
            let split = dataset.split(kind);
            args.max_windows.map_or(split.clone(), |k| split.head(k))
        };
        let (train_split, val_split) = (limit(SplitKind::Train), limit(SplitKind::Val));
        let Some((mut train_source, mut val_source)) = super::stores::open(
            args,
            self.source,
            &train_split,
            &val_split,
            self.sweep,
            self.verified,
        )?
        else {
            return Ok(done);
        };
        // The prompt branch's input width is the teacher's width, recorded in the store.
        let d_llm = train_source.reader().dims().d_model;
        for plan in &mut planned {
            plan.config.model.d_llm = d_llm;
            std::fs::create_dir_all(plan.run.path())
                .with_context(|| format!("{}: cannot create", plan.run.path().display()))?;
            write_toml(&plan.run, &plan.config)?;
            eprintln!(
                "training on {} (--features {}: {}; {} train / {} val windows, {}) into {}",
                self.source.origin(),
                args.features,
                dataset.var_names().join(", "),
                train_split.num_windows(),
                val_split.num_windows(),
                plan.label,
                plan.run.path().display()
            );
        }
        if planned.len() > 1 {
            eprintln!(
                "{} runs of H = {h} train together as one packed model",
                planned.len()
            );
        }
        let devices = args.training_device().devices()?;
        let started = Instant::now();
        let data = TrainData {
            info: DataInfo::of(self.source.name(), &dataset),
            train: SplitData {
                split: train_split,
                embeddings: &mut train_source,
            },
            val: SplitData {
                split: val_split,
                embeddings: &mut val_source,
            },
            test: Some(dataset.split(SplitKind::Test)),
        };
        let progress = RefCell::new(TrainProgress::new());
        let packed = planned.len() > 1;
        let mut trainer = Trainer::new(&planned[0].config, &planned[0].run);
        for plan in &planned[1..] {
            trainer = trainer.and_run(&plan.config, &plan.run);
        }
        let engine = args.engine_ordinal(planned[0].config.accumulate)?;
        #[cfg(feature = "cuda")]
        let engine = engine.filter(|&ordinal| {
            let resident = |split: &SplitData| {
                let (model, vars) = (&planned[0].config.model, dataset.n_vars());
                timekd_student::cuda::split_bytes(split.split.num_windows(), vars, model)
            };
            let bytes = resident(&data.train) + resident(&data.val);
            let free =
                timekd_teacher::device::gpu_free_memory(timekd_teacher::Gpus::Index(ordinal))
                    .unwrap_or(0);
            let fits = bytes <= free / 2;
            if !fits && args.train_engine == TrainEngine::Auto {
                eprintln!(
                    "note: the student's CUDA engine would keep {:.1} GiB of windows and \
                     embeddings on cuda:{ordinal}, more than half of its {:.1} GiB free; \
                     training with Burn, which streams batches (--train-engine cuda insists)",
                    timekd_teacher::extract::budget::gib(bytes),
                    timekd_teacher::extract::budget::gib(free)
                );
            }
            fits || args.train_engine == TrainEngine::Cuda
        });
        if let Some(ordinal) = engine {
            eprintln!("student steps on the student's CUDA engine (cuda:{ordinal})");
        }
        #[cfg(feature = "cuda")]
        let trainer = trainer.cuda_engine(engine);
        let trained = trainer
            .devices(&devices)
            .resume(planned.iter().any(|p| p.resume))
            .stop_on(self.stop)
            .on_step(&mut |s| progress.borrow_mut().step(s))
            .on_epoch(&mut |i, m| {
                let prefix = match packed {
                    true => format!("{}: ", planned[i].label),
                    false => String::new(),
                };
                progress.borrow_mut().epoch(&prefix, m);
                ControlFlow::Continue(())
            })
            .train_all(data)?;
        progress.borrow().finish();
        let seconds = started.elapsed().as_secs_f64();
        for (plan, trained) in planned.iter().zip(trained) {
            if let Some(outcome) = self.finish(plan, &trained, &dataset, seconds, &devices)? {
                done.push(outcome);
            }
        }
        done.sort_by_key(|o| self.seeds.iter().position(|s| s.seed == Some(o.seed)));
        Ok(done)
    }

    /// The run of `seed`: reused when a sweep finds it finished (`Ok`), else planned.
    fn plan(
        &self,
        seed: SeedRun,
        dataset: &Dataset,
    ) -> anyhow::Result<Result<RunOutcome, Planned>> {
        let (args, h) = (self.args, self.output_len);
        let mut config = resolve_config(args, h)?;
        if let Some(seed) = seed.seed {
            config.seed = seed;
        }
        config.selection = self.selection;
        let run = match &args.run_dir {
            Some(dir) => RunDir::new(dir),
            None => RunDir::for_run(&args.runs, self.experiment, h, config.seed),
        };
        if args.fresh && run.path().exists() {
            std::fs::remove_dir_all(run.path())
                .with_context(|| format!("--fresh: cannot remove {}", run.path().display()))?;
        }
        // The seed is named only when `--seeds` chose it.
        let label = match seed.seed {
            Some(seed) => format!("H = {h}, seed {seed}"),
            None => format!("H = {h}"),
        };
        if self.sweep && run.summary().is_file() {
            same_settings(&run, &config)?;
            eprintln!("{label}: finished run in {}; reused", run.path().display());
            let summary = RunSummary::read(&run)?;
            let results = match TestResults::read(&run) {
                Ok(r) if r.data_units.is_some() || !args.inverse => r,
                // Tested before results.json existed, or without --inverse: test again.
                _ => {
                    self.test(
                        &run,
                        dataset,
                        &config,
                        &args.training_device().devices()?[0],
                    )?
                    .1
                }
            };
            self.write_tslib(&run, dataset, &config, &results, seed.iteration)?;
            return Ok(Ok(RunOutcome {
                summary,
                seed: config.seed,
                results,
            }));
        }
        let resume = (args.resume || self.sweep) && run.has_checkpoint();
        if args.resume && !resume {
            eprintln!(
                "{}: nothing to resume yet; starting the run",
                run.path().display()
            );
        }
        if !resume && run.has_checkpoint() {
            bail!(
                "{}: a run already exists there; pass --resume to continue it, --fresh to                  replace it, or choose another --run-dir",
                run.path().display()
            );
        }
        Ok(Err(Planned {
            config,
            run,
            label,
            seed,
            resume,
        }))
    }

    /// After training: the test results and summary of a run that finished; `None` for
    /// one a signal stopped.
    fn finish(
        &self,
        plan: &Planned,
        trained: &TrainSummary,
        dataset: &Dataset,
        seconds: f64,
        devices: &[Device],
    ) -> anyhow::Result<Option<RunOutcome>> {
        let (run, config, label) = (&plan.run, &plan.config, &plan.label);
        if trained.interrupted {
            eprintln!(
                "{label}: interrupted after {} complete epochs; a resumable checkpoint is in {}",
                trained.epochs_done,
                run.last().display()
            );
            return Ok(None);
        }
        let (report, results) = self.test(run, dataset, config, &devices[0])?;
        self.write_tslib(run, dataset, config, &results, plan.seed.iteration)?;
        let device = self.args.training_device().to_string();
        let summary = RunSummary::new(
            self.output_len,
            trained,
            &report,
            seconds,
            device,
            devices.len(),
        );
        summary.write(run)?;
        println!(
            "{}{} epochs{}; kept epoch {} (selection {}, val loss {:.5}); test MSE {:.4} MAE {:.4} ({})",
            match self.seeds.len() > 1 {
                true => format!("{label}: "),
                false => String::new(),
            },
            summary.epochs,
            if summary.stopped_early {
                " (early stop)"
            } else {
                ""
            },
            summary.best_epoch.unwrap_or(0),
            config.selection,
            summary.best_val_loss.unwrap_or(f64::NAN),
            summary.test_mse,
            summary.test_mae,
            run.results().display()
        );
        Ok(Some(RunOutcome {
            summary,
            seed: config.seed,
            results,
        }))
    }

    /// With `--tslib`, the test results in Time-Series-Library's layout too.
    fn write_tslib(
        &self,
        run: &RunDir,
        dataset: &Dataset,
        config: &TrainConfig,
        results: &TestResults,
        iteration: usize,
    ) -> anyhow::Result<()> {
        let Some(root) = &self.args.tslib else {
            return Ok(());
        };
        let model = &config.model;
        let setting = TslibSetting {
            model_id: format!(
                "{}_{}_{}",
                self.source.name(),
                model.input_len,
                model.output_len
            ),
            data: match dataset.preset().family() {
                SplitFamily::Custom => "custom".into(),
                _ => dataset.preset().name().into(),
            },
            features: self.args.features,
            seq_len: model.input_len,
            pred_len: model.output_len,
            d_model: model.channel,
            n_heads: model.heads,
            e_layers: model.layers,
            d_ff: model.d_ff,
            des: match config.selection {
                Selection::Val => "Exp".into(),
                Selection::Paper => "paper".into(),
            },
            iteration,
        };
        let dir = write_tslib(root, &setting, run, results)?;
        eprintln!("Time-Series-Library results: {}", dir.display());
        Ok(())
    }

    /// Tests the run's best checkpoint on the whole test split.
    fn test(
        &self,
        run: &RunDir,
        dataset: &Dataset,
        config: &TrainConfig,
        device: &Device,
    ) -> anyhow::Result<(EvalReport, TestResults)> {
        let options = TestOptions {
            batch_size: config.batch_size,
            features: self.args.features,
            data_units: self.args.inverse,
        };
        Ok(test_run(
            run,
            &dataset.split(SplitKind::Test),
            &options,
            device,
        )?)
    }
}

/// Refuses to reuse a finished run trained with other settings than `config` (the
/// teacher's width, read from the stores at training time, aside).
fn same_settings(run: &RunDir, config: &TrainConfig) -> anyhow::Result<()> {
    let trained = read_state(&run.best())?.config;
    let mut wanted = config.clone();
    wanted.model.d_llm = trained.model.d_llm;
    if trained != wanted {
        let (a, b) = (
            toml::to_string(&trained).unwrap_or_default(),
            toml::to_string(&wanted).unwrap_or_default(),
        );
        let differences: Vec<String> = a
            .lines()
            .zip(b.lines())
            .filter(|(x, y)| x != y)
            .map(|(x, y)| format!("{x} (now {})", y.split_once('=').map_or(y, |p| p.1).trim()))
            .collect();
        let differences = match differences.is_empty() {
            true => format!("see its {}", run.config().display()),
            false => differences.join(", "),
        };
        bail!(
            "{}: this finished run was trained with other settings ({differences}); pass \
             --fresh to retrain this command's runs, or choose another --runs",
            run.path().display()
        );
    }
    Ok(())
}

/// The resolved settings as the run's `config.toml`.
fn write_toml(run: &RunDir, config: &TrainConfig) -> anyhow::Result<()> {
    let path = run.config();
    let text = toml::to_string_pretty(config).context("serialising the resolved config")?;
    timekd_data::files::write_atomic(&path, text.as_bytes())
        .with_context(|| format!("{}: cannot write {} bytes", path.display(), text.len()))
}
