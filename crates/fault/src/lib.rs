//! TimeKD's fault model, shared by every crate that writes files.
//!
//! - [`DiskFull`]: what a writer returns when the disk, a quota or the file-size limit is
//!   exhausted (`ENOSPC`, `EDQUOT`, `EFBIG`): the file, the bytes it needed, and that the
//!   earlier durable state is intact, so a rerun after freeing space continues.
//! - [`point`]: a named fault-injection point. It does nothing unless the crate is built
//!   with the feature `inject`, which only test builds turn on (as a dev-dependency
//!   feature); then the environment variable `TIMEKD_FAULT` selects a point, a hit and an
//!   action (see [`point`]).
//!
//! ```
//! use timekd_fault::DiskFull;
//!
//! let enospc = std::io::Error::from_raw_os_error(28);
//! let full = DiskFull::from_io("out/model.safetensors".as_ref(), 4096, enospc).unwrap();
//! assert_eq!(full.bytes, 4096);
//! let other = std::io::Error::from_raw_os_error(13); // EACCES: not a disk-full error
//! assert!(DiskFull::from_io("out/x".as_ref(), 1, other).is_err());
//! ```

#![warn(missing_docs)]

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// A write failed because the disk, a quota or the process's file-size limit is exhausted.
#[derive(Debug)]
pub struct DiskFull {
    /// The file being written.
    pub path: PathBuf,
    /// Bytes the write needed in all (the whole file, or an estimate of it).
    pub bytes: u64,
    /// The operating system's error (`ENOSPC`, `EDQUOT` or `EFBIG`).
    pub source: io::Error,
}

impl DiskFull {
    /// `Ok` when `error` says space ran out while writing `bytes` bytes to `path`
    /// ([`is_disk_full`]); otherwise `Err` with the error unchanged.
    pub fn from_io(path: &Path, bytes: u64, error: io::Error) -> Result<DiskFull, io::Error> {
        if is_disk_full(&error) {
            Ok(DiskFull {
                path: path.to_path_buf(),
                bytes,
                source: error,
            })
        } else {
            Err(error)
        }
    }
}

impl fmt::Display for DiskFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: out of space writing {} bytes ({}): {}; earlier work is intact: free space (or \
             raise the quota / `ulimit -f`) and rerun the same command",
            self.path.display(),
            self.bytes,
            human(self.bytes),
            self.source
        )
    }
}

/// `bytes` in the largest binary unit that keeps a number of at least 1, e.g. `3.0 MiB`.
fn human(bytes: u64) -> String {
    let units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

/// The system error is part of the message, not a separate source (printed once).
impl std::error::Error for DiskFull {}

/// Whether `error` means no space: the disk is full (`ENOSPC`), a quota is exhausted
/// (`EDQUOT`) or the file would exceed the process's size limit (`EFBIG`, `ulimit -f`).
pub fn is_disk_full(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded | io::ErrorKind::FileTooLarge
    )
}

/// A fault-injection point named `name` (dotted, e.g. `store.assemble.window`).
///
/// Without the feature `inject` this is an empty inline function. With it, the environment
/// variable `TIMEKD_FAULT` (read once) is `NAME[:HIT[:ACTION]]`: at the `HIT`-th call
/// (1-based, default 1) of the point `NAME` the process acts, `ACTION` being `kill` (the
/// default: SIGKILL itself, as a crash or a node failure would), `term` (raise SIGTERM, as a
/// scheduler's time limit would) or `stop` (SIGSTOP itself, e.g. to hold a lock while a test
/// starts a second process). `TIMEKD_FAULT=trace` prints every call to stderr as
/// `timekd-fault: NAME #N`, so a test can enumerate the points an operation passes.
#[inline(always)]
pub fn point(name: &'static str) {
    #[cfg(feature = "inject")]
    inject::hit(name);
    #[cfg(not(feature = "inject"))]
    let _ = name;
}

/// Makes `command`'s child fail writes past `bytes` per file with `EFBIG` (the file-size
/// limit `RLIMIT_FSIZE`, with `SIGXFSZ` ignored): a full disk for tests, without root.
#[cfg(feature = "inject")]
pub fn limit_file_size(command: &mut std::process::Command, bytes: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let rlimit = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &rlimit) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(feature = "inject")]
mod inject {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};

    /// The parsed `TIMEKD_FAULT`.
    enum Plan {
        Off,
        Trace,
        At {
            name: String,
            hit: u64,
            signal: libc::c_int,
        },
    }

    fn plan() -> &'static Plan {
        static PLAN: OnceLock<Plan> = OnceLock::new();
        PLAN.get_or_init(|| {
            let Ok(spec) = std::env::var("TIMEKD_FAULT") else {
                return Plan::Off;
            };
            if spec == "trace" {
                return Plan::Trace;
            }
            let mut fields = spec.split(':');
            let name = fields.next().unwrap_or_default().to_string();
            let hit = fields.next().map_or(1, |h| {
                h.parse()
                    .unwrap_or_else(|_| panic!("TIMEKD_FAULT={spec}: bad hit number {h:?}"))
            });
            let signal = match fields.next().unwrap_or("kill") {
                "kill" => libc::SIGKILL,
                "term" => libc::SIGTERM,
                "stop" => libc::SIGSTOP,
                other => panic!("TIMEKD_FAULT={spec}: unknown action {other:?}"),
            };
            Plan::At { name, hit, signal }
        })
    }

    pub(super) fn hit(name: &'static str) {
        static HITS: Mutex<Option<HashMap<&'static str, u64>>> = Mutex::new(None);
        let plan = plan();
        if matches!(plan, Plan::Off) {
            return;
        }
        let count = {
            let mut hits = HITS.lock().unwrap_or_else(|e| e.into_inner());
            let count = hits
                .get_or_insert_with(HashMap::new)
                .entry(name)
                .or_insert(0);
            *count += 1;
            *count
        };
        match plan {
            Plan::Trace => eprintln!("timekd-fault: {name} #{count}"),
            Plan::At {
                name: wanted,
                hit,
                signal,
            } if wanted == name && *hit == count => {
                eprintln!("timekd-fault: {name} #{count}: signal {signal}");
                // SAFETY: raising a signal in the calling thread has no memory effects.
                unsafe { libc::raise(*signal) };
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_full_kinds_are_recognised() {
        for errno in [28, 122, 27] {
            let err = io::Error::from_raw_os_error(errno);
            assert!(is_disk_full(&err), "errno {errno}: {err}");
        }
        assert!(!is_disk_full(&io::Error::from_raw_os_error(5)));
        let full = DiskFull::from_io(
            Path::new("a/b.bin"),
            3 << 20,
            io::Error::from_raw_os_error(122),
        )
        .unwrap();
        let message = full.to_string();
        assert!(
            message.starts_with("a/b.bin: out of space writing 3145728 bytes (3.0 MiB)"),
            "{message}"
        );
        assert_eq!(human(1000), "1000 bytes");
        assert_eq!(human(1536), "1.5 KiB");
    }
}
