//! Writing a run's files: atomically (temporary sibling, fsync, rename, directory fsync),
//! and with running out of space reported as [`StudentError::DiskFull`] naming the file and
//! the bytes it needed.

use std::io::Write;
use std::path::Path;

use crate::error::{Result, StudentError};

/// Writes `bytes` to `path` atomically: a failed write leaves the old content.
pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    timekd_data::files::write_atomic(path, bytes)
        .map_err(|e| StudentError::write(path, bytes.len(), e))
}

/// Appends `bytes` to `path` (created if needed). A failed append is undone (the file is cut
/// back to its old length), so the file never ends in a partial record.
pub(crate) fn append_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| StudentError::io(path, e))?;
    let before = file
        .metadata()
        .map_err(|e| StudentError::io(path, e))?
        .len();
    file.write_all(bytes).map_err(|e| {
        let _ = file.set_len(before);
        StudentError::write(path, bytes.len(), e)
    })
}

/// Fsyncs the directory `dir`, making renames and removals in it durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StudentError::io(dir, e))
}
