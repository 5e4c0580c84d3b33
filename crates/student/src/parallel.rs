//! One micro-batch's loss and gradients, data-parallel over several devices.

use std::ops::Range;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use timekd_data::seeded::mix64;

use crate::batches::Batch;
use crate::dropout::mask_seeds;
use crate::error::{Result, StudentError};
use crate::loss::distillation_loss;
use crate::model::Dual;
use crate::optim::GradientSet;
use crate::train_config::TrainConfig;

/// Derives an independent 64-bit seed from a base seed and two counters (SplitMix64's mix).
pub(crate) fn mix(seed: u64, a: u64, b: u64) -> u64 {
    mix64(seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xD1B5_4A32_D192_ED03))
}

/// Loss terms (means over each run's windows, a `[runs, 5]` device tensor as
/// [`LossTerms::stacked`]) and gradients of `scale` × the loss of one micro-batch (for a
/// pack of runs, the sum of the runs' losses: each run's parameters get its own gradient).
/// With several devices (one run only: the trainer's `check_pack` refuses a pack on several)
/// the windows are split evenly over them and each share runs on a forked replica in its
/// own thread; gradients are weighted by share size and summed on `devices[0]`, the model's
/// device. Dropout masks are drawn from `seeds`, one
/// per run (and the share; see the `dropout` module).
pub(crate) fn micro_batch(
    model: &Dual,
    devices: &[Device],
    batch: Batch,
    config: &TrainConfig,
    seeds: &[u64],
    scale: f64,
) -> Result<(Tensor<2>, GradientSet)> {
    let share_result = |model: &Dual, batch: Batch, device: &Device, weight: f64| {
        let out = model.forward(batch.x, batch.emb);
        let loss = distillation_loss(&config.loss, &out, batch.y);
        let values = loss.stacked().to_device(&device.clone().without_autodiff());
        let factor = scale * weight;
        // One run's loss is already the scalar to differentiate.
        let total = match out.runs {
            1 => loss.total,
            _ => loss.total.sum(),
        };
        let objective = if factor == 1.0 {
            total
        } else {
            total.mul_scalar(factor)
        };
        let grads = GradientSet::from_backward(model, &objective.backward());
        Ok::<_, StudentError>((values, grads.into_device(device)))
    };
    let main = &devices[0];
    let total = batch.len;
    if devices.len() == 1 || total < 2 {
        return mask_seeds(seeds, || share_result(model, batch, main, 1.0));
    }
    let share_len = total.div_ceil(devices.len());
    let shares: Vec<Range<usize>> = (0..total)
        .step_by(share_len)
        .map(|start| start..(start + share_len).min(total))
        .collect();
    let work: Vec<_> = shares
        .iter()
        .zip(devices)
        .map(|(rows, device)| (batch.rows(rows.clone(), device), model.clone().fork(device)))
        .collect();
    let results: Vec<Result<(Tensor<2>, GradientSet)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = work
            .into_iter()
            .enumerate()
            .map(|(i, (batch, replica))| {
                let share_result = &share_result;
                scope.spawn(move || {
                    let weight = batch.len as f64 / total as f64;
                    let share_seeds: Vec<u64> =
                        seeds.iter().map(|&s| mix(s, i as u64, 1)).collect();
                    mask_seeds(&share_seeds, || share_result(&replica, batch, main, weight))
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
    let mut values: Option<Tensor<2>> = None;
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
