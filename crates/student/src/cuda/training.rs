//! The trainer's side of the engine: one [`FusedStudent`] per run (the runs of a pack each
//! on their own stream, sharing the resident splits), an epoch of steps queued without
//! waiting, and validation on the device. Between epochs the Burn model and optimiser stay
//! the record of a run (checkpoints, selection, resume): they are loaded into the engines
//! at an epoch's start and read back at its end.

use burn::tensor::{Tensor, TensorData};
use timekd_data::BatchOrder;

use super::engine::{FusedStudent, SplitSlot};
use crate::data::SplitData;
use crate::error::{Result, StudentError};
use crate::interrupt::EpochSums;
use crate::loss::{LossValues, TERMS};
use crate::model::Dual;
use crate::optim::AdamW;
use crate::parallel::mix;
use crate::state_dict::tensor_to_vec;
use crate::train_config::{Selection, TrainConfig};
use crate::trainer::EpochPass;

/// The engines of a trainer's runs on one GPU, each made when its run first trains.
pub(crate) struct Engines {
    ordinal: usize,
    runs: Vec<Option<FusedStudent>>,
}

impl Engines {
    /// Engines on device `ordinal` for `runs` runs of `config`, or `None` without an
    /// ordinal (Burn trains). Refuses what the engine does not train.
    pub fn new(
        ordinal: Option<usize>,
        config: &TrainConfig,
        devices: usize,
        runs: usize,
    ) -> Result<Option<Engines>> {
        let Some(ordinal) = ordinal else {
            return Ok(None);
        };
        if config.accumulate != 1 || devices != 1 {
            return Err(StudentError::Config(format!(
                "the student's CUDA engine trains on one GPU without gradient accumulation \
                 (accumulate {}, {devices} devices); train with --train-engine burn",
                config.accumulate
            )));
        }
        Ok(Some(Engines {
            ordinal,
            runs: (0..runs).map(|_| None).collect(),
        }))
    }

    /// The engines of `cohort` (run indices, ascending) for runs of `config`, made for
    /// `models` where missing: the trainer's first engine uploads the splits, the others
    /// share them.
    pub fn ready(
        &mut self,
        cohort: &[usize],
        models: &[&Dual],
        config: &TrainConfig,
        (train, val): (&mut SplitData, &mut SplitData),
    ) -> Result<Vec<&mut FusedStudent>> {
        for (&i, model) in cohort.iter().zip(models) {
            if self.runs[i].is_some() {
                continue;
            }
            let vars = train.split.dataset().n_vars();
            let mut engine = FusedStudent::new(self.ordinal, config, model, vars)?;
            match self.runs.iter().flatten().next() {
                Some(first) => engine.share_splits(first),
                None => {
                    engine.upload_split(SplitSlot::Train, train)?;
                    engine.upload_split(SplitSlot::Val, val)?;
                }
            }
            self.runs[i] = Some(engine);
        }
        Ok(self
            .runs
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| cohort.contains(i))
            .filter_map(|(_, e)| e.as_mut())
            .collect())
    }

    /// Mean validation loss terms of each run of `cohort` (dropout off), on the device; the
    /// last partial batch is left out under [`Selection::Paper`], as Burn's validation does.
    pub fn validation(
        &mut self,
        cohort: &[usize],
        config: &TrainConfig,
        val: &SplitData,
    ) -> Result<Vec<LossValues>> {
        let order = BatchOrder {
            drop_last: config.selection == Selection::Paper,
            ..BatchOrder::default()
        };
        let batches: Vec<Vec<usize>> = val.split.batches(config.batch_size, order).collect();
        let (windows, ranges) = consecutive(&batches);
        cohort
            .iter()
            .map(|&i| {
                let engine = self.runs[i]
                    .as_mut()
                    .ok_or_else(|| StudentError::Gpu(format!("run {i} has no engine")))?;
                engine.set_order(&windows)?;
                Ok(LossValues::from_terms(
                    &engine.evaluate(SplitSlot::Val, &ranges)?,
                ))
            })
            .collect()
    }
}

/// The windows of `batches` one after another, and each batch's range in that list.
fn consecutive(batches: &[Vec<usize>]) -> (Vec<usize>, Vec<std::ops::Range<usize>>) {
    let mut windows = Vec::new();
    let ranges = batches
        .iter()
        .map(|batch| {
            let start = windows.len();
            windows.extend_from_slice(batch);
            start..windows.len()
        })
        .collect();
    (windows, ranges)
}

impl EpochPass<'_, '_> {
    /// [`run`](EpochPass::run) on `engines` (one per run of the pack, in pack order): the
    /// same batches, step seeds, learning rate and sums; `model` and `optimizer` (the pack)
    /// are loaded into the engines first and replaced by what they hold at the end. `true`
    /// when the stop flag ended the epoch early.
    pub(crate) fn run_on_engines(
        &mut self,
        engines: &mut [&mut FusedStudent],
        model: &mut Dual,
        optimizer: &mut AdamW,
        train: &SplitData,
        sums: &mut EpochSums,
    ) -> Result<bool> {
        let orders = self.orders(train);
        let models = model.clone().unpack();
        let optimizers = optimizer.clone().unpack();
        let train_sums = tensor_to_vec(sums.train.clone())?;
        let norm_sums = tensor_to_vec(sums.norm.clone())?;
        let mut ranges = Vec::with_capacity(engines.len());
        for (r, engine) in engines.iter_mut().enumerate() {
            engine.load(&models[r], &optimizers[r])?;
            let mut terms = [0.0; TERMS];
            terms.copy_from_slice(&train_sums[r * TERMS..(r + 1) * TERMS]);
            engine.set_train_sums(&terms, norm_sums[r])?;
            let (windows, run_ranges) = consecutive(&orders[r]);
            engine.set_order(&windows)?;
            ranges.push(run_ranges);
        }
        let per_run_seen: usize = orders[0].iter().map(Vec::len).sum();
        let steps_per_epoch = orders[0].len();
        let mut stopped = false;
        let first = sums.steps;
        for (b, steps) in (first..steps_per_epoch).zip(self.steps_before..) {
            // Host time to queue the step (the device runs behind).
            let queued = self.profile.time(
                |p| &mut p.graph,
                || -> Result<()> {
                    for (r, engine) in engines.iter_mut().enumerate() {
                        let range = ranges[r][b].clone();
                        let share = range.len() as f32 / per_run_seen as f32;
                        // The Burn path's step seed for micro-batch 0 (no accumulation here).
                        let seed = mix(self.configs[r].seed, steps, 0);
                        engine.train_step(range, seed, self.lr, share)?;
                    }
                    Ok(())
                },
            );
            queued?;
            if self.step_done(sums, steps_per_epoch) {
                stopped = true;
                break;
            }
        }
        let host = self.device.clone().without_autodiff();
        let drained = std::time::Instant::now();
        let (mut parts, mut train, mut norm) = (Vec::new(), Vec::new(), Vec::new());
        for ((engine, model), optimizer) in engines.iter().zip(models).zip(&optimizers) {
            parts.push(engine.unload(model, optimizer, &host)?);
            let (terms, norm_sum) = engine.train_sums()?;
            train.extend(terms);
            norm.push(norm_sum);
        }
        self.profile.drain += drained.elapsed();
        let runs = parts.len();
        sums.train = Tensor::from_data(TensorData::new(train, [runs, TERMS]), &host);
        sums.norm = Tensor::from_data(TensorData::new(norm, [runs, 1]), &host);
        let (models, optimizers): (Vec<Dual>, Vec<AdamW>) = parts.into_iter().unzip();
        *model = Dual::pack(models)?;
        *optimizer = AdamW::pack(optimizers)?;
        Ok(stopped)
    }
}
