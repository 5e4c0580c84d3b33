//! [`TrainConfig`]: everything that defines a training run (the run's `config.toml`).

use serde::{Deserialize, Serialize};

use crate::config::{DualConfig, LossConfig, OptimConfig};
use crate::error::{Result, StudentError};
use crate::optim::cosine_lr;

/// Everything that defines a training run. Defaults are the release's student settings,
/// except shuffling (on here) and selection of the best model by validation loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Model shape.
    pub model: DualConfig,
    /// Loss weights and kinds.
    pub loss: LossConfig,
    /// AdamW and clipping.
    pub optim: OptimConfig,
    /// Maximum number of epochs.
    pub epochs: usize,
    /// Windows per micro-batch.
    pub batch_size: usize,
    /// Micro-batches whose gradients are averaged into one optimiser step.
    pub accumulate: usize,
    /// Shuffle training windows each epoch (seeded). `false` reproduces the release.
    pub shuffle: bool,
    /// Drop the last partial training batch (the release does).
    pub drop_last: bool,
    /// Seed of initialisation, shuffling and dropout.
    pub seed: u64,
    /// Stop after this many epochs without a better validation loss.
    pub patience: usize,
    /// Floor of the cosine schedule.
    pub eta_min: f64,
    /// The schedule's period is `min(epochs, t_max_cap)` epochs.
    pub t_max_cap: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            model: DualConfig::default(),
            loss: LossConfig::default(),
            optim: OptimConfig::default(),
            epochs: 100,
            batch_size: 16,
            accumulate: 1,
            shuffle: true,
            drop_last: false,
            seed: 2024,
            patience: 50,
            eta_min: 1e-8,
            t_max_cap: 100,
        }
    }
}

impl TrainConfig {
    /// Checks ranges and consistency.
    pub fn validate(&self) -> Result<()> {
        self.model.validate()?;
        if self.epochs == 0 || self.batch_size == 0 || self.accumulate == 0 {
            return Err(StudentError::Config(
                "epochs, batch_size and accumulate must be positive".into(),
            ));
        }
        if self.optim.lr.is_nan() || self.optim.lr <= 0.0 {
            return Err(StudentError::Config(format!(
                "optim.lr must be positive, got {}",
                self.optim.lr
            )));
        }
        Ok(())
    }

    /// Learning rate of `epoch`.
    pub fn lr_at(&self, epoch: usize) -> f64 {
        let t_max = self.epochs.min(self.t_max_cap);
        cosine_lr(self.optim.lr, self.eta_min, t_max, epoch)
    }
}
