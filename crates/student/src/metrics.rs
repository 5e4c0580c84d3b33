//! Per-epoch metrics and their JSON-lines log.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Result, StudentError};
use crate::loss::LossValues;
use crate::output::{append_file, write_file};
use crate::train_config::Selection;

/// What one epoch of training measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// Epoch index (0-based).
    pub epoch: usize,
    /// Learning rate used during the epoch.
    pub lr: f64,
    /// Mean training loss terms (dropout on), weighted by batch size.
    pub train: LossValues,
    /// Mean validation loss terms (dropout off), weighted by batch size.
    pub val: LossValues,
    /// Mean global gradient norm before clipping, over the epoch's optimiser steps.
    pub grad_norm: f64,
    /// Optimiser steps taken so far in the run.
    pub steps: u64,
    /// Whether this epoch's checkpoint was kept as the best (see `selection`).
    pub best: bool,
    /// The test MSE (scaled), when the selection evaluated the test split this epoch
    /// ([`Selection::Paper`] after epoch 10, on a lower validation loss).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_mse: Option<f64>,
    /// The run's selection protocol.
    #[serde(default)]
    pub selection: Selection,
    /// Wall time of the epoch in seconds (training, validation, checkpoints, plot).
    pub seconds: f64,
    /// Wall time of the epoch's training steps alone, until their losses reached the host.
    /// Absent (0) in metrics written before it was recorded.
    #[serde(default)]
    pub train_seconds: f64,
}

/// Rewrites `path` with one JSON object per epoch (atomically).
pub fn write_metrics(path: &Path, history: &[EpochMetrics]) -> Result<()> {
    let mut text = String::new();
    for m in history {
        let line = serde_json::to_string(m).map_err(|source| StudentError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        text.push_str(&line);
        text.push('\n');
    }
    write_file(path, text.as_bytes())
}

/// Reads a `metrics.jsonl` written by [`write_metrics`] / [`append_metrics`]; a bad line is
/// an error naming the file and line.
pub fn read_metrics(path: &Path) -> Result<Vec<EpochMetrics>> {
    let text = std::fs::read_to_string(path).map_err(|e| StudentError::io(path, e))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| {
                StudentError::Config(format!("{}, line {}: {e}", path.display(), i + 1))
            })
        })
        .collect()
}

/// Appends one epoch to `path` (a failed append leaves the file as it was).
pub fn append_metrics(path: &Path, metrics: &EpochMetrics) -> Result<()> {
    let line = serde_json::to_string(metrics).map_err(|source| StudentError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    append_file(path, format!("{line}\n").as_bytes())
}
