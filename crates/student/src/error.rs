//! The crate's error type.

use std::path::PathBuf;

/// Boxed error returned by an [`EmbeddingSource`](crate::EmbeddingSource) implementation.
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// Everything that can go wrong while building, training, evaluating or saving a student.
#[derive(Debug, thiserror::Error)]
pub enum StudentError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The disk, a quota or the file-size limit ran out while writing a file (checkpoint,
    /// metrics, plot, ...): the file and the bytes it needed. Earlier checkpoints are intact.
    #[error(transparent)]
    DiskFull(#[from] timekd_fault::DiskFull),
    /// A safetensors file is malformed or could not be serialised.
    #[error("{path}: invalid safetensors data: {message}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A weights file does not match the model (missing, unexpected or mis-shaped tensors).
    #[error("{path}: weights do not match the model: {message}")]
    WeightsMismatch {
        /// The weights file.
        path: PathBuf,
        /// Which tensors are missing, unexpected or of the wrong shape.
        message: String,
    },
    /// A JSON file (checkpoint state, config) is malformed.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// A configuration value is out of range or inconsistent with the data.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The embedding source failed or returned data of the wrong size.
    #[error("embeddings: {0}")]
    Embeddings(#[source] SourceError),
    /// The store of a split's embeddings does not exist or is not finished.
    #[error("{}: {}", path.display(), missing_store(split, *unfinished))]
    MissingStore {
        /// Where the store should be.
        path: PathBuf,
        /// Which split.
        split: &'static str,
        /// Whether it exists but is not finished.
        unfinished: bool,
    },
    /// A store exists but was made for other data.
    #[error("{}: {message}", path.display())]
    StoreMismatch {
        /// The store.
        path: PathBuf,
        /// What differs.
        message: String,
    },
    /// A store failed its checksum verification (damaged after it was written).
    #[error(
        "{message}; training refuses it (re-extract or copy it again; `--no-verify` trains on \
         it anyway)"
    )]
    StoreDamaged {
        /// The store.
        path: PathBuf,
        /// What the verification found (naming the store and the first bad window).
        message: String,
    },
    /// A tensor could not be read back from the device.
    #[error("reading a tensor back from the device failed: {0}")]
    Tensor(String),
    /// The student's CUDA engine failed (feature `cuda`).
    #[error("student GPU engine: {0}")]
    Gpu(String),
    /// The loss-curve plot could not be drawn or encoded.
    #[error("plot {path}: {message}")]
    Plot {
        /// The PNG file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// New data does not fit a trained model (its columns, rows or timestamps).
    #[error(transparent)]
    Data(#[from] timekd_data::DataError),
    /// Data to forecast from cannot serve the request (too few rows, origins outside it).
    #[error("{}: {message}", path.display())]
    Input {
        /// The data file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A checkpoint written before checkpoints recorded the data contract (format 3).
    #[error(
        "{}: checkpoint format version {version} does not record the scaler, the variables' \
         order and the sampling interval that forecasting new data needs (format 3 does); \
         pass the file it was trained on (`timekd forecast --train-data FILE`) so that its \
         train split's scaler is fitted again, or retrain",
        path.display()
    )]
    NoContract {
        /// The checkpoint directory.
        path: PathBuf,
        /// Its format version.
        version: u32,
    },
    /// Training produced a non-finite loss.
    #[error(
        "loss became {value} at epoch {epoch}, step {step}: lower the learning rate or check the inputs"
    )]
    NonFinite {
        /// The offending loss value.
        value: f64,
        /// Epoch (0-based).
        epoch: usize,
        /// Optimiser step within the run.
        step: u64,
    },
}

fn missing_store(split: &str, unfinished: bool) -> String {
    if unfinished {
        format!("the extraction of the {split} embeddings is not finished; rerun `timekd extract`")
    } else {
        format!(
            "no {split} embeddings; run `timekd extract` for this dataset and --output-len \
             first, or point --stores at their root"
        )
    }
}

impl StudentError {
    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StudentError::Io {
            path: path.into(),
            source,
        }
    }

    /// An error writing `bytes` bytes to `path`: [`StudentError::DiskFull`] when space ran
    /// out, else [`StudentError::Io`].
    pub(crate) fn write(path: &std::path::Path, bytes: usize, source: std::io::Error) -> Self {
        match timekd_fault::DiskFull::from_io(path, bytes as u64, source) {
            Ok(full) => StudentError::DiskFull(full),
            Err(source) => StudentError::io(path, source),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = StudentError> = std::result::Result<T, E>;
