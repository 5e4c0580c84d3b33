//! [`TrainStep`]: where a training run is, reported after every optimiser step.

/// Where a training run is, after an optimiser step (see
/// [`Trainer::on_step`](crate::Trainer::on_step)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrainStep {
    /// Epoch index (0-based).
    pub epoch: usize,
    /// The run's maximum epochs.
    pub epochs: usize,
    /// Optimiser steps done in this epoch (1-based: 1 after the first).
    pub step: usize,
    /// Optimiser steps in one epoch.
    pub steps: usize,
}
