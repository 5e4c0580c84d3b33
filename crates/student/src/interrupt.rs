//! Stopping between two optimiser steps (a scheduler's SIGTERM) and continuing exactly:
//! [`PartialEpoch`] is what a checkpoint records of the epoch in progress.

use std::time::Duration;

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::Result;
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

/// The running sums of an epoch: loss terms `[5]`, gradient norms `[1]` (on the host
/// device), steps taken and seconds spent before this process.
pub(crate) struct EpochSums {
    pub train: Tensor<1>,
    pub norm: Tensor<1>,
    pub steps: usize,
    pub earlier: Duration,
}

impl EpochSums {
    /// Zero sums, or those of `partial` (an epoch stopped part way), on `device`.
    pub fn start(partial: Option<&PartialEpoch>, device: &Device) -> EpochSums {
        let Some(p) = partial else {
            return EpochSums {
                train: Tensor::zeros([5], device),
                norm: Tensor::zeros([1], device),
                steps: 0,
                earlier: Duration::ZERO,
            };
        };
        let values =
            |bits: &[u32]| -> Vec<f32> { bits.iter().map(|b| f32::from_bits(*b)).collect() };
        let tensor = |v: Vec<f32>| {
            let len = v.len();
            Tensor::from_data(TensorData::new(v, [len]), device)
        };
        EpochSums {
            train: tensor(values(&p.train_sum_bits)),
            norm: tensor(values(&[p.norm_sum_bits])),
            steps: p.steps,
            earlier: Duration::from_secs_f64(p.train_seconds),
        }
    }

    /// What a checkpoint records of these sums after `spent` more seconds of training.
    pub fn to_partial(&self, spent: Duration) -> Result<PartialEpoch> {
        let bits = |t: &Tensor<1>| -> Result<Vec<u32>> {
            Ok(tensor_to_vec(t.clone())?
                .iter()
                .map(|v| v.to_bits())
                .collect())
        };
        Ok(PartialEpoch {
            steps: self.steps,
            train_sum_bits: bits(&self.train)?,
            norm_sum_bits: bits(&self.norm)?.first().copied().unwrap_or(0),
            train_seconds: (self.earlier + spent).as_secs_f64(),
        })
    }
}
