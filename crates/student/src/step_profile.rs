//! Where an epoch's time goes, printed per epoch when `TIMEKD_TRAIN_PROFILE` is set: host
//! time waiting for batches, issuing the forward + loss + backward, issuing the optimiser
//! step, waiting for the device at the end of the epoch, validation, and checkpoints.
//!
//! Nothing is synchronised for it: on a GPU the phases are the host's time to queue the
//! work, and a step is launch-bound when they add up to the step's wall time.

use std::time::{Duration, Instant};

/// Phases of one epoch.
#[derive(Debug, Default)]
pub(crate) struct StepProfile {
    on: bool,
    steps: usize,
    /// Waiting for the reader thread's next batch.
    pub wait: Duration,
    /// Forward, loss and backward of the micro-batches.
    pub graph: Duration,
    /// Clipping and the optimiser step.
    pub optimizer: Duration,
    /// Reading the epoch's loss sums (the device finishing its queue).
    pub drain: Duration,
    /// The validation pass.
    pub validation: Duration,
    /// Checkpoints, metrics and the loss plot.
    pub saving: Duration,
}

impl StepProfile {
    /// On when the environment variable `TIMEKD_TRAIN_PROFILE` is set.
    pub fn from_env() -> Self {
        StepProfile {
            on: std::env::var_os("TIMEKD_TRAIN_PROFILE").is_some(),
            ..StepProfile::default()
        }
    }

    /// Times `f` into the phase `field` picks.
    pub fn time<R>(&mut self, field: fn(&mut Self) -> &mut Duration, f: impl FnOnce() -> R) -> R {
        let started = Instant::now();
        let result = f();
        *field(self) += started.elapsed();
        result
    }

    /// One optimiser step done.
    pub fn step(&mut self) {
        self.steps += 1;
    }

    /// Prints the epoch's line (when on) and starts the next epoch's.
    pub fn report(&mut self, epoch: usize, train_seconds: f64) {
        if self.on {
            let per_step = |d: Duration| d.as_secs_f64() * 1e3 / self.steps.max(1) as f64;
            eprintln!(
                "profile epoch {epoch}: {} steps in {train_seconds:.2} s = {:.3} ms/step; host per \
                 step: waiting for batches {:.3} ms, forward+loss+backward {:.3} ms, clip+optimiser \
                 {:.3} ms; end-of-epoch drain {:.3} s; validation {:.2} s; checkpoints+plot {:.2} s",
                self.steps,
                train_seconds * 1e3 / self.steps.max(1) as f64,
                per_step(self.wait),
                per_step(self.graph),
                per_step(self.optimizer),
                self.drain.as_secs_f64(),
                self.validation.as_secs_f64(),
                self.saving.as_secs_f64(),
            );
        }
        *self = StepProfile {
            on: self.on,
            ..StepProfile::default()
        };
    }
}
