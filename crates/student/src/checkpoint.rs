//! Checkpoints: model weights (PyTorch names, safetensors), optimiser moments and the
//! JSON state a resumed run needs to continue exactly where it stopped.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::error::{Result, StudentError};
use crate::metrics::EpochMetrics;
use crate::model::Dual;
use crate::optim::AdamW;
use crate::state_dict::{load_safetensors, read_safetensors, save_safetensors, write_safetensors};
use crate::train_config::TrainConfig;

/// File of the model weights inside a checkpoint directory.
pub const MODEL_FILE: &str = "model.safetensors";
/// File of the optimiser moments inside a checkpoint directory.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// File of the [`CheckpointState`] inside a checkpoint directory.
pub const STATE_FILE: &str = "checkpoint.json";

/// Which data a model was trained on (what forecasting needs to check its input).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataInfo {
    /// Dataset name (e.g. `ETTh1`).
    pub dataset: String,
    /// Variable names in model order.
    pub var_names: Vec<String>,
}

/// Everything besides tensors that a checkpoint records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    /// Format version of this file.
    pub version: u32,
    /// The resolved training configuration (model shape included).
    pub config: TrainConfig,
    /// The data the model was trained on.
    pub data: DataInfo,
    /// Epochs completed; a resumed run starts at this epoch index.
    pub epochs_done: usize,
    /// Optimiser steps taken.
    pub steps: u64,
    /// Best validation loss so far and its epoch.
    pub best: Option<(usize, f64)>,
    /// Epochs since the best validation loss (early-stopping counter).
    pub epochs_since_best: usize,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// Metrics of every completed epoch.
    pub history: Vec<EpochMetrics>,
}

/// Current version of [`CheckpointState`].
pub const STATE_VERSION: u32 = 1;

/// Writes a checkpoint directory: weights, optionally the optimiser, then the state file
/// (written last, through a rename, so a directory with a state file is complete).
pub fn save_checkpoint(
    dir: &Path,
    model: &Dual,
    optimizer: Option<&AdamW>,
    state: &CheckpointState,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| StudentError::io(dir, e))?;
    save_safetensors(model, &dir.join(MODEL_FILE))?;
    if let Some(optimizer) = optimizer {
        write_safetensors(&dir.join(OPTIMIZER_FILE), &optimizer.state_tensors()?)?;
    }
    let path = dir.join(STATE_FILE);
    let json = serde_json::to_vec_pretty(state).map_err(|source| StudentError::Json {
        path: path.clone(),
        source,
    })?;
    let tmp = dir.join(format!("{STATE_FILE}.tmp"));
    std::fs::write(&tmp, json).map_err(|e| StudentError::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| StudentError::io(&path, e))
}

/// Reads the state file of a checkpoint directory.
pub fn read_state(dir: &Path) -> Result<CheckpointState> {
    let path = dir.join(STATE_FILE);
    let bytes = std::fs::read(&path).map_err(|e| StudentError::io(&path, e))?;
    serde_json::from_slice(&bytes).map_err(|source| StudentError::Json { path, source })
}

/// A checkpoint loaded back: model on the requested device and its state.
#[derive(Debug)]
pub struct Checkpoint {
    /// The model, on the device passed to [`load_checkpoint`].
    pub model: Dual,
    /// The recorded state.
    pub state: CheckpointState,
    /// The directory it was read from.
    pub dir: PathBuf,
}

/// Loads the model and state of a checkpoint directory (the optimiser is read separately,
/// by `load_optimizer`, only when resuming).
pub fn load_checkpoint(dir: &Path, device: &Device) -> Result<Checkpoint> {
    let state = read_state(dir)?;
    let model = Dual::init(&state.config.model, state.config.seed, device)?;
    let model = load_safetensors(model, &dir.join(MODEL_FILE))?;
    Ok(Checkpoint {
        model,
        state,
        dir: dir.to_path_buf(),
    })
}

/// Loads the optimiser moments of a checkpoint written with one.
pub fn load_optimizer(dir: &Path, state: &CheckpointState) -> Result<AdamW> {
    let tensors = read_safetensors(&dir.join(OPTIMIZER_FILE))?;
    AdamW::from_state(state.config.optim.clone(), state.steps, &tensors)
}
