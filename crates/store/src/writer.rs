//! [`StoreWriter`]: crash-safe, resumable writing of one store.

use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::durable::{remove_if_exists, tmp_path};
use crate::error::{Result, StoreError};
use crate::final_file::{self, FinalFile};
use crate::fingerprint::{Fingerprint, SCHEMA_VERSION, now_rfc3339};
use crate::journal;
use crate::layout::Header;
use crate::part::{self, Part, PartShape};

/// Default size of one part file: at most this much finished work is lost in a crash.
const DEFAULT_PART_BYTES: usize = 8 << 20;

/// Options of [`StoreWriter::open`].
#[derive(Clone, Debug, Default)]
pub struct WriterOptions {
    /// Delete an existing store at the path (final file and parts) and start afresh,
    /// instead of resuming it (same fingerprint) or failing (different fingerprint).
    pub overwrite: bool,
    /// Windows per part file; `None`: as many as fit in 8 MiB, at least one. Buffered
    /// windows not yet in a part are lost in a crash, so this bounds lost work and memory.
    pub part_windows: Option<usize>,
    /// Global window range this writer covers (a shard, see [`crate::shard_range`]);
    /// `None`: all `windows_total` windows.
    pub range: Option<Range<usize>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum WindowState {
    Missing,
    Buffered,
    Durable,
}

/// Writes one store, resuming whatever an earlier (possibly killed) writer left.
///
/// Windows may be put in any order; each is put once. Call [`StoreWriter::finish`] when
/// [`StoreWriter::missing`] was fully written to produce the final HDF5 file.
pub struct StoreWriter {
    path: PathBuf,
    dir: PathBuf,
    header: Header,
    shape: PartShape,
    state: Vec<WindowState>,
    durable: usize,
    parts: Vec<Part>,
    pending_windows: Vec<usize>,
    pending_bytes: Vec<u8>,
    part_windows: usize,
    next_seq: u64,
    already_final: bool,
    discarded: Vec<String>,
    _lock: File,
}

impl StoreWriter {
    /// Opens the store at `path` for `fingerprint` over `windows_total` windows: creates
    /// it, or resumes it when a store with an equal fingerprint (all fields but `created`
    /// and `tool_version`) and window range exists. A different one is
    /// [`StoreError::FingerprintMismatch`] unless `options.overwrite`. Damaged part files
    /// are deleted (their windows become missing again, see [`StoreWriter::discarded`]).
    pub fn open(
        path: &Path,
        mut fingerprint: Fingerprint,
        windows_total: usize,
        options: WriterOptions,
    ) -> Result<Self> {
        fingerprint.schema_version = SCHEMA_VERSION;
        fingerprint.created = now_rfc3339();
        let range = options.range.clone().unwrap_or(0..windows_total);
        let requested = Header {
            fingerprint,
            windows_total,
            window_start: range.start,
            window_end: range.end,
        };
        requested
            .validate()
            .map_err(|reason| StoreError::invalid(path, reason))?;
        let shape = PartShape {
            n_vars: requested.fingerprint.n_vars,
            d_model: requested.fingerprint.d_model,
            dtype: requested.fingerprint.dtype,
        };
        let part_windows = options
            .part_windows
            .unwrap_or((DEFAULT_PART_BYTES / shape.window_bytes()).max(1));
        if part_windows == 0 {
            return Err(StoreError::invalid(path, "part_windows must be at least 1"));
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| StoreError::io(parent, "create directory", e))?;
        }
        let dir = journal::parts_dir(path);
        let lock = journal::lock(&dir)?;
        if options.overwrite {
            remove_if_exists(path)?;
            remove_if_exists(&tmp_path(path))?;
            journal::clear(&dir)?;
        }
        let mut writer = Self {
            path: path.to_path_buf(),
            dir,
            state: vec![WindowState::Missing; range.len()],
            header: requested.clone(),
            shape,
            durable: 0,
            parts: Vec::new(),
            pending_windows: Vec::new(),
            pending_bytes: Vec::new(),
            part_windows,
            next_seq: 0,
            already_final: false,
            discarded: Vec::new(),
            _lock: lock,
        };
        if path.exists() {
            let existing = FinalFile::open(path)?;
            writer.adopt(existing.header().clone(), &requested)?;
            writer.already_final = true;
            writer.state.fill(WindowState::Durable);
            writer.durable = writer.state.len();
            journal::clear(&writer.dir)?;
            return Ok(writer);
        }
        match journal::read_manifest(&writer.dir)? {
            Some(stored) => writer.adopt(stored, &requested)?,
            None => {
                journal::clear(&writer.dir)?;
                journal::write_manifest(&writer.dir, &requested)?;
            }
        }
        writer.recover()?;
        Ok(writer)
    }

    /// Takes `stored` as the header if it matches `requested`.
    fn adopt(&mut self, stored: Header, requested: &Header) -> Result<()> {
        let fields = stored.differences(requested);
        if !fields.is_empty() {
            return Err(StoreError::FingerprintMismatch {
                path: self.path.clone(),
                fields,
            });
        }
        self.header = stored;
        Ok(())
    }

    /// Loads the valid parts and deletes temporary and damaged files.
    fn recover(&mut self) -> Result<()> {
        let scan = journal::scan(&self.dir, &self.header, &self.shape, true)?;
        for tmp in &scan.temps {
            remove_if_exists(tmp)?;
        }
        for (path, reason) in &scan.damaged {
            remove_if_exists(path)?;
            self.discarded.push(format!("{}: {reason}", path.display()));
        }
        for part in &scan.parts {
            for &w in &part.windows {
                self.state[w - self.header.window_start] = WindowState::Durable;
            }
            self.durable += part.windows.len();
        }
        self.parts = scan.parts;
        self.next_seq = scan.next_seq;
        Ok(())
    }

    /// The store's fingerprint (with the `created` time of its first writer).
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.header.fingerprint
    }

    /// Global window indices this writer covers.
    pub fn window_range(&self) -> Range<usize> {
        self.header.range()
    }

    /// Windows neither durable nor buffered: the work left, in ascending order.
    pub fn missing(&self) -> Vec<usize> {
        let start = self.header.window_start;
        self.state
            .iter()
            .enumerate()
            .filter(|(_, s)| **s == WindowState::Missing)
            .map(|(i, _)| start + i)
            .collect()
    }

    /// Windows durably on disk (survive a crash).
    pub fn completed(&self) -> usize {
        self.durable
    }

    /// Damaged part files deleted when the store was opened, with the reason for each.
    pub fn discarded(&self) -> &[String] {
        &self.discarded
    }

    /// Adds global window `window` with values `[n_vars, d_model]` row-major. Writes a part
    /// file once `part_windows` windows are buffered.
    pub fn put(&mut self, window: usize, embedding: &[f32]) -> Result<()> {
        let range = self.header.range();
        if !range.contains(&window) {
            return Err(StoreError::invalid(
                &self.path,
                format!(
                    "window {window} is outside this store's range {}..{}",
                    range.start, range.end
                ),
            ));
        }
        if embedding.len() != self.shape.window_values() {
            return Err(StoreError::invalid(
                &self.path,
                format!(
                    "window {window} has {} values, expected n_vars * d_model = {} * {}",
                    embedding.len(),
                    self.shape.n_vars,
                    self.shape.d_model
                ),
            ));
        }
        let state = &mut self.state[window - range.start];
        if *state != WindowState::Missing {
            return Err(StoreError::invalid(
                &self.path,
                format!("window {window} is already written; put only windows from missing()"),
            ));
        }
        *state = WindowState::Buffered;
        self.shape.dtype.encode(embedding, &mut self.pending_bytes);
        self.pending_windows.push(window);
        if self.pending_windows.len() >= self.part_windows {
            self.flush()?;
        }
        Ok(())
    }

    /// Makes buffered windows durable now (one part file).
    pub fn flush(&mut self) -> Result<()> {
        if self.pending_windows.is_empty() {
            return Ok(());
        }
        let path = journal::part_path(&self.dir, self.next_seq);
        let part = part::write(
            &path,
            &self.shape,
            &self.pending_windows,
            &self.pending_bytes,
        )?;
        for &w in &self.pending_windows {
            self.state[w - self.header.window_start] = WindowState::Durable;
        }
        self.durable += self.pending_windows.len();
        self.parts.push(part);
        self.next_seq += 1;
        self.pending_windows.clear();
        self.pending_bytes.clear();
        timekd_fault::point("store.part.written");
        Ok(())
    }

    /// Flushes, assembles the final HDF5 file (temporary name, fsync, atomic rename; with
    /// the checksums [`crate::verify`] checks) and removes the parts directory. Fails with
    /// [`StoreError::Incomplete`] while windows are missing, and with
    /// [`StoreError::DiskFull`] (before writing, when the file system's free space is
    /// short, or when a write fails for want of space) leaving the parts intact. Returns the
    /// store's path.
    pub fn finish(mut self) -> Result<PathBuf> {
        self.flush()?;
        if !self.already_final {
            if self.durable < self.state.len() {
                let missing = self.missing();
                return Err(StoreError::Incomplete {
                    path: self.path.clone(),
                    missing: missing.len(),
                    first: missing.first().copied().unwrap_or(self.header.window_start),
                });
            }
            let start = self.header.window_start;
            let mut location = vec![(0usize, 0usize); self.state.len()];
            for (p, part) in self.parts.iter().enumerate() {
                for (position, &w) in part.windows.iter().enumerate() {
                    location[w - start] = (p, position);
                }
            }
            let (parts, shape) = (&self.parts, &self.shape);
            final_file::write(&self.path, &self.header, &mut |window, out| {
                let (p, position) = location[window - start];
                parts[p].read_window(shape, position, out)
            })?;
        }
        timekd_fault::point("store.finish.committed");
        journal::remove(&self.dir)?;
        Ok(self.path.clone())
    }
}
