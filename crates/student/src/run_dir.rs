//! [`RunDir`]: the files of a run directory.

use std::path::{Path, PathBuf};

/// Files of a run directory.
#[derive(Debug, Clone)]
pub struct RunDir(PathBuf);

impl RunDir {
    /// A run rooted at `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        RunDir(dir.into())
    }
    /// The default run of `dataset` at output length `output_len` with `seed` under `root`:
    /// `<root>/<dataset>/<H>/seed-<seed>`.
    pub fn for_run(root: &Path, dataset: &str, output_len: usize, seed: u64) -> Self {
        RunDir(
            root.join(dataset)
                .join(output_len.to_string())
                .join(format!("seed-{seed}")),
        )
    }
    /// The run directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
    /// `metrics.jsonl`: one JSON object per epoch.
    pub fn metrics(&self) -> PathBuf {
        self.0.join("metrics.jsonl")
    }
    /// `loss.png`: train and validation loss curves.
    pub fn plot(&self) -> PathBuf {
        self.0.join("loss.png")
    }
    /// `checkpoints/last`: written every epoch, with the optimiser (what `resume` reads).
    pub fn last(&self) -> PathBuf {
        self.0.join("checkpoints").join("last")
    }
    /// `checkpoints/best`: the epoch with the lowest validation loss.
    pub fn best(&self) -> PathBuf {
        self.0.join("checkpoints").join("best")
    }
    /// `config.toml`: the resolved training settings.
    pub fn config(&self) -> PathBuf {
        self.0.join("config.toml")
    }
    /// `test.json`: test metrics of the best checkpoint.
    pub fn test_report(&self) -> PathBuf {
        self.0.join("test.json")
    }
    /// `summary.json`: written last, when the run is finished ([`RunSummary`]).
    ///
    /// [`RunSummary`]: crate::RunSummary
    pub fn summary(&self) -> PathBuf {
        self.0.join("summary.json")
    }
    /// Whether a run was started here (its last checkpoint exists): resume it, or it is
    /// finished (see [`summary`](Self::summary)).
    pub fn has_checkpoint(&self) -> bool {
        crate::checkpoint::committed(&self.last())
            .join(crate::checkpoint::STATE_FILE)
            .exists()
    }
}
