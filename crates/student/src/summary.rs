//! How a run ended: [`TrainSummary`] (what [`Trainer::train`](crate::Trainer::train) returns)
//! and [`RunSummary`] (the run directory's `summary.json`, what `cargo xtask train` tabulates).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Result, StudentError};
use crate::eval::EvalReport;
use crate::metrics::EpochMetrics;
use crate::run_dir::RunDir;

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

/// The `summary.json` of a finished run: what `timekd train` reports and `cargo xtask train`
/// tabulates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// The output length H.
    pub output_len: usize,
    /// Epochs completed (across resumes).
    pub epochs: usize,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// The epoch with the best validation loss.
    pub best_epoch: Option<usize>,
    /// The best validation loss.
    pub best_val_loss: Option<f64>,
    /// Test MSE of the best checkpoint (scaled data).
    pub test_mse: f64,
    /// Test MAE of the best checkpoint (scaled data).
    pub test_mae: f64,
    /// Seconds of the training call that finished the run.
    pub train_seconds_this_invocation: f64,
    /// The device argument it trained on (`cpu`, `cuda:all`, ...).
    pub device: String,
    /// Devices it trained on.
    pub devices: usize,
}

impl RunSummary {
    /// The summary of a run that ended as `trained`, whose best checkpoint scored `test`.
    pub fn new(
        output_len: usize,
        trained: &TrainSummary,
        test: &EvalReport,
        seconds: f64,
        device: String,
        devices: usize,
    ) -> Self {
        RunSummary {
            output_len,
            epochs: trained.epochs_done,
            stopped_early: trained.stopped_early,
            best_epoch: trained.best.map(|(epoch, _)| epoch),
            best_val_loss: trained.best.map(|(_, loss)| loss),
            test_mse: test.mse,
            test_mae: test.mae,
            train_seconds_this_invocation: seconds,
            device,
            devices,
        }
    }

    /// Writes `run`'s `summary.json` (atomically: a run with a summary is finished).
    pub fn write(&self, run: &RunDir) -> Result<()> {
        write_json_atomic(&run.summary(), self)
    }

    /// Reads `run`'s `summary.json`.
    pub fn read(run: &RunDir) -> Result<Self> {
        let path = run.summary();
        let text = std::fs::read_to_string(&path).map_err(|e| StudentError::io(&path, e))?;
        serde_json::from_str(&text).map_err(|source| StudentError::Json { path, source })
    }
}

/// Writes `value` as pretty JSON to `path`, atomically.
pub(crate) fn write_json_atomic(path: &Path, value: &impl Serialize) -> Result<()> {
    let json = serde_json::to_vec_pretty(value).map_err(|source| StudentError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    crate::output::write_file(path, &json)
}
