//! [`Trainer`]: privileged-distillation training. AdamW, gradient clipping, per-epoch cosine
//! schedule, gradient accumulation, validation, early stopping, checkpoints and exact resume.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::tensor::Device;
use timekd_data::{BatchOrder, Split};

use crate::batches::stream_batches;
use crate::checkpoint::{
    CheckpointState, DataInfo, STATE_VERSION, load_checkpoint, load_optimizer, save_checkpoint,
    settle,
};
use crate::data::{SplitData, TrainData};
use crate::error::{Result, StudentError};
use crate::eval::predict;
use crate::interrupt::EpochSums;
use crate::interrupt::PartialEpoch;
use crate::loss::LossValues;
use crate::metrics::{EpochMetrics, append_metrics, write_metrics};
use crate::model::Dual;
use crate::optim::{AdamW, GradientSet};
use crate::parallel::{micro_batch, mix};
use crate::plot::plot_losses;
use crate::progress::TrainStep;
use crate::run_dir::RunDir;
use crate::selection::select;
use crate::step_profile::StepProfile;
use crate::summary::TrainSummary;
use crate::train_config::Selection;
use crate::train_config::TrainConfig;
use crate::validation::{check_paper_split, check_split, paper_needs_test, validation_loss};

/// What an epoch callback gets (the run's place among the trainer's runs, its epoch's
/// metrics) and returns: `ControlFlow::Break` stops after that epoch's checkpoints.
type OnEpoch<'a> = &'a mut dyn FnMut(usize, &EpochMetrics) -> ControlFlow<()>;
/// A callback after every optimiser step.
type OnStep<'a> = &'a mut dyn FnMut(&TrainStep);

/// Trains the dual model into a run directory, writing `metrics.jsonl`, `loss.png` and
/// checkpoints.
///
/// ```no_run
/// # use std::ops::ControlFlow;
/// # use timekd_student::{RunDir, TrainConfig, TrainData, Trainer};
/// # fn run(config: &TrainConfig, data: TrainData, device: &burn::tensor::Device) -> timekd_student::Result<()> {
/// let run = RunDir::new("runs/student/ETTh1/24/seed-2024");
/// let summary = Trainer::new(config, &run)
///     .devices(std::slice::from_ref(device))
///     .resume(false)
///     .on_epoch(&mut |_, m| {
///         println!("epoch {} val {:.4}", m.epoch, m.val.total);
///         ControlFlow::Continue(())
///     })
///     .train(data)?;
/// println!("best {:?}", summary.best);
/// # Ok(())
/// # }
/// ```
///
/// Devices are made autodiff for training; validation runs without autodiff on the first.
/// With several devices (e.g. every GPU of a host) each micro-batch's windows are split
/// evenly over them, a replica of the model (Burn's `Module::fork`) runs each share on its
/// own thread, and the gradients, weighted by share size, are summed on the first device,
/// which holds the model, the optimiser and validation. Like PyTorch's DDP, each device
/// computes the batch-level attention-map term over its own share, so that term (and dropout
/// masks) differ from a one-device run; the per-window terms do not: with `att_weight` 0 and
/// no dropout the gradients equal one device's up to float rounding.
///
/// **Packed runs.** [`and_run`](Self::and_run) adds runs that differ from the first only in
/// their seed (the seeds of one output length in a paper's table). They train together on
/// one device as one packed model ([`Dual::pack`]): each step runs every operation once for
/// all of them, so a step of R runs costs about what one run's does on a launch-bound GPU.
/// Each run keeps its own batch order, dropout masks, clipping norm, optimiser moments,
/// selection, early stopping and run directory, and reaches the weights it reaches alone
/// (on the CPU bit for bit, up to the order of floating-point sums). A run that stops early
/// leaves the pack; runs found at different points on resume train in steps of the one
/// furthest behind until they meet.
///
/// With [`resume`](Self::resume), training continues from the run's last checkpoint and, on
/// the same device kind, reaches the same weights as an uninterrupted run: shuffling and
/// dropout are seeded from (seed, epoch, step), and the optimiser's moments are restored
/// exactly. Dropout masks depend only on (seed, step, micro-batch) and their place in the
/// forward pass, so several runs may train at once in one process (threads) and each still
/// reaches the weights it reaches alone.
///
/// With [`stop_on`](Self::stop_on) (e.g. a flag a SIGTERM handler sets), training stops at
/// the next step boundary and saves a checkpoint of the partial epoch that a resumed run
/// continues from the next step, to the same result.
pub struct Trainer<'a> {
    runs: Vec<(&'a TrainConfig, &'a RunDir)>,
    devices: Vec<Device>,
    resume: bool,
    on_epoch: Option<OnEpoch<'a>>,
    on_step: Option<OnStep<'a>>,
    stop: Option<&'a AtomicBool>,
    /// CUDA device of the student engine, when it trains the steps instead of Burn.
    #[cfg(feature = "cuda")]
    cuda_engine: Option<usize>,
}

impl<'a> Trainer<'a> {
    /// A run of `config` into `run`; give it at least one device.
    pub fn new(config: &'a TrainConfig, run: &'a RunDir) -> Self {
        Trainer {
            runs: vec![(config, run)],
            devices: Vec::new(),
            resume: false,
            on_epoch: None,
            on_step: None,
            stop: None,
            #[cfg(feature = "cuda")]
            cuda_engine: None,
        }
    }

    /// Train the steps (and validation) with the student's CUDA engine on device
    /// `ordinal` ([`crate::cuda::FusedStudent`]) instead of Burn; `None` keeps Burn. The
    /// engine trains one device, without gradient accumulation; checkpoints, selection and
    /// resume are the same.
    #[cfg(feature = "cuda")]
    pub fn cuda_engine(mut self, ordinal: Option<usize>) -> Self {
        self.cuda_engine = ordinal;
        self
    }

    /// Another run trained packed with the first: its `config` may differ from the first's
    /// in `seed` alone (checked when training starts).
    pub fn and_run(mut self, config: &'a TrainConfig, run: &'a RunDir) -> Self {
        self.runs.push((config, run));
        self
    }

    /// The devices to train on: one, or several for data parallelism (one run only).
    pub fn devices(mut self, devices: &[Device]) -> Self {
        self.devices = devices.to_vec();
        self
    }

    /// Continue each run from its last checkpoint, where it has one, instead of starting
    /// afresh.
    pub fn resume(mut self, resume: bool) -> Self {
        self.resume = resume;
        self
    }

    /// Called with each run's epoch metrics (and the run's place, 0 for the first);
    /// `ControlFlow::Break` stops after that epoch's checkpoints (the runs can be resumed).
    pub fn on_epoch(mut self, on_epoch: OnEpoch<'a>) -> Self {
        self.on_epoch = Some(on_epoch);
        self
    }

    /// Called after every optimiser step (progress bars).
    pub fn on_step(mut self, on_step: OnStep<'a>) -> Self {
        self.on_step = Some(on_step);
        self
    }

    /// Stop at the next step boundary once `flag` is set: the runs' last checkpoints then
    /// hold the partial epoch (see [`CheckpointState::partial`]) and the summaries say
    /// `interrupted`.
    pub fn stop_on(mut self, flag: &'a AtomicBool) -> Self {
        self.stop = Some(flag);
        self
    }

    /// Trains the one run on `data` until its epochs are done, early stopping, or the
    /// callback or the stop flag stops it.
    pub fn train(self, data: TrainData) -> Result<TrainSummary> {
        if self.runs.len() != 1 {
            return Err(StudentError::Config(
                "Trainer::train trains one run; use train_all for packed runs".into(),
            ));
        }
        let mut summaries = self.train_all(data)?;
        Ok(summaries.remove(0))
    }

    /// Trains every run on `data` (packed, see the type's documentation); one summary per
    /// run, in the order they were given.
    pub fn train_all(self, data: TrainData) -> Result<Vec<TrainSummary>> {
        let Trainer {
            runs,
            devices,
            resume,
            mut on_epoch,
            mut on_step,
            stop,
            #[cfg(feature = "cuda")]
            cuda_engine,
        } = self;
        let stopping = || stop.is_some_and(|flag| flag.load(Ordering::Relaxed));
        let Some(device) = devices.first() else {
            return Err(StudentError::Config("no device to train on".into()));
        };
        let config = check_pack(&runs, devices.len())?;
        let replicas: Vec<Device> = devices.iter().map(|d| d.clone().autodiff()).collect();
        let TrainData {
            info,
            mut train,
            mut val,
            test,
        } = data;
        config.validate()?;
        check_split(config, &train)?;
        check_split(config, &val)?;
        if config.selection == Selection::Paper {
            check_paper_split(config, &val, test.as_ref())?;
        }
        let device = device.clone().autodiff();
        let mut slots = runs
            .iter()
            .map(|&(config, run)| start(config, info.clone(), run, resume, &device))
            .collect::<Result<Vec<RunState>>>()?;
        let mut interrupted = false;
        let mut profile = StepProfile::from_env();
        #[cfg(feature = "cuda")]
        let mut engines =
            crate::cuda::Engines::new(cuda_engine, config, devices.len(), runs.len())?;

        while !interrupted {
            // The runs furthest behind train next, packed; the others wait for them.
            let Some(behind) = slots
                .iter()
                .filter(|s| !s.finished())
                .map(RunState::place)
                .min()
            else {
                break;
            };
            let cohort: Vec<usize> = (0..slots.len())
                .filter(|&i| !slots[i].finished() && slots[i].place() == behind)
                .collect();
            let epoch = behind.0;
            let started = Instant::now();
            let lr = config.lr_at(epoch);
            let mut model = Dual::pack(cohort.iter().map(|&i| slots[i].model.clone()).collect())?;
            let mut optimizer =
                AdamW::pack(cohort.iter().map(|&i| slots[i].optimizer.clone()).collect())?;
            let configs: Vec<&TrainConfig> = cohort.iter().map(|&i| runs[i].0).collect();
            let partials: Vec<Option<PartialEpoch>> = cohort
                .iter()
                .map(|&i| slots[i].state.partial.take())
                .collect();
            let mut sums = EpochSums::start(
                &partials.iter().map(Option::as_ref).collect::<Vec<_>>(),
                &device.clone().without_autodiff(),
            );
            let mut pass = EpochPass {
                configs: &configs,
                epoch,
                lr,
                steps_before: slots[cohort[0]].state.steps,
                replicas: &replicas,
                device: &device,
                profile: &mut profile,
                on_step: &mut on_step,
                stopping: &stopping,
            };
            #[cfg(feature = "cuda")]
            let stopped = match engines.as_mut() {
                Some(engines) => {
                    let models: Vec<&Dual> = cohort.iter().map(|&i| &slots[i].model).collect();
                    let mut on = engines.ready(&cohort, &models, config, (&mut train, &mut val))?;
                    pass.run_on_engines(&mut on, &mut model, &mut optimizer, &train, &mut sums)?
                }
                None => pass.run(&mut model, &mut optimizer, &mut train, &mut sums)?,
            };
            #[cfg(not(feature = "cuda"))]
            let stopped = pass.run(&mut model, &mut optimizer, &mut train, &mut sums)?;
            let steps = optimizer.steps();

            if stopped {
                let partials = sums.to_partials(started.elapsed())?;
                let parts = model.unpack().into_iter().zip(optimizer.unpack());
                for ((&i, partial), (model, optimizer)) in cohort.iter().zip(partials).zip(parts) {
                    let slot = &mut slots[i];
                    slot.state.steps = steps;
                    slot.state.partial = Some(partial);
                    save_checkpoint(&runs[i].1.last(), &model, Some(&optimizer), &slot.state)?;
                    (slot.model, slot.optimizer) = (model, optimizer);
                }
                interrupted = true;
                break;
            }

            let step_count = sums.steps;
            let train_sums = profile.time(|p| &mut p.drain, || LossValues::read(sums.train))?;
            let train_seconds = (sums.earlier + started.elapsed()).as_secs_f64();
            let norm_sums = crate::state_dict::tensor_to_vec(sums.norm)?;
            let val_losses = profile.time(
                |p| &mut p.validation,
                || {
                    #[cfg(feature = "cuda")]
                    if let Some(engines) = engines.as_mut() {
                        return engines.validation(&cohort, config, &val);
                    }
                    validation_loss(&model, config, &mut val, &device)
                },
            )?;
            let parts = model.unpack().into_iter().zip(optimizer.unpack());
            for (k, (model, optimizer)) in parts.enumerate() {
                let i = cohort[k];
                let (config, run) = runs[i];
                let slot = &mut slots[i];
                (slot.model, slot.optimizer) = (model, optimizer);
                slot.state.steps = steps;
                let train_sum = train_sums[k];
                if !train_sum.total.is_finite() {
                    // Checked once per epoch, before anything of this epoch is saved.
                    return Err(StudentError::NonFinite {
                        value: train_sum.total,
                        epoch,
                        step: steps,
                    });
                }
                let saving_started = Instant::now();
                let metrics = slot.finish_epoch(
                    config,
                    run,
                    EpochResult {
                        epoch,
                        lr,
                        train: train_sum,
                        val: val_losses[k],
                        grad_norm: f64::from(norm_sums[k]) / step_count.max(1) as f64,
                        train_seconds,
                        seconds: started.elapsed().as_secs_f64(),
                    },
                    test.as_ref(),
                    &device,
                )?;
                profile.saving += saving_started.elapsed();
                interrupted |= on_epoch.as_mut().is_some_and(|f| f(i, &metrics).is_break());
            }
            profile.report(epoch, train_seconds);
            let unfinished = slots.iter().any(|s| !s.finished());
            interrupted |= unfinished && stopping();
        }

        Ok(slots
            .into_iter()
            .map(|slot| TrainSummary {
                epochs_done: slot.state.epochs_done,
                best: slot.state.best,
                stopped_early: slot.state.stopped_early,
                interrupted: interrupted && !slot.finished(),
                history: slot.state.history,
            })
            .collect())
    }
}

/// The configuration the runs share: every run's, the seed aside, must be the first's; a
/// pack trains on one device.
fn check_pack<'a>(runs: &[(&'a TrainConfig, &RunDir)], devices: usize) -> Result<&'a TrainConfig> {
    let (first, _) = runs
        .first()
        .copied()
        .ok_or_else(|| StudentError::Config("no run to train".into()))?;
    for (config, run) in &runs[1..] {
        let mut same = (*config).clone();
        same.seed = first.seed;
        if same != *first {
            return Err(StudentError::Config(format!(
                "{}: runs trained together may differ only in their seed",
                run.path().display()
            )));
        }
    }
    if runs.len() > 1 && devices > 1 {
        return Err(StudentError::Config(
            "packed runs train on one device; give each pack its own device".into(),
        ));
    }
    Ok(first)
}

/// One epoch (or what is left of it) of a pack of runs.
pub(crate) struct EpochPass<'p, 'a> {
    pub(crate) configs: &'p [&'p TrainConfig],
    epoch: usize,
    pub(crate) lr: f64,
    /// Optimiser steps the runs took before this epoch's first step of this process.
    pub(crate) steps_before: u64,
    replicas: &'p [Device],
    pub(crate) device: &'p Device,
    pub(crate) profile: &'p mut StepProfile,
    on_step: &'p mut Option<OnStep<'a>>,
    stopping: &'p dyn Fn() -> bool,
}

impl EpochPass<'_, '_> {
    /// What follows every optimiser step: the profile's count, the epoch's step count, the
    /// progress callback and the fault point. `true` when the stop flag is set.
    pub(crate) fn step_done(&mut self, sums: &mut EpochSums, steps_per_epoch: usize) -> bool {
        self.profile.step();
        sums.steps += 1;
        if let Some(f) = self.on_step.as_mut() {
            f(&TrainStep {
                epoch: self.epoch,
                epochs: self.configs[0].epochs,
                step: sums.steps,
                steps: steps_per_epoch,
            });
        }
        timekd_fault::point("train.step");
        (self.stopping)()
    }

    /// Each run's batches of this epoch (window lists), from its seed.
    pub(crate) fn orders(&self, train: &SplitData) -> Vec<Vec<Vec<usize>>> {
        self.configs
            .iter()
            .map(|c| {
                let options = BatchOrder {
                    shuffle: c.shuffle,
                    seed: mix(c.seed, self.epoch as u64, 0),
                    drop_last: c.drop_last,
                };
                train.split.batches(c.batch_size, options).collect()
            })
            .collect()
    }

    /// Trains the epoch's remaining steps; `true` when the stop flag ended it early.
    fn run(
        &mut self,
        model: &mut Dual,
        optimizer: &mut AdamW,
        train: &mut SplitData,
        sums: &mut EpochSums,
    ) -> Result<bool> {
        let config = self.configs[0];
        // Each run's own batch order; step b of the pack reads batch b of every run.
        let orders = self.orders(train);
        let per_run_seen: usize = orders[0].iter().map(Vec::len).sum();
        let batches: Vec<Vec<usize>> = (0..orders[0].len())
            .map(|b| {
                orders
                    .iter()
                    .flat_map(|order| order[b].iter().copied())
                    .collect()
            })
            .collect();
        let runs = self.configs.len();
        let steps_per_epoch = batches.len().div_ceil(config.accumulate);
        // Batches of the steps a stopped run already took are skipped.
        let remaining = &batches[(sums.steps * config.accumulate).min(batches.len())..];
        let host_device = self.device.clone().without_autodiff();
        let mut steps = self.steps_before;
        let mut flat_params = None;
        let mut stopped = false;
        stream_batches(train, remaining, self.device, |stream| {
            for group in remaining.chunks(config.accumulate) {
                let mut grads = GradientSet::default();
                for micro in 0..group.len() {
                    let batch = self.profile.time(|p| &mut p.wait, || stream.next());
                    let batch = batch.ok_or_else(|| {
                        StudentError::Tensor("the batch reader stopped early".into())
                    })??;
                    let windows = batch.len / runs;
                    // Dropout masks depend only on (seed, step, micro-batch): exact on resume.
                    let seeds: Vec<u64> = self
                        .configs
                        .iter()
                        .map(|c| mix(c.seed, steps, micro as u64))
                        .collect();
                    let scale = 1.0 / group.len() as f64;
                    let (values, micro_grads) = self.profile.time(
                        |p| &mut p.graph,
                        || micro_batch(model, self.replicas, batch, config, &seeds, scale),
                    )?;
                    sums.train =
                        sums.train.clone() + values * (windows as f64 / per_run_seen as f64);
                    grads.accumulate(micro_grads);
                }
                let optimizer_started = Instant::now();
                let norm = match config.optim.clip_grad_norm {
                    Some(max) => grads.clip_norm_on_device(max),
                    None => grads.norm_tensor(),
                };
                if let Some(norm) = norm {
                    sums.norm = sums.norm.clone() + norm.to_device(&host_device);
                }
                *model = optimizer.step_tracked(model.clone(), &mut flat_params, grads, self.lr)?;
                self.profile.optimizer += optimizer_started.elapsed();
                steps = optimizer.steps();
                if self.step_done(sums, steps_per_epoch) {
                    stopped = true;
                    break;
                }
            }
            Ok::<_, StudentError>(())
        })?;
        Ok(stopped)
    }
}

/// What one epoch of a run measured.
struct EpochResult {
    epoch: usize,
    lr: f64,
    train: LossValues,
    val: LossValues,
    grad_norm: f64,
    train_seconds: f64,
    seconds: f64,
}

/// A run between epochs: its one-run model, optimiser and checkpoint state.
struct RunState {
    model: Dual,
    optimizer: AdamW,
    state: CheckpointState,
}

impl RunState {
    /// Whether the run has nothing left to train.
    fn finished(&self) -> bool {
        self.state.epochs_done >= self.state.config.epochs || self.state.stopped_early
    }

    /// How far the run got: (epochs done, steps of the epoch in progress).
    fn place(&self) -> (usize, usize) {
        let partial = self.state.partial.as_ref().map_or(0, |p| p.steps);
        (self.state.epochs_done, partial)
    }

    /// Selection, metrics, checkpoints and the loss plot after an epoch.
    fn finish_epoch(
        &mut self,
        config: &TrainConfig,
        run: &RunDir,
        result: EpochResult,
        test: Option<&Split>,
        device: &Device,
    ) -> Result<EpochMetrics> {
        let (model, state) = (&self.model, &mut self.state);
        let epoch = result.epoch;
        let decision = select(config, state, epoch, result.val.total, &mut || {
            let test = test.ok_or_else(paper_needs_test)?;
            let predictions = predict(
                model,
                test,
                config.batch_size,
                config.loss.target_only,
                false,
                device,
            )?;
            Ok(predictions.report().mse)
        })?;
        let metrics = EpochMetrics {
            epoch,
            lr: result.lr,
            train: result.train,
            val: result.val,
            grad_norm: result.grad_norm,
            steps: state.steps,
            best: decision.keep,
            test_mse: decision.test_mse,
            selection: config.selection,
            seconds: result.seconds,
            train_seconds: result.train_seconds,
        };
        state.history.push(metrics.clone());
        state.epochs_done = epoch + 1;
        if decision.keep {
            save_checkpoint(&run.best(), model, None, state)?;
        }
        save_checkpoint(&run.last(), model, Some(&self.optimizer), state)?;
        append_metrics(&run.metrics(), &metrics)?;
        plot_losses(&run.plot(), &state.history)?;
        Ok(metrics)
    }
}

fn start(
    config: &TrainConfig,
    data: DataInfo,
    run: &RunDir,
    resume: bool,
    device: &Device,
) -> Result<RunState> {
    if resume && run.has_checkpoint() {
        // A save killed between its renames leaves the checkpoint as `<dir>.new`.
        settle(&run.last())?;
        settle(&run.best())?;
        let checkpoint = load_checkpoint(&run.last(), device)?;
        if checkpoint.state.config != *config {
            return Err(StudentError::Config(format!(
                "{}: the checkpoint was trained with a different configuration; resume with the \
                 run's own config (its checkpoint.json) or start a new run directory",
                run.last().display()
            )));
        }
        let optimizer = load_optimizer(&run.last(), &checkpoint.state)?;
        write_metrics(&run.metrics(), &checkpoint.state.history)?;
        return Ok(RunState {
            model: checkpoint.model,
            optimizer,
            state: checkpoint.state,
        });
    }
    std::fs::create_dir_all(run.path()).map_err(|e| StudentError::io(run.path(), e))?;
    write_metrics(&run.metrics(), &[])?;
    Ok(RunState {
        model: Dual::init(&config.model, config.seed, device)?,
        optimizer: AdamW::new(config.optim.clone()),
        state: CheckpointState {
            version: STATE_VERSION,
            config: config.clone(),
            data,
            epochs_done: 0,
            steps: 0,
            best: None,
            best_test_mse: None,
            epochs_since_best: 0,
            stopped_early: false,
            history: Vec::new(),
            partial: None,
        },
    })
}
