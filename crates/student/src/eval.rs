//! Test metrics of the time-series branch: MSE and MAE on scaled data, overall and per
//! horizon step.

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use timekd_data::{BatchOrder, Split};

use crate::error::{Result, StudentError};
use crate::model::Dual;
use crate::state_dict::tensor_to_vec;

/// MSE and MAE of ŷ_ts against y, averaged over windows, variables and (overall) steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Split evaluated (`test` normally).
    pub split: String,
    /// Windows evaluated.
    pub windows: usize,
    /// Mean squared error over all windows, steps and variables.
    pub mse: f64,
    /// Mean absolute error over all windows, steps and variables.
    pub mae: f64,
    /// MSE at each horizon step (length H).
    pub mse_per_step: Vec<f64>,
    /// MAE at each horizon step (length H).
    pub mae_per_step: Vec<f64>,
}

/// Evaluates `model` on every window of `split` (in order, no dropout, no autodiff).
pub fn evaluate(
    model: &Dual,
    split: &Split,
    batch_size: usize,
    device: &Device,
) -> Result<EvalReport> {
    let device = device.clone().without_autodiff();
    let model = model.valid();
    let dataset = split.dataset();
    let (l, h, n) = (dataset.input_len(), dataset.output_len(), dataset.n_vars());
    let windows = split.num_windows();
    if windows == 0 {
        return Err(StudentError::Config(format!(
            "the {} split has no windows",
            split.kind()
        )));
    }
    let (mut se, mut ae) = (vec![0.0f64; h], vec![0.0f64; h]);
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for batch in split.batches(batch_size.max(1), BatchOrder::default()) {
        let b = batch.len();
        split.fill_scaled(&batch, &mut x, &mut y);
        let input = Tensor::<3>::from_data(TensorData::new(x.clone(), [b, l, n]), &device);
        let pred = model.forecast(input);
        let [_, ph, pn] = pred.dims();
        if (ph, pn) != (h, n) {
            return Err(StudentError::Config(format!(
                "the model forecasts [{ph}, {pn}] but the data has H = {h}, N = {n}"
            )));
        }
        let pred = tensor_to_vec(pred)?;
        for (i, (p, t)) in pred.iter().zip(&y).enumerate() {
            let step = (i / n) % h;
            let d = f64::from(*p) - f64::from(*t);
            se[step] += d * d;
            ae[step] += d.abs();
        }
    }
    let per_step = (windows * n) as f64;
    let mse_per_step: Vec<f64> = se.iter().map(|v| v / per_step).collect();
    let mae_per_step: Vec<f64> = ae.iter().map(|v| v / per_step).collect();
    Ok(EvalReport {
        split: split.kind().to_string(),
        windows,
        mse: mse_per_step.iter().sum::<f64>() / h as f64,
        mae: mae_per_step.iter().sum::<f64>() / h as f64,
        mse_per_step,
        mae_per_step,
    })
}
