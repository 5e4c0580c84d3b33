//! The crate's error type: every variant names the file involved and says how to recover.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

pub use timekd_fault::DiskFull;

/// Result alias for store operations.
pub type Result<T> = std::result::Result<T, StoreError>;

/// One fingerprint (or layout) field whose stored value differs from the requested one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldDiff {
    /// Field name, as in the HDF5 attribute and the JSON form of [`crate::Fingerprint`].
    pub field: String,
    /// Value found in the existing store (JSON text).
    pub stored: String,
    /// Value of the request (JSON text).
    pub requested: String,
}

impl fmt::Display for FieldDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (store: {}, requested: {})",
            self.field, self.stored, self.requested
        )
    }
}

/// Everything that can go wrong while writing, reading or converting a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An operating-system I/O call failed.
    #[error("{path}: cannot {action}: {source}")]
    Io {
        /// File or directory involved.
        path: PathBuf,
        /// What was attempted, e.g. "read part file".
        action: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The HDF5 library reported an error.
    #[error(
        "{path}: cannot {action}: {source} (the file may be truncated, corrupted or not a timekd store)"
    )]
    Hdf5 {
        /// File involved.
        path: PathBuf,
        /// What was attempted, e.g. "open HDF5 file".
        action: &'static str,
        /// The underlying error.
        #[source]
        source: hdf5::Error,
    },
    /// The file exists but its content is not a valid store (truncated, garbage, wrong shape).
    #[error("{path}: corrupted or not a timekd store: {reason}")]
    Corrupt {
        /// File involved.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An existing store was made for a different request.
    #[error(
        "{path}: existing store was made for a different request; differing fields: {}; \
         open it with overwrite (`--overwrite`) to replace it, or use another path",
        join(.fields)
    )]
    FingerprintMismatch {
        /// The store (final file or its parts directory).
        path: PathBuf,
        /// The differing fields.
        fields: Vec<FieldDiff>,
    },
    /// The stored schema version is not one this build understands.
    #[error(
        "{path}: schema version {found} is not supported (this build reads version {supported}); use a matching timekd version"
    )]
    UnsupportedSchema {
        /// File involved.
        path: PathBuf,
        /// Version found in the file.
        found: u64,
        /// Version this build writes and reads.
        supported: u32,
    },
    /// The disk, a quota or the file-size limit ran out while writing: the file and the
    /// bytes it needed. What was durable before is intact; rerun after freeing space.
    #[error(transparent)]
    DiskFull(#[from] DiskFull),
    /// Another process holds the store's writer lock.
    #[error(
        "{path}: another writer is using this store: {holder} (its lock is held); wait for it \
         or stop it"
    )]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// Who holds it, as the holder recorded it: `pid P on host H since T`.
        holder: String,
    },
    /// Shards to merge do not cover the split exactly once.
    #[error("{}", coverage(path, missing, duplicate))]
    Coverage {
        /// The merge's output.
        path: PathBuf,
        /// Window ranges no input covers.
        missing: Vec<Range<usize>>,
        /// Window ranges two inputs cover, with those two inputs.
        duplicate: Vec<(Range<usize>, PathBuf, PathBuf)>,
    },
    /// A finished store's embeddings differ from the checksum recorded when it was written.
    #[error(
        "{path}: checksum mismatch: window {window} is not what was written (the first bad \
         window; the file was damaged after it was finished, e.g. in a copy): copy it again or \
         re-extract it"
    )]
    ChecksumMismatch {
        /// The store.
        path: PathBuf,
        /// The first window whose bytes differ from the recorded digest.
        window: usize,
    },
    /// A caller passed arguments that do not fit the store.
    #[error("{path}: {reason}")]
    Invalid {
        /// The store involved.
        path: PathBuf,
        /// What is wrong with the arguments.
        reason: String,
    },
    /// A window was requested that the store does not hold (yet).
    #[error(
        "{path}: window {window} is not in this store (covered: {start}..{end}) or not written yet"
    )]
    MissingWindow {
        /// The store involved.
        path: PathBuf,
        /// The window index asked for.
        window: usize,
        /// First window the store covers.
        start: usize,
        /// One past the last window the store covers.
        end: usize,
    },
    /// `finish` was called before every window was written.
    #[error(
        "{path}: cannot finish: {missing} windows are missing (first: {first}); write them, then finish"
    )]
    Incomplete {
        /// The store involved.
        path: PathBuf,
        /// How many windows are missing.
        missing: usize,
        /// The first missing window.
        first: usize,
    },
    /// A path does not exist as a store (neither final file nor parts directory).
    #[error("{path}: no store here (neither the file nor its `.parts` directory exists)")]
    NotFound {
        /// The path asked for.
        path: PathBuf,
    },
    /// A shard specification does not fit the window count.
    #[error(
        "shard {index}/{count} is invalid for {windows} windows: need 0 <= index < count <= windows"
    )]
    InvalidShard {
        /// Shard index.
        index: usize,
        /// Shard count.
        count: usize,
        /// Windows in the split.
        windows: usize,
    },
}

fn coverage(
    path: &Path,
    missing: &[Range<usize>],
    duplicate: &[(Range<usize>, PathBuf, PathBuf)],
) -> String {
    let mut problems = Vec::new();
    if !missing.is_empty() {
        let ranges: Vec<String> = missing.iter().map(|r| format!("{r:?}")).collect();
        problems.push(format!(
            "gap: windows {} are in no input",
            ranges.join(", ")
        ));
    }
    for (range, a, b) in duplicate {
        problems.push(format!(
            "overlap: windows {range:?} are in both {} and {}",
            a.display(),
            b.display()
        ));
    }
    format!(
        "{}: cannot merge: {}; pass shards of one `--shard i/n` series, each once, all of them",
        path.display(),
        problems.join("; ")
    )
}

fn join(fields: &[FieldDiff]) -> String {
    fields
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl StoreError {
    pub(crate) fn io(
        path: impl Into<PathBuf>,
        action: &'static str,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            path: path.into(),
            action,
            source,
        }
    }

    /// An error writing `bytes` bytes to `path`: [`StoreError::DiskFull`] when space ran
    /// out, else [`StoreError::Io`].
    pub(crate) fn write(
        path: &Path,
        bytes: u64,
        action: &'static str,
        source: std::io::Error,
    ) -> Self {
        match DiskFull::from_io(path, bytes, source) {
            Ok(full) => Self::DiskFull(full),
            Err(source) => Self::io(path, action, source),
        }
    }

    pub(crate) fn hdf5(
        path: impl Into<PathBuf>,
        action: &'static str,
        source: hdf5::Error,
    ) -> Self {
        Self::Hdf5 {
            path: path.into(),
            action,
            source,
        }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Corrupt {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
