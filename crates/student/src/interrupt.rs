//! Stopping between two optimiser steps (a scheduler's SIGTERM) and continuing exactly:
//! [`PartialEpoch`] is what a checkpoint records of the epoch in progress.

use std::time::Duration;

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::loss::TERMS;
use crate::state_dict::tensor_to_vec;

/// How far an epoch got when training was stopped between two steps: a resumed run skips
/// the first `steps` optimiser steps of that epoch (its batch order and dropout masks are
/// seeded, so the rest is the same) and continues its loss sums from these exact values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartialEpoch {
    /// Optimiser steps of the epoch already taken.
    pub steps: usize,
    /// Bit patterns (`f32::to_bits`) of the epoch's running sums of the five loss terms,
    /// weighted by batch size: the device's f32 values, exactly.
    pub train_sum_bits: Vec<u32>,
    /// Bit pattern of the running sum of gradient norms.
    pub norm_sum_bits: u32,
    /// Seconds of training steps spent in the epoch so far.
    pub train_seconds: f64,
}

/// The running sums of an epoch for each run being trained: loss terms `[runs, 5]`,
/// gradient norms `[runs, 1]` (on the host device), steps taken and seconds spent before
/// this process.
pub(crate) struct EpochSums {
    pub train: Tensor<2>,
    pub norm: Tensor<2>,
    pub steps: usize,
    pub earlier: Duration,
}

impl EpochSums {
    /// Zero sums, or those of each run's `partial` (an epoch stopped part way; the runs
    /// trained together stopped at the same step), on `device`.
    pub fn start(partials: &[Option<&PartialEpoch>], device: &Device) -> EpochSums {
        let runs = partials.len();
        let mut train = Vec::with_capacity(runs * 5);
        let mut norm = Vec::with_capacity(runs);
        for partial in partials {
            match partial {
                Some(p) => {
                    // Five sums per run whatever the file says (a damaged record cannot misalign runs).
                    let bits = p.train_sum_bits.iter().copied().chain(std::iter::repeat(0));
                    train.extend(bits.take(TERMS).map(f32::from_bits));
                    norm.push(f32::from_bits(p.norm_sum_bits));
                }
                None => {
                    train.extend([0.0; TERMS]);
                    norm.push(0.0);
                }
            }
        }
        let first = partials.iter().flatten().next();
        EpochSums {
            train: Tensor::from_data(TensorData::new(train, [runs, TERMS]), device),
            norm: Tensor::from_data(TensorData::new(norm, [runs, 1]), device),
            steps: first.map_or(0, |p| p.steps),
            earlier: Duration::from_secs_f64(first.map_or(0.0, |p| p.train_seconds)),
        }
    }

    /// What each run's checkpoint records of these sums after `spent` more seconds of
    /// training.
    pub fn to_partials(&self, spent: Duration) -> Result<Vec<PartialEpoch>> {
        let bits = |t: &Tensor<2>| -> Result<Vec<u32>> {
            Ok(tensor_to_vec(t.clone())?
                .iter()
                .map(|v| v.to_bits())
                .collect())
        };
        let (train, norm) = (bits(&self.train)?, bits(&self.norm)?);
        Ok(norm
            .iter()
            .zip(train.chunks_exact(TERMS))
            .map(|(&norm_sum_bits, train)| PartialEpoch {
                steps: self.steps,
                train_sum_bits: train.to_vec(),
                norm_sum_bits,
                train_seconds: (self.earlier + spent).as_secs_f64(),
            })
            .collect())
    }
}
