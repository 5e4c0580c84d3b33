//! Durable file replacement: write to a temporary sibling, fsync, rename, fsync the directory.
//! After a crash a path holds either its old content or the complete new content; a write
//! that fails (e.g. the disk is full) removes its temporary file and leaves the path as it was.

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
    let written = File::create(&tmp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(StoreError::write(path, bytes.len() as u64, "write file", e));
    }
    commit(&tmp, path)
}

/// Fsyncs the finished file `tmp`, renames it to `path` and fsyncs the directory. On a
/// failure before the rename, `tmp` is removed.
pub(crate) fn commit(tmp: &Path, path: &Path) -> Result<()> {
    if let Err(e) = File::open(tmp).and_then(|f| f.sync_all()) {
        let bytes = std::fs::metadata(tmp).map_or(0, |m| m.len());
        let _ = std::fs::remove_file(tmp);
        return Err(StoreError::write(path, bytes, "fsync file", e));
    }
    timekd_fault::point("store.commit.before_rename");
    std::fs::rename(tmp, path)
        .map_err(|e| StoreError::io(path, "rename temporary file into place", e))?;
    timekd_fault::point("store.commit.after_rename");
    sync_parent(path)
}

/// Fsyncs the directory containing `path`, making a rename or removal in it durable.
pub(crate) fn sync_parent(path: &Path) -> Result<()> {
    let dir = parent(path);
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir, "fsync directory", e))
}

/// The directory `path` is in (`.` for a bare file name).
pub(crate) fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
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

/// Refuses to start writing about `bytes` bytes to `path` when its file system has less free
/// space than that (`statvfs`'s blocks available to unprivileged users). Quotas and the
/// file-size limit are not seen here; their errors come from the writes themselves.
pub(crate) fn check_free_space(path: &Path, bytes: u64) -> Result<()> {
    let dir = parent(path);
    let Ok(c_dir) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return Ok(());
    };
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_dir` is a valid C string and `stats` is written by statvfs on success.
    if unsafe { libc::statvfs(c_dir.as_ptr(), stats.as_mut_ptr()) } != 0 {
        return Ok(()); // Unknown: let the writes tell.
    }
    // SAFETY: statvfs returned 0, so it filled `stats`.
    let stats = unsafe { stats.assume_init() };
    // Both are u64 on 64-bit Linux but narrower on some targets.
    #[allow(clippy::useless_conversion)]
    let free = u64::from(stats.f_bavail).saturating_mul(u64::from(stats.f_frsize));
    if free >= bytes {
        return Ok(());
    }
    let source = std::io::Error::new(
        std::io::ErrorKind::StorageFull,
        format!("only {free} bytes are free on {}", dir.display()),
    );
    Err(StoreError::write(path, bytes, "check free space", source))
}
