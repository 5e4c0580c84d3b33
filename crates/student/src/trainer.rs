//! [`Trainer`]: privileged-distillation training. AdamW, gradient clipping, per-epoch cosine
//! schedule, gradient accumulation, validation, early stopping, checkpoints and exact resume.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::tensor::Device;
use timekd_data::BatchOrder;

use crate::batches::stream_batches;
use crate::checkpoint::{
    CheckpointState, DataInfo, STATE_VERSION, load_checkpoint, load_optimizer, save_checkpoint,
    settle,
};
use crate::data::TrainData;
use crate::error::{Result, StudentError};
use crate::eval::predict;
use crate::interrupt::EpochSums;
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

/// What an epoch callback returns: `ControlFlow::Break` stops after that epoch's checkpoint.
type OnEpoch<'a> = &'a mut dyn FnMut(&EpochMetrics) -> ControlFlow<()>;
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
///     .on_epoch(&mut |m| {
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
    config: &'a TrainConfig,
    run: &'a RunDir,
    devices: Vec<Device>,
    resume: bool,
    on_epoch: Option<OnEpoch<'a>>,
    on_step: Option<OnStep<'a>>,
    stop: Option<&'a AtomicBool>,
}

impl<'a> Trainer<'a> {
    /// A run of `config` into `run`; give it at least one device.
    pub fn new(config: &'a TrainConfig, run: &'a RunDir) -> Self {
        Trainer {
            config,
            run,
            devices: Vec::new(),
            resume: false,
            on_epoch: None,
            on_step: None,
            stop: None,
        }
    }

    /// The devices to train on: one, or several for data parallelism.
    pub fn devices(mut self, devices: &[Device]) -> Self {
        self.devices = devices.to_vec();
        self
    }

    /// Continue from the run's last checkpoint instead of starting afresh.
    pub fn resume(mut self, resume: bool) -> Self {
        self.resume = resume;
        self
    }

    /// Called with each epoch's metrics; `ControlFlow::Break` stops after that epoch's
    /// checkpoint (the run can be resumed).
    pub fn on_epoch(mut self, on_epoch: OnEpoch<'a>) -> Self {
        self.on_epoch = Some(on_epoch);
        self
    }

    /// Called after every optimiser step (progress bars).
    pub fn on_step(mut self, on_step: OnStep<'a>) -> Self {
        self.on_step = Some(on_step);
        self
    }

    /// Stop at the next step boundary once `flag` is set: the run's last checkpoint then
    /// holds the partial epoch (see [`CheckpointState::partial`]) and the summary says
    /// `interrupted`.
    pub fn stop_on(mut self, flag: &'a AtomicBool) -> Self {
        self.stop = Some(flag);
        self
    }

    /// Trains on `data` until the epochs are done, early stopping, or the callback or the
    /// stop flag stops it.
    pub fn train(self, data: TrainData) -> Result<TrainSummary> {
        let Trainer {
            config,
            run,
            devices,
            resume,
            mut on_epoch,
            mut on_step,
            stop,
        } = self;
        let stopping = || stop.is_some_and(|flag| flag.load(Ordering::Relaxed));
        let Some(device) = devices.first() else {
            return Err(StudentError::Config("no device to train on".into()));
        };
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
        let RunState {
            mut model,
            mut optimizer,
            mut state,
        } = start(config, info, run, resume, &device)?;
        let mut interrupted = false;
        // The parameters as one flat vector, carried between optimiser steps.
        let mut flat_params = None;
        let mut profile = StepProfile::from_env();

        while state.epochs_done < config.epochs && !state.stopped_early && !interrupted {
            let epoch = state.epochs_done;
            let started = Instant::now();
            let lr = config.lr_at(epoch);
            let options = BatchOrder {
                shuffle: config.shuffle,
                seed: mix(config.seed, epoch as u64, 0),
                drop_last: config.drop_last,
            };
            let batches: Vec<Vec<usize>> =
                train.split.batches(config.batch_size, options).collect();
            let seen: usize = batches.iter().map(Vec::len).sum();
            // Sums stay on the device and are read once per epoch: no host sync per step.
            let host_device = device.clone().without_autodiff();
            let mut sums = EpochSums::start(state.partial.take().as_ref(), &host_device);
            // Batches of the steps a stopped run already took are skipped.
            let remaining = &batches[(sums.steps * config.accumulate).min(batches.len())..];
            let mut stopped = false;

            stream_batches(&mut train, remaining, &device, |stream| {
                for group in remaining.chunks(config.accumulate) {
                    let mut grads = GradientSet::default();
                    for micro in 0..group.len() {
                        let batch = profile.time(|p| &mut p.wait, || stream.next());
                        let batch = batch.ok_or_else(|| {
                            StudentError::Tensor("the batch reader stopped early".into())
                        })??;
                        let windows = batch.len;
                        // Dropout masks depend only on (seed, step, micro-batch): exact on resume.
                        let seed = mix(config.seed, state.steps, micro as u64);
                        let scale = 1.0 / group.len() as f64;
                        let (values, micro_grads) = profile.time(
                            |p| &mut p.graph,
                            || micro_batch(&model, &replicas, batch, config, seed, scale),
                        )?;
                        sums.train = sums.train.clone() + values * (windows as f64 / seen as f64);
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
                    model = optimizer.step_tracked(model.clone(), &mut flat_params, grads, lr)?;
                    profile.optimizer += optimizer_started.elapsed();
                    profile.step();
                    state.steps = optimizer.steps();
                    sums.steps += 1;
                    if let Some(f) = on_step.as_mut() {
                        f(&TrainStep {
                            epoch,
                            epochs: config.epochs,
                            step: sums.steps,
                            steps: batches.len().div_ceil(config.accumulate),
                        });
                    }
                    timekd_fault::point("train.step");
                    if stopping() {
                        stopped = true;
                        break;
                    }
                }
                Ok::<_, StudentError>(())
            })?;
            if stopped {
                state.partial = Some(sums.to_partial(started.elapsed())?);
                save_checkpoint(&run.last(), &model, Some(&optimizer), &state)?;
                interrupted = true;
                break;
            }

            let step_count = sums.steps;
            let train_sum = profile.time(|p| &mut p.drain, || LossValues::read(sums.train))?;
            let train_seconds = (sums.earlier + started.elapsed()).as_secs_f64();
            if !train_sum.total.is_finite() {
                // Checked once per epoch, before anything of this epoch is saved.
                return Err(StudentError::NonFinite {
                    value: train_sum.total,
                    epoch,
                    step: state.steps,
                });
            }
            let norm_sum = f64::from(crate::state_dict::tensor_to_vec(sums.norm)?[0]);
            let val_loss = profile.time(
                |p| &mut p.validation,
                || validation_loss(&model, config, &mut val, &device),
            )?;
            let decision = select(config, &mut state, epoch, val_loss.total, &mut || {
                let test = test.as_ref().ok_or_else(paper_needs_test)?;
                let predictions = predict(
                    &model,
                    test,
                    config.batch_size,
                    config.loss.target_only,
                    false,
                    &device,
                )?;
                Ok(predictions.report().mse)
            })?;
            let metrics = EpochMetrics {
                epoch,
                lr,
                train: train_sum,
                val: val_loss,
                grad_norm: norm_sum / step_count.max(1) as f64,
                steps: state.steps,
                best: decision.keep,
                test_mse: decision.test_mse,
                selection: config.selection,
                seconds: started.elapsed().as_secs_f64(),
                train_seconds,
            };
            state.history.push(metrics.clone());
            state.epochs_done = epoch + 1;
            let saving_started = Instant::now();
            if decision.keep {
                save_checkpoint(&run.best(), &model, None, &state)?;
            }
            save_checkpoint(&run.last(), &model, Some(&optimizer), &state)?;
            append_metrics(&run.metrics(), &metrics)?;
            plot_losses(&run.plot(), &state.history)?;
            profile.saving += saving_started.elapsed();
            profile.report(epoch, train_seconds);
            let unfinished = state.epochs_done < config.epochs && !state.stopped_early;
            interrupted = on_epoch.as_mut().is_some_and(|f| f(&metrics).is_break())
                || (unfinished && stopping());
        }

        Ok(TrainSummary {
            epochs_done: state.epochs_done,
            best: state.best,
            stopped_early: state.stopped_early,
            interrupted,
            history: state.history,
        })
    }
}

/// Mutable state of a run between epochs.
struct RunState {
    model: Dual,
    optimizer: AdamW,
    state: CheckpointState,
}

fn start(
    config: &TrainConfig,
    data: DataInfo,
    run: &RunDir,
    resume: bool,
    device: &Device,
) -> Result<RunState> {
    if resume {
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
