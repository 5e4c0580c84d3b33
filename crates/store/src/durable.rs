//! Durable file replacement: write to a temporary sibling, fsync, rename, fsync the directory.
//! After a crash a path holds either its old content or the complete new content.

use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Result, StoreError};

/// Suffix of temporary files; anything ending in it is garbage after a crash.
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// The temporary sibling `path` is written through: `<path>.tmp`.
pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(TMP_SUFFIX);
    PathBuf::from(name)
}

/// Writes `bytes` to `path` durably and atomically.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    let mut file = File::create(&tmp).map_err(|e| StoreError::io(&tmp, "create file", e))?;
    file.write_all(bytes)
        .map_err(|e| StoreError::io(&tmp, "write file", e))?;
    file.sync_all()
        .map_err(|e| StoreError::io(&tmp, "fsync file", e))?;
    drop(file);
    commit(&tmp, path)
}

/// Fsyncs the finished file `tmp`, renames it to `path` and fsyncs the directory.
pub(crate) fn commit(tmp: &Path, path: &Path) -> Result<()> {
    File::open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| StoreError::io(tmp, "fsync file", e))?;
    std::fs::rename(tmp, path)
        .map_err(|e| StoreError::io(path, "rename temporary file into place", e))?;
    sync_parent(path)
}

/// Fsyncs the directory containing `path`, making a rename or removal in it durable.
pub(crate) fn sync_parent(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir, "fsync directory", e))
}

/// Removes a file if it exists.
pub(crate) fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(StoreError::io(path, "remove file", e))
        }
        _ => Ok(()),
    }
}
