//! Evaluation of the time-series branch: forecasts and ground truth of a split
//! ([`predict`]), and their MSE and MAE on scaled data, overall and per horizon step
//! ([`evaluate`]).

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use timekd_data::{BatchOrder, Split};

use crate::error::{Result, StudentError};
use crate::model::Dual;
use crate::scores::{MetricSet, Scorer};
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

/// Forecasts and truths `[windows, H, V]` (row-major f32) of the scored variables.
#[derive(Debug, Clone, PartialEq)]
pub struct Arrays {
    /// The student's forecasts.
    pub pred: Vec<f32>,
    /// The ground truth.
    pub truth: Vec<f32>,
}

/// What [`predict`] returns: the scored variables' forecasts and truths on every window of a
/// split, on scaled data and, if asked, in the data's units.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    /// Split evaluated.
    pub split: String,
    /// Windows (the arrays' first dimension).
    pub windows: usize,
    /// H (the second).
    pub output_len: usize,
    /// The scored variables (the third): every variable, or the last alone.
    pub variables: Vec<String>,
    /// Their indices among the dataset's variables.
    pub var_indices: Vec<usize>,
    /// On the scaled data.
    pub scaled: Arrays,
    /// In the data's units: forecasts through the train-fitted scaler's inverse, truths read
    /// unscaled from the file; present when asked for.
    pub data_units: Option<Arrays>,
}

impl Predictions {
    /// The arrays' shape, `[windows, H, V]`.
    pub fn shape(&self) -> [usize; 3] {
        [self.windows, self.output_len, self.variables.len()]
    }

    /// Metrics of `arrays` (one of this value's).
    pub fn scores(&self, arrays: &Arrays) -> MetricSet {
        let mut scorer = Scorer::new(self.output_len, self.variables.clone());
        scorer.add(&arrays.pred, &arrays.truth);
        scorer.finish()
    }

    /// The scaled MSE and MAE, overall and per step.
    pub fn report(&self) -> EvalReport {
        let set = self.scores(&self.scaled);
        EvalReport {
            split: self.split.clone(),
            windows: self.windows,
            mse: set.overall.mse,
            mae: set.overall.mae,
            mse_per_step: set.per_step.iter().map(|m| m.mse).collect(),
            mae_per_step: set.per_step.iter().map(|m| m.mae).collect(),
        }
    }
}

/// Runs `model` on every window of `split` (in order, no dropout, no autodiff). Scores
/// every variable, or with `last_only` the last (the target in `MS` mode); `data_units` adds
/// the arrays in the data's units.
pub fn predict(
    model: &Dual,
    split: &Split,
    batch_size: usize,
    last_only: bool,
    data_units: bool,
    device: &Device,
) -> Result<Predictions> {
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
    let var_indices: Vec<usize> = if last_only {
        vec![n - 1]
    } else {
        (0..n).collect()
    };
    let scaler = dataset.scaler();
    let capacity = windows * h * var_indices.len();
    let mut scaled = Arrays {
        pred: Vec::with_capacity(capacity),
        truth: Vec::with_capacity(capacity),
    };
    let mut units = data_units.then(|| scaled.clone());
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
        for (w, &window) in batch.iter().enumerate() {
            let future = split.window(window);
            for step in 0..h {
                for &var in &var_indices {
                    let at = (w * h + step) * n + var;
                    scaled.pred.push(pred[at]);
                    scaled.truth.push(y[at]);
                    if let Some(units) = &mut units {
                        let p = scaler.unscale(var, f64::from(pred[at]));
                        units.pred.push(p as f32);
                        units.truth.push(future.future_raw(var)[step] as f32);
                    }
                }
            }
        }
    }
    Ok(Predictions {
        split: split.kind().to_string(),
        windows,
        output_len: h,
        variables: var_indices
            .iter()
            .map(|&v| dataset.var_names()[v].clone())
            .collect(),
        var_indices,
        scaled,
        data_units: units,
    })
}

/// Evaluates `model` on every window and variable of `split` (in order, no dropout, no
/// autodiff): scaled MSE and MAE.
pub fn evaluate(
    model: &Dual,
    split: &Split,
    batch_size: usize,
    device: &Device,
) -> Result<EvalReport> {
    Ok(predict(model, split, batch_size, false, false, device)?.report())
}
