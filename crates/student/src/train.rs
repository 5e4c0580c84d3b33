//! Privileged-distillation training: AdamW, gradient clipping, per-epoch cosine schedule,
//! gradient accumulation, validation, early stopping, checkpoints and exact resume.

use std::ops::ControlFlow;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};
use timekd_data::{BatchOptions, Split};

use crate::batches::{Batch, stream_batches};
use crate::checkpoint::{
    CheckpointState, DataInfo, STATE_VERSION, load_checkpoint, load_optimizer, save_checkpoint,
};
use crate::config::{DualConfig, LossConfig, OptimConfig};
use crate::embeddings::EmbeddingSource;
use crate::error::{Result, StudentError};
use crate::loss::{LossValues, distillation_loss};
use crate::metrics::{EpochMetrics, append_metrics, write_metrics};
use crate::model::Dual;
use crate::optim::{AdamW, GradientSet, cosine_lr};
use crate::plot::plot_losses;

/// Everything that defines a training run. Defaults are the release's student settings,
/// except shuffling (on here) and selection of the best model by validation loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Model shape.
    pub model: DualConfig,
    /// Loss weights and kinds.
    pub loss: LossConfig,
    /// AdamW and clipping.
    pub optim: OptimConfig,
    /// Maximum number of epochs.
    pub epochs: usize,
    /// Windows per micro-batch.
    pub batch_size: usize,
    /// Micro-batches whose gradients are averaged into one optimiser step.
    pub accumulate: usize,
    /// Shuffle training windows each epoch (seeded). `false` reproduces the release.
    pub shuffle: bool,
    /// Drop the last partial training batch (the release does).
    pub drop_last: bool,
    /// Seed of initialisation, shuffling and dropout.
    pub seed: u64,
    /// Stop after this many epochs without a better validation loss.
    pub patience: usize,
    /// Floor of the cosine schedule.
    pub eta_min: f64,
    /// The schedule's period is `min(epochs, t_max_cap)` epochs.
    pub t_max_cap: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            model: DualConfig::default(),
            loss: LossConfig::default(),
            optim: OptimConfig::default(),
            epochs: 100,
            batch_size: 16,
            accumulate: 1,
            shuffle: true,
            drop_last: false,
            seed: 2024,
            patience: 50,
            eta_min: 1e-8,
            t_max_cap: 100,
        }
    }
}

impl TrainConfig {
    /// Checks ranges and consistency.
    pub fn validate(&self) -> Result<()> {
        self.model.validate()?;
        if self.epochs == 0 || self.batch_size == 0 || self.accumulate == 0 {
            return Err(StudentError::Config(
                "epochs, batch_size and accumulate must be positive".into(),
            ));
        }
        if self.optim.lr.is_nan() || self.optim.lr <= 0.0 {
            return Err(StudentError::Config(format!(
                "optim.lr must be positive, got {}",
                self.optim.lr
            )));
        }
        Ok(())
    }

    /// Learning rate of `epoch`.
    pub fn lr_at(&self, epoch: usize) -> f64 {
        let t_max = self.epochs.min(self.t_max_cap);
        cosine_lr(self.optim.lr, self.eta_min, t_max, epoch)
    }
}

/// One split's windows (history and future, from `timekd-data`) and its embeddings.
pub struct SplitData<'a> {
    /// The data split; window `i` pairs with embedding `i`.
    pub split: Split<'a>,
    /// The split's teacher embeddings.
    pub embeddings: &'a mut dyn EmbeddingSource,
}

/// The data of a training run: what it is, and its train and validation splits.
pub struct TrainData<'a> {
    /// Dataset name and variables, recorded in checkpoints.
    pub info: DataInfo,
    /// Training windows and embeddings.
    pub train: SplitData<'a>,
    /// Validation windows and embeddings (early stopping and best checkpoint).
    pub val: SplitData<'a>,
}

/// Files of a run directory.
#[derive(Debug, Clone)]
pub struct RunDir(PathBuf);

impl RunDir {
    /// A run rooted at `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        RunDir(dir.into())
    }
    /// The run directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
    /// `metrics.jsonl`: one JSON object per epoch.
    pub fn metrics(&self) -> PathBuf {
        self.0.join("metrics.jsonl")
    }
    /// `loss.png`: train and validation loss curves.
    pub fn plot(&self) -> PathBuf {
        self.0.join("loss.png")
    }
    /// `checkpoints/last`: written every epoch, with the optimiser (what `resume` reads).
    pub fn last(&self) -> PathBuf {
        self.0.join("checkpoints").join("last")
    }
    /// `checkpoints/best`: the epoch with the lowest validation loss.
    pub fn best(&self) -> PathBuf {
        self.0.join("checkpoints").join("best")
    }
}

/// How a training call ended.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainSummary {
    /// Epochs completed in the run (across resumes).
    pub epochs_done: usize,
    /// Best validation epoch and loss.
    pub best: Option<(usize, f64)>,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// Whether the epoch callback asked to stop (the run can be resumed).
    pub interrupted: bool,
    /// Metrics of every completed epoch.
    pub history: Vec<EpochMetrics>,
}

/// Derives an independent 64-bit seed from a base seed and two counters (SplitMix64).
fn mix(seed: u64, a: u64, b: u64) -> u64 {
    let mut z =
        seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn check_split(config: &TrainConfig, data: &SplitData) -> Result<()> {
    let dataset = data.split.dataset();
    let (windows, n, d) = data.embeddings.dims();
    let kind = data.split.kind();
    let problems = [
        (windows < data.split.num_windows()).then(|| {
            format!(
                "only {windows} embeddings for {} {kind} windows",
                data.split.num_windows()
            )
        }),
        (n != dataset.n_vars()).then(|| {
            format!(
                "embeddings have {n} variables, the data {}",
                dataset.n_vars()
            )
        }),
        (d != config.model.d_llm).then(|| {
            format!(
                "embeddings are {d} wide, model.d_llm is {}",
                config.model.d_llm
            )
        }),
        (dataset.input_len() != config.model.input_len).then(|| {
            format!(
                "data L = {}, model.input_len = {}",
                dataset.input_len(),
                config.model.input_len
            )
        }),
        (dataset.output_len() != config.model.output_len).then(|| {
            format!(
                "data H = {}, model.output_len = {}",
                dataset.output_len(),
                config.model.output_len
            )
        }),
        (data.split.num_windows() == 0).then(|| format!("the {kind} split has no windows")),
    ];
    let problems: Vec<String> = problems.into_iter().flatten().collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(StudentError::Config(format!(
            "{kind} split: {}",
            problems.join("; ")
        )))
    }
}

/// Mean loss terms over a split in evaluation mode (no dropout, no autodiff).
pub fn validation_loss(
    model: &Dual,
    config: &TrainConfig,
    data: &mut SplitData,
    device: &Device,
) -> Result<LossValues> {
    let device = device.clone().without_autodiff();
    let model = model.valid();
    let total = data.split.num_windows();
    let mut sum = Tensor::<1>::zeros([5], &device);
    let batches: Vec<Vec<usize>> = data
        .split
        .batches(config.batch_size, BatchOptions::default())
        .collect();
    stream_batches(data, &batches, &device, |stream| {
        for batch in stream {
            let batch = batch?;
            let out = model.forward(batch.x, batch.emb);
            let values = distillation_loss(&config.loss, &out, batch.y).stacked();
            sum = sum.clone() + values * (batch.len as f64 / total as f64);
        }
        Ok::<_, StudentError>(())
    })?;
    LossValues::read(sum)
}

/// Loss terms (means over the batch's windows, a `[5]` device tensor as
/// [`LossTerms::stacked`]) and gradients of `scale` × the loss of one micro-batch. With several
/// devices the windows are split evenly over them and each share runs on a forked replica in
/// its own thread; gradients are weighted by share size and summed on `devices[0]`, the
/// model's device. Dropout is seeded with `seed` (and the share).
fn micro_batch(
    model: &Dual,
    devices: &[Device],
    batch: Batch,
    config: &TrainConfig,
    seed: u64,
    scale: f64,
) -> Result<(Tensor<1>, GradientSet)> {
    let share_result = |model: &Dual, batch: Batch, device: &Device, weight: f64| {
        let out = model.forward(batch.x, batch.emb);
        let loss = distillation_loss(&config.loss, &out, batch.y);
        let values = loss.stacked().to_device(&device.clone().without_autodiff());
        let factor = scale * weight;
        let objective = if factor == 1.0 {
            loss.total
        } else {
            loss.total.mul_scalar(factor)
        };
        let grads = GradientSet::from_backward(model, &objective.backward());
        Ok::<_, StudentError>((values, grads.to_device(device)))
    };
    let main = &devices[0];
    let total = batch.len;
    if devices.len() == 1 || total < 2 {
        main.seed(seed);
        return share_result(model, batch, main, 1.0);
    }
    let share_len = total.div_ceil(devices.len());
    let shares: Vec<Range<usize>> = (0..total)
        .step_by(share_len)
        .map(|start| start..(start + share_len).min(total))
        .collect();
    let work: Vec<_> = shares
        .iter()
        .zip(devices)
        .map(|(rows, device)| {
            (
                batch.rows(rows.clone(), device),
                model.clone().fork(device),
                device,
            )
        })
        .collect();
    let results: Vec<Result<(Tensor<1>, GradientSet)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = work
            .into_iter()
            .enumerate()
            .map(|(i, (batch, replica, device))| {
                let share_result = &share_result;
                scope.spawn(move || {
                    device.seed(mix(seed, i as u64, 1));
                    let weight = batch.len as f64 / total as f64;
                    share_result(&replica, batch, main, weight)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(StudentError::Tensor(
                        "a data-parallel worker panicked".into(),
                    ))
                })
            })
            .collect()
    });
    let mut values: Option<Tensor<1>> = None;
    let mut grads = GradientSet::default();
    for (share, result) in shares.iter().zip(results) {
        let (share_values, share_grads) = result?;
        let weighted = share_values * (share.len() as f64 / total as f64);
        values = Some(match values {
            Some(sum) => sum + weighted,
            None => weighted,
        });
        grads.accumulate(share_grads);
    }
    Ok((values.expect("at least one share"), grads))
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
            epochs_since_best: 0,
            stopped_early: false,
            history: Vec::new(),
        },
    })
}

/// Trains the dual model on one device, writing `metrics.jsonl`, `loss.png` and
/// checkpoints under `run`: [`train_on`] with a single device.
///
/// `device` is made autodiff for training; validation runs without autodiff. With `resume`,
/// training continues from `run`'s last checkpoint and, on the same device kind, reaches the
/// same weights as an uninterrupted run: shuffling and dropout are seeded from
/// (seed, epoch, step), and the optimiser's moments are restored exactly.
/// `on_epoch` sees each epoch's metrics; returning `ControlFlow::Break` stops after that
/// epoch's checkpoint (resumable).
///
/// Dropout draws from the device's random generator, which some backends (Flex) share
/// process-wide: do not train two models concurrently in one process if you need
/// bit-exact reproducibility.
pub fn train(
    config: &TrainConfig,
    data: TrainData,
    run: &RunDir,
    resume: bool,
    device: &Device,
    on_epoch: &mut dyn FnMut(&EpochMetrics) -> ControlFlow<()>,
) -> Result<TrainSummary> {
    train_on(
        config,
        data,
        run,
        resume,
        std::slice::from_ref(device),
        on_epoch,
    )
}

/// [`train`] data-parallel over `devices` (e.g. every GPU of a host): each micro-batch's
/// windows are split evenly over the devices, a replica of the model (Burn's
/// [`Module::fork`]) runs each share on its own thread, and the gradients, weighted by share
/// size, are summed on `devices[0]`, which holds the model, the optimiser and validation.
///
/// Like PyTorch's DDP, each device computes the batch-level attention-map term over its own
/// share, so that term (and dropout masks) differ from a one-device run; the per-window terms
/// do not: with `att_weight` 0 and no dropout the gradients equal one device's up to float
/// rounding. With one device this is exactly [`train`].
pub fn train_on(
    config: &TrainConfig,
    data: TrainData,
    run: &RunDir,
    resume: bool,
    devices: &[Device],
    on_epoch: &mut dyn FnMut(&EpochMetrics) -> ControlFlow<()>,
) -> Result<TrainSummary> {
    let Some(device) = devices.first() else {
        return Err(StudentError::Config("no device to train on".into()));
    };
    let replicas: Vec<Device> = devices.iter().map(|d| d.clone().autodiff()).collect();
    let TrainData {
        info,
        mut train,
        mut val,
    } = data;
    config.validate()?;
    check_split(config, &train)?;
    check_split(config, &val)?;
    let device = device.clone().autodiff();
    let RunState {
        mut model,
        mut optimizer,
        mut state,
    } = start(config, info, run, resume, &device)?;
    let mut interrupted = false;
    // The parameters as one flat vector, carried between optimiser steps.
    let mut flat_params = None;

    while state.epochs_done < config.epochs && !state.stopped_early && !interrupted {
        let epoch = state.epochs_done;
        let started = Instant::now();
        let lr = config.lr_at(epoch);
        let options = BatchOptions {
            shuffle: config.shuffle,
            seed: mix(config.seed, epoch as u64, 0),
            drop_last: config.drop_last,
        };
        let batches: Vec<Vec<usize>> = train.split.batches(config.batch_size, options).collect();
        let seen: usize = batches.iter().map(Vec::len).sum();
        // Sums stay on the device and are read once per epoch: no host sync per step.
        let host_device = device.clone().without_autodiff();
        let mut train_sum = Tensor::<1>::zeros([5], &host_device);
        let mut norm_sum = Tensor::<1>::zeros([1], &host_device);
        let mut step_count = 0usize;

        stream_batches(&mut train, &batches, &device, |stream| {
            for group in batches.chunks(config.accumulate) {
                let mut grads = GradientSet::default();
                for micro in 0..group.len() {
                    let batch = stream.next().ok_or_else(|| {
                        StudentError::Tensor("the batch reader stopped early".into())
                    })??;
                    let windows = batch.len;
                    // Dropout masks depend only on (seed, step, micro-batch): exact on resume.
                    let seed = mix(config.seed, state.steps, micro as u64);
                    let scale = 1.0 / group.len() as f64;
                    let (values, micro_grads) =
                        micro_batch(&model, &replicas, batch, config, seed, scale)?;
                    train_sum = train_sum.clone() + values * (windows as f64 / seen as f64);
                    grads.accumulate(micro_grads);
                }
                let norm = match config.optim.clip_grad_norm {
                    Some(max) => grads.clip_norm_on_device(max),
                    None => grads.norm_tensor(),
                };
                if let Some(norm) = norm {
                    norm_sum = norm_sum.clone() + norm.to_device(&host_device);
                }
                model = optimizer.step_tracked(model.clone(), &mut flat_params, grads, lr)?;
                state.steps = optimizer.steps();
                step_count += 1;
            }
            Ok::<_, StudentError>(())
        })?;

        let train_sum = LossValues::read(train_sum)?;
        let train_seconds = started.elapsed().as_secs_f64();
        if !train_sum.total.is_finite() {
            // Checked once per epoch, before anything of this epoch is saved.
            return Err(StudentError::NonFinite {
                value: train_sum.total,
                epoch,
                step: state.steps,
            });
        }
        let norm_sum = f64::from(crate::state_dict::tensor_to_vec(norm_sum)?[0]);
        let val_loss = validation_loss(&model, config, &mut val, &device)?;
        let improved = state.best.is_none_or(|(_, best)| val_loss.total < best);
        if improved {
            state.best = Some((epoch, val_loss.total));
            state.epochs_since_best = 0;
        } else {
            state.epochs_since_best += 1;
        }
        state.stopped_early = state.epochs_since_best >= config.patience;
        let metrics = EpochMetrics {
            epoch,
            lr,
            train: train_sum,
            val: val_loss,
            grad_norm: norm_sum / step_count.max(1) as f64,
            steps: state.steps,
            best: improved,
            seconds: started.elapsed().as_secs_f64(),
            train_seconds,
        };
        state.history.push(metrics.clone());
        state.epochs_done = epoch + 1;
        if improved {
            save_checkpoint(&run.best(), &model, None, &state)?;
        }
        save_checkpoint(&run.last(), &model, Some(&optimizer), &state)?;
        append_metrics(&run.metrics(), &metrics)?;
        plot_losses(&run.plot(), &state.history)?;
        interrupted = on_epoch(&metrics).is_break();
    }

    Ok(TrainSummary {
        epochs_done: state.epochs_done,
        best: state.best,
        stopped_early: state.stopped_early,
        interrupted,
        history: state.history,
    })
}
