//! The choice of the kept checkpoint after each epoch, by the run's [`Selection`].

use crate::checkpoint::CheckpointState;
use crate::error::Result;
use crate::train_config::{Selection, TrainConfig};

/// What the selection decided after one epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Decision {
    /// Keep this epoch's checkpoint as the best.
    pub keep: bool,
    /// The test MSE, when the rule evaluated the test split.
    pub test_mse: Option<f64>,
}

/// Decides whether `epoch` (0-based) with validation loss `val` is kept, updating the
/// state's best, early-stopping counter and stop flag. `test_mse` evaluates the test split;
/// only [`Selection::Paper`] calls it, after its warm-up, on a lower validation loss.
pub(crate) fn select(
    config: &TrainConfig,
    state: &mut CheckpointState,
    epoch: usize,
    val: f64,
    test_mse: &mut dyn FnMut() -> Result<f64>,
) -> Result<Decision> {
    let lower = state.best.is_none_or(|(_, best)| val < best);
    let decision = match config.selection {
        Selection::Paper if lower && epoch >= Selection::PAPER_WARMUP_EPOCHS => {
            let mse = test_mse()?;
            Decision {
                keep: state.best_test_mse.is_none_or(|best| mse < best),
                test_mse: Some(mse),
            }
        }
        Selection::Val | Selection::Paper => Decision {
            keep: lower,
            test_mse: None,
        },
    };
    if decision.keep {
        state.best = Some((epoch, val));
        state.epochs_since_best = 0;
        if decision.test_mse.is_some() {
            state.best_test_mse = decision.test_mse;
        }
    } else {
        state.epochs_since_best += 1;
    }
    state.stopped_early = config.stops_early(epoch, state.epochs_since_best);
    Ok(decision)
}
