//! [`StoreReader`]: random access to a finished store, or to the completed windows of one
//! still being written.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::error::{Result, StoreError};
use crate::final_file::{DIGEST_LEN, FinalFile};
use crate::fingerprint::Fingerprint;
use crate::journal;
use crate::layout::{Dims, Header};
use crate::part::{Part, PartShape};

enum Source {
    Final(FinalFile),
    /// A store in progress: its valid parts when opened, and where each window lives.
    Parts {
        header: Header,
        shape: PartShape,
        parts: Vec<Part>,
        location: HashMap<usize, (usize, usize)>,
    },
}

/// Reads a store by global window index. Values come back as `f32` whatever the stored
/// dtype.
///
/// A store in progress is read from its part files as they were when the reader was
/// opened (checked for size and shape, not checksum): only completed windows are
/// readable; reopen to see newer ones. If its writer finishes meanwhile, reads fail with
/// an I/O error naming the vanished part: reopen then.
pub struct StoreReader {
    path: PathBuf,
    source: Source,
}

impl StoreReader {
    /// Opens the final file at `path` if it exists, else the parts directory of a store
    /// in progress.
    pub fn open(path: &Path) -> Result<Self> {
        let source = if path.exists() {
            Source::Final(FinalFile::open(path)?)
        } else {
            let dir = journal::parts_dir(path);
            let header = journal::read_manifest(&dir)?.ok_or_else(|| StoreError::NotFound {
                path: path.to_path_buf(),
            })?;
            let shape = PartShape {
                n_vars: header.fingerprint.n_vars,
                d_model: header.fingerprint.d_model,
                dtype: header.fingerprint.dtype,
            };
            let scan = journal::scan(&dir, &header, &shape, false)?;
            if let Some((part, reason)) = scan.damaged.first() {
                return Err(StoreError::corrupt(part, reason.clone()));
            }
            let mut location = HashMap::new();
            for (p, part) in scan.parts.iter().enumerate() {
                for (position, &w) in part.windows.iter().enumerate() {
                    location.insert(w, (p, position));
                }
            }
            Source::Parts {
                header,
                shape,
                parts: scan.parts,
                location,
            }
        };
        Ok(Self {
            path: path.to_path_buf(),
            source,
        })
    }

    pub(crate) fn header(&self) -> &Header {
        match &self.source {
            Source::Final(file) => file.header(),
            Source::Parts { header, .. } => header,
        }
    }

    /// The store's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The store's fingerprint.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.header().fingerprint
    }

    /// Shape of the store: windows covered, N, d.
    pub fn dims(&self) -> Dims {
        self.header().dims()
    }

    /// Global window indices this store covers (a shard covers part of the split).
    pub fn window_range(&self) -> Range<usize> {
        self.header().range()
    }

    /// Windows in the whole split (equals `dims().windows` unless this is a shard).
    pub fn windows_total(&self) -> usize {
        self.header().windows_total
    }

    /// Whether this is a finished store (the final HDF5 file), not one in progress.
    pub fn is_finished(&self) -> bool {
        matches!(self.source, Source::Final(_))
    }

    /// The checksum recorded in a finished store: lower-case hex SHA-256 of every window's
    /// stored bytes (little-endian, the store's dtype) in window order. `None` for a store in
    /// progress, or one finished before checksums were recorded. [`crate::verify`] checks it.
    pub fn checksum(&self) -> Option<&str> {
        match &self.source {
            Source::Final(file) => file.checksum(),
            Source::Parts { .. } => None,
        }
    }

    /// The recorded digest of every window of a finished store with a checksum.
    pub(crate) fn window_digests(&self) -> Result<Option<Vec<[u8; DIGEST_LEN]>>> {
        match &self.source {
            Source::Final(file) => file.window_digests(),
            Source::Parts { .. } => Ok(None),
        }
    }

    /// Number of windows that can be read.
    pub fn completed(&self) -> usize {
        match &self.source {
            Source::Final(file) => file.completed(),
            Source::Parts { location, .. } => location.len(),
        }
    }

    /// Whether global window `window` can be read.
    pub fn is_complete(&self, window: usize) -> bool {
        match &self.source {
            Source::Final(file) => file.is_complete(window),
            Source::Parts { location, .. } => location.contains_key(&window),
        }
    }

    /// Reads global window `window`: `[n_vars, d_model]` row-major.
    pub fn read(&self, window: usize) -> Result<Vec<f32>> {
        self.read_batch(&[window])
    }

    /// Reads windows `windows` (global indices, any order, repeats allowed):
    /// `[windows.len(), n_vars, d_model]` row-major.
    pub fn read_batch(&self, windows: &[usize]) -> Result<Vec<f32>> {
        let len = self.dims().window_len();
        let mut values = vec![0f32; windows.len() * len];
        for (&window, out) in windows.iter().zip(values.chunks_exact_mut(len)) {
            self.read_into(window, out)?;
        }
        Ok(values)
    }

    /// Reads global window `window` into `out` (`n_vars * d_model` long).
    pub(crate) fn read_into(&self, window: usize, out: &mut [f32]) -> Result<()> {
        if !self.is_complete(window) {
            let range = self.window_range();
            return Err(StoreError::MissingWindow {
                path: self.path.clone(),
                window,
                start: range.start,
                end: range.end,
            });
        }
        match &self.source {
            Source::Final(file) => file.read_window(window, out),
            Source::Parts {
                shape,
                parts,
                location,
                ..
            } => {
                let (p, position) = location[&window];
                parts[p].read_window(shape, position, out)
            }
        }
    }
}
