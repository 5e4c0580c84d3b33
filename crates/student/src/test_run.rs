//! A run's test results beside its checkpoints: forecasts and ground truth of the test split
//! as NumPy arrays, every metric overall, per variable and per step (scaled and, if asked,
//! in the data's units), and a forecast plot.
//!
//! ```text
//! <run>/test.json                           scaled MSE/MAE overall and per step (EvalReport)
//! <run>/results.json                        TestResults: MSE, MAE, RMSE, MAPE, MSPE
//! <run>/pred.npy, true.npy                  [windows, H, V] f32, scaled
//! <run>/pred_inverse.npy, true_inverse.npy  the same in the data's units (with data_units)
//! <run>/forecast.png                        test window 0 of the last scored variable
//! ```

use std::path::PathBuf;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use timekd_data::{Features, Split};

use crate::checkpoint::load_checkpoint;
use crate::error::{Result, StudentError};
use crate::eval::{Arrays, EvalReport, Predictions, predict};
use crate::npy::write_npy;
use crate::plot::{ForecastPlot, plot_forecast};
use crate::run_dir::RunDir;
use crate::scores::MetricSet;
use crate::summary::write_json_atomic;
use crate::train_config::Selection;

/// How [`test_run`] tests a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestOptions {
    /// Windows per forward pass.
    pub batch_size: usize,
    /// The run's feature mode (`MS` scores the last variable alone). It must agree with the
    /// checkpoint's `loss.target_only`.
    pub features: Features,
    /// Also score, and write arrays, in the data's units.
    pub data_units: bool,
}

/// A run's `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestResults {
    /// The split scored (`test`).
    pub split: String,
    /// Windows scored.
    pub windows: usize,
    /// H.
    pub output_len: usize,
    /// The run's feature mode.
    pub features: Features,
    /// How the tested checkpoint was chosen.
    #[serde(default)]
    pub selection: Selection,
    /// The scored variables: the arrays' last dimension.
    pub variables: Vec<String>,
    /// Metrics on the scaled data (what the paper reports).
    pub scaled: MetricSet,
    /// Metrics in the data's units (`--inverse`).
    pub data_units: Option<MetricSet>,
}

impl TestResults {
    /// Reads `run`'s `results.json`.
    pub fn read(run: &RunDir) -> Result<Self> {
        let path = run.results();
        let text = std::fs::read_to_string(&path).map_err(|e| StudentError::io(&path, e))?;
        serde_json::from_str(&text).map_err(|source| StudentError::Json { path, source })
    }
}

impl RunDir {
    /// `results.json`: [`TestResults`].
    pub fn results(&self) -> PathBuf {
        self.path().join("results.json")
    }
    /// `pred.npy` (scaled) or `pred_inverse.npy` (data units): forecasts `[windows, H, V]`.
    pub fn predictions(&self, data_units: bool) -> PathBuf {
        self.path().join(npy_name("pred", data_units))
    }
    /// `true.npy` (scaled) or `true_inverse.npy` (data units): ground truth `[windows, H, V]`.
    pub fn truths(&self, data_units: bool) -> PathBuf {
        self.path().join(npy_name("true", data_units))
    }
    /// `forecast.png`: the first test window's history, forecast and truth.
    pub fn forecast_plot(&self) -> PathBuf {
        self.path().join("forecast.png")
    }
}

fn npy_name(stem: &str, data_units: bool) -> String {
    if data_units {
        format!("{stem}_inverse.npy")
    } else {
        format!("{stem}.npy")
    }
}

/// Tests `run`'s best checkpoint on `test` and writes the files listed in the module docs.
pub fn test_run(
    run: &RunDir,
    test: &Split<'_>,
    options: &TestOptions,
    device: &Device,
) -> Result<(EvalReport, TestResults)> {
    let best = load_checkpoint(&run.best(), device)?;
    let last_only = options.features.scores_last_only();
    if last_only != best.state.config.loss.target_only {
        return Err(StudentError::Config(format!(
            "{}: the checkpoint was trained with loss.target_only = {}, which --features {} \
             contradicts; test it with the features it was trained with",
            run.best().display(),
            best.state.config.loss.target_only,
            options.features
        )));
    }
    let predictions = predict(
        &best.model,
        test,
        options.batch_size,
        last_only,
        options.data_units,
        device,
    )?;
    let shape = predictions.shape();
    let write = |arrays: &Arrays, data_units: bool| {
        write_npy(&run.predictions(data_units), &shape, &arrays.pred)?;
        write_npy(&run.truths(data_units), &shape, &arrays.truth)
    };
    write(&predictions.scaled, false)?;
    if let Some(units) = &predictions.data_units {
        write(units, true)?;
    }
    let report = predictions.report();
    let results = TestResults {
        split: predictions.split.clone(),
        windows: predictions.windows,
        output_len: predictions.output_len,
        features: options.features,
        selection: best.state.config.selection,
        variables: predictions.variables.clone(),
        scaled: predictions.scores(&predictions.scaled),
        data_units: predictions
            .data_units
            .as_ref()
            .map(|units| predictions.scores(units)),
    };
    write_json_atomic(&run.test_report(), &report)?;
    write_json_atomic(&run.results(), &results)?;
    plot_first_window(run, test, &predictions)?;
    Ok((report, results))
}

/// `forecast.png`: window 0 of the last scored variable, in the data's units.
fn plot_first_window(run: &RunDir, test: &Split<'_>, predictions: &Predictions) -> Result<()> {
    let dataset = test.dataset();
    let v = predictions.variables.len();
    let (slot, var) = (v - 1, predictions.var_indices[v - 1]);
    let window = test.window(0);
    let forecast: Vec<f64> = (0..predictions.output_len)
        .map(|step| {
            let scaled = predictions.scaled.pred[step * v + slot];
            dataset.scaler().unscale(var, f64::from(scaled))
        })
        .collect();
    let name = &predictions.variables[slot];
    let plot = ForecastPlot {
        title: format!(
            "{name}: test window 0 ({} to {}), H = {}",
            window.history_start().format("%Y-%m-%d %H:%M"),
            window.history_end().format("%Y-%m-%d %H:%M"),
            predictions.output_len
        ),
        variable: name,
        history: window.history_raw(var),
        forecast: &forecast,
        truth: Some(window.future_raw(var)),
    };
    plot_forecast(&run.forecast_plot(), &plot)
}
