//! Checkpoints: model weights (PyTorch names, safetensors), optimiser moments and the
//! JSON state a resumed run needs to continue exactly where it stopped.
//!
//! A checkpoint directory is replaced as a whole: the new one is written beside it as
//! `<dir>.new` (each file fsynced, the state file last), the old one renamed to `<dir>.old`,
//! the new one renamed into place, and the old one removed. Killed or out of space at any
//! instant, a run keeps one complete checkpoint: readers take `<dir>` when its state file
//! exists, else a complete `<dir>.new` (killed between the two renames), and the next save
//! settles the leftovers.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use timekd_data::{Dataset, SeriesContract};

use crate::error::{Result, StudentError};
use crate::interrupt::PartialEpoch;
use crate::metrics::EpochMetrics;
use crate::model::Dual;
use crate::optim::AdamW;
use crate::output::{sync_dir, write_file};
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
    /// Variable names in model order (the contract's, repeated for readers of formats 1-2).
    pub var_names: Vec<String>,
    /// What forecasting new data needs: the scaler and the rows it was fitted on, the
    /// variables' order in the file, feature mode, target and interval. Format 3 on;
    /// `None` when read from an older checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract: Option<SeriesContract>,
}

impl DataInfo {
    /// The data record of a model trained on `dataset` (named `name`).
    pub fn of(name: &str, dataset: &Dataset) -> DataInfo {
        DataInfo {
            dataset: name.to_string(),
            var_names: dataset.var_names().to_vec(),
            contract: Some(dataset.contract()),
        }
    }
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
    /// The kept checkpoint's epoch and validation loss.
    pub best: Option<(usize, f64)>,
    /// The lowest test MSE seen by [`Selection::Paper`](crate::Selection) (the kept
    /// checkpoint's, after epoch 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_test_mse: Option<f64>,
    /// Epochs since the kept checkpoint (early-stopping counter).
    pub epochs_since_best: usize,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// Metrics of every completed epoch.
    pub history: Vec<EpochMetrics>,
    /// How far the epoch after the completed ones got, when training was stopped between
    /// two steps (SIGTERM): a resumed run continues that epoch from the next step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial: Option<PartialEpoch>,
}

/// Current version of [`CheckpointState`]: 2 added `partial` (version 1 files read as
/// stopped at an epoch boundary), 3 the data contract (`DataInfo::contract`; older files
/// read without it). Newer versions are refused.
pub const STATE_VERSION: u32 = 3;

/// Writes a checkpoint directory: weights, optionally the optimiser, then the state file,
/// replacing an existing one as a whole (see the module docs): a crash or a full disk
/// leaves the previous checkpoint or this one, complete.
pub fn save_checkpoint(
    dir: &Path,
    model: &Dual,
    optimizer: Option<&AdamW>,
    state: &CheckpointState,
) -> Result<()> {
    settle(dir)?;
    let staged = sibling(dir, "new");
    remove_dir(&staged)?;
    std::fs::create_dir_all(&staged).map_err(|e| StudentError::io(&staged, e))?;
    save_safetensors(model, &staged.join(MODEL_FILE))?;
    timekd_fault::point("checkpoint.model");
    if let Some(optimizer) = optimizer {
        write_safetensors(&staged.join(OPTIMIZER_FILE), &optimizer.state_tensors()?)?;
        timekd_fault::point("checkpoint.optimizer");
    }
    let path = staged.join(STATE_FILE);
    let json = serde_json::to_vec_pretty(state).map_err(|source| StudentError::Json {
        path: path.clone(),
        source,
    })?;
    write_file(&path, &json)?;
    timekd_fault::point("checkpoint.staged");
    let old = sibling(dir, "old");
    if dir.exists() {
        rename(dir, &old)?;
        timekd_fault::point("checkpoint.moved_old");
    }
    rename(&staged, dir)?;
    timekd_fault::point("checkpoint.swapped");
    remove_dir(&old)
}

/// Finishes or undoes what an interrupted [`save_checkpoint`] of `dir` left: a complete
/// `<dir>.new` without `<dir>` is moved into place; the old `<dir>.old` is moved back when
/// nothing newer is complete; leftovers are removed.
pub(crate) fn settle(dir: &Path) -> Result<()> {
    let (staged, old) = (sibling(dir, "new"), sibling(dir, "old"));
    if !is_complete(dir) {
        for candidate in [&staged, &old] {
            if is_complete(candidate) {
                remove_dir(dir)?;
                rename(candidate, dir)?;
                break;
            }
        }
    }
    remove_dir(&staged)?;
    remove_dir(&old)
}

/// The directory holding the committed checkpoint of `dir`: `dir` itself, or `<dir>.new`
/// when a save was interrupted between its two renames.
pub(crate) fn committed(dir: &Path) -> PathBuf {
    let staged = sibling(dir, "new");
    if !is_complete(dir) && is_complete(&staged) {
        staged
    } else {
        dir.to_path_buf()
    }
}

fn is_complete(dir: &Path) -> bool {
    dir.join(STATE_FILE).is_file()
}

/// `<dir>.<suffix>`.
fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

/// Renames `from` to `to` and fsyncs their directory.
fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|e| StudentError::io(to, e))?;
    sync_dir(to.parent().unwrap_or(Path::new(".")))
}

/// Removes a directory tree if it exists.
fn remove_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StudentError::io(dir, e)),
        _ => Ok(()),
    }
}

/// Reads the state file of a checkpoint directory (its committed version, see the module
/// docs). A version newer than `STATE_VERSION` (this build's) is refused.
pub fn read_state(dir: &Path) -> Result<CheckpointState> {
    let path = committed(dir).join(STATE_FILE);
    let bytes = std::fs::read(&path).map_err(|e| StudentError::io(&path, e))?;
    let state: CheckpointState =
        serde_json::from_slice(&bytes).map_err(|source| StudentError::Json {
            path: path.clone(),
            source,
        })?;
    if state.version > STATE_VERSION {
        return Err(StudentError::Config(format!(
            "{}: checkpoint format version {} is newer than this build's {STATE_VERSION}; use \
             the timekd that wrote it",
            path.display(),
            state.version
        )));
    }
    Ok(state)
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
    let dir = committed(dir);
    let state = read_state(&dir)?;
    let model = Dual::init(&state.config.model, state.config.seed, device)?;
    let model = load_safetensors(model, &dir.join(MODEL_FILE))?;
    Ok(Checkpoint { model, state, dir })
}

/// Loads the optimiser moments of a checkpoint written with one.
pub fn load_optimizer(dir: &Path, state: &CheckpointState) -> Result<AdamW> {
    let tensors = read_safetensors(&committed(dir).join(OPTIMIZER_FILE))?;
    AdamW::from_state(state.config.optim.clone(), state.steps, &tensors)
}
