//! What can stop an extraction run.

use timekd_data::DataError;
use timekd_store::StoreError;

use crate::device::DeviceError;
use crate::error::TeacherError;

/// An extraction that cannot start or continue. Messages name the setting (flag), file,
/// window or device at fault and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// The teacher could not load or run (model files, prompts, SCA).
    #[error(transparent)]
    Teacher(#[from] TeacherError),
    /// A store could not be opened, written or finished.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The data does not allow the request (e.g. an output length longer than a split).
    #[error(transparent)]
    Data(#[from] DataError),
    /// A device asked for is not there.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// A setting that does not fit the data, the model or this build.
    #[error("{setting}: {reason}")]
    Setting {
        /// The setting (command-line flag or environment variable).
        setting: &'static str,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// The language model failed on a device in a way a smaller pass does not fix.
    #[error("the language model failed: {0}")]
    ModelFailed(String),
    /// An invariant of the run broke (a bug; please report it).
    #[error("internal error: {0}")]
    Internal(String),
}
