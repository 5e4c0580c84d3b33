//! The `<store>.parts/` directory of a store in progress: its manifest (the header as JSON),
//! its writer lock, and its part files.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::durable::{TMP_SUFFIX, remove_if_exists, sync_parent, write_atomic};
use crate::error::{Result, StoreError};
use crate::fingerprint::now_rfc3339;
use crate::layout::Header;
use crate::part::{self, Part, PartShape};

const MANIFEST: &str = "manifest.json";
const LOCK: &str = "lock";
const PART_PREFIX: &str = "part-";
const PART_SUFFIX: &str = ".bin";

/// The parts directory of the store at `store`: `<store>.parts`.
pub(crate) fn parts_dir(store: &Path) -> PathBuf {
    let mut name = OsString::from(store.as_os_str());
    name.push(".parts");
    PathBuf::from(name)
}

/// Path of the part with sequence number `seq`.
pub(crate) fn part_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{PART_PREFIX}{seq:08}{PART_SUFFIX}"))
}

/// The header recorded when the store was started, if any.
pub(crate) fn read_manifest(dir: &Path) -> Result<Option<Header>> {
    let path = dir.join(MANIFEST);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io(&path, "read manifest", e)),
    };
    let header: Header = serde_json::from_str(&text)
        .map_err(|e| StoreError::corrupt(&path, format!("invalid manifest: {e}")))?;
    header
        .validate()
        .map_err(|reason| StoreError::corrupt(&path, reason))?;
    Ok(Some(header))
}

/// Records `header` as the manifest, durably.
pub(crate) fn write_manifest(dir: &Path, header: &Header) -> Result<()> {
    let path = dir.join(MANIFEST);
    let text = serde_json::to_string_pretty(header)
        .map_err(|e| StoreError::invalid(&path, format!("cannot serialize manifest: {e}")))?;
    write_atomic(&path, text.as_bytes())
}

/// Takes the exclusive writer lock of the directory (created if needed). The lock lasts as
/// long as the returned file is open, and dies with the process (`flock`). The holder writes
/// `pid P on host H since T` into the lock file, only so a refused writer can say who holds
/// it: a lock file left by a dead process is not held, whatever it says.
pub(crate) fn lock(dir: &Path) -> Result<File> {
    std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, "create parts directory", e))?;
    let path = dir.join(LOCK);
    let mut file = File::options()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::io(&path, "open lock file", e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => "a process that has not said who it is".to_string(),
                text => text.to_string(),
            };
            return Err(StoreError::Locked { path, holder });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(StoreError::io(&path, "lock", e)),
    }
    let holder = format!(
        "pid {} on host {} since {}",
        std::process::id(),
        hostname(),
        now_rfc3339()
    );
    file.set_len(0)
        .and_then(|()| file.write_all_at(holder.as_bytes(), 0))
        .map_err(|e| StoreError::write(&path, holder.len() as u64, "write lock file", e))?;
    Ok(file)
}

/// This host's name, or `unknown`.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is writable for its length; gethostname NUL-terminates within it or
    // truncates, and the last byte stays 0.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(name) if ok && !name.is_empty() => name.to_string(),
        _ => "unknown".to_string(),
    }
}

/// What a parts directory holds.
pub(crate) struct Scan {
    /// Valid parts, by sequence number.
    pub parts: Vec<Part>,
    /// Unusable part files and why.
    pub damaged: Vec<(PathBuf, String)>,
    /// Leftover temporary files of interrupted writes.
    pub temps: Vec<PathBuf>,
    /// The sequence number for the next part.
    pub next_seq: u64,
}

/// Lists and validates the parts of `dir` for `header`. A part is damaged when its file is
/// invalid (see [`part::open`]), or holds a window outside the store's range or already
/// held by an earlier part.
pub(crate) fn scan(dir: &Path, header: &Header, shape: &PartShape, verify: bool) -> Result<Scan> {
    let mut numbered = Vec::new();
    let mut temps = Vec::new();
    let entries =
        std::fs::read_dir(dir).map_err(|e| StoreError::io(dir, "list parts directory", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io(dir, "list parts directory", e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(TMP_SUFFIX) {
            temps.push(entry.path());
        } else if let Some(seq) = name
            .strip_prefix(PART_PREFIX)
            .and_then(|rest| rest.strip_suffix(PART_SUFFIX))
            .and_then(|digits| digits.parse::<u64>().ok())
        {
            numbered.push((seq, entry.path()));
        }
    }
    numbered.sort();
    let next_seq = numbered.last().map_or(0, |(seq, _)| seq + 1);
    let mut seen = HashSet::new();
    let mut parts = Vec::new();
    let mut damaged = Vec::new();
    for (_, path) in numbered {
        let checked = part::open(&path, shape, verify).and_then(|p| {
            match p
                .windows
                .iter()
                .find(|w| !header.range().contains(w) || seen.contains(*w))
            {
                Some(w) => Err(format!("window {w} is outside the store or already stored")),
                None => Ok(p),
            }
        });
        match checked {
            Ok(p) => {
                seen.extend(p.windows.iter().copied());
                parts.push(p);
            }
            Err(reason) => damaged.push((path, reason)),
        }
    }
    Ok(Scan {
        parts,
        damaged,
        temps,
        next_seq,
    })
}

/// Removes everything but the lock file from the directory, the manifest first (a
/// directory without a manifest is treated as empty).
pub(crate) fn clear(dir: &Path) -> Result<()> {
    remove_if_exists(&dir.join(MANIFEST))?;
    let entries =
        std::fs::read_dir(dir).map_err(|e| StoreError::io(dir, "list parts directory", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io(dir, "list parts directory", e))?;
        if entry.file_name() != LOCK {
            remove_if_exists(&entry.path())?;
        }
    }
    sync_parent(&dir.join(MANIFEST))
}

/// Removes the whole directory (after the final file is in place).
pub(crate) fn remove(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(StoreError::io(dir, "remove parts directory", e))
        }
        _ => sync_parent(dir),
    }
}
