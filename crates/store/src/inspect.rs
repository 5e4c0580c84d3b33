//! [`inspect`]: what a store holds, how far it got and how big it is.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Result, StoreError};
use crate::fingerprint::Fingerprint;
use crate::journal;
use crate::layout::Dims;
use crate::reader::StoreReader;

/// Description of a store, finished or in progress.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// The store's path.
    pub path: PathBuf,
    /// `true` for a final HDF5 file, `false` for a store in progress (parts directory).
    pub finished: bool,
    /// The fingerprint.
    pub fingerprint: Fingerprint,
    /// Shape: windows covered, N, d.
    pub dims: Dims,
    /// Windows in the whole split.
    pub windows_total: usize,
    /// First global window covered.
    pub window_start: usize,
    /// One past the last global window covered.
    pub window_end: usize,
    /// Windows written so far.
    pub completed: usize,
    /// Bytes on disk (final file, or all files of the parts directory).
    pub disk_bytes: u64,
    /// Bytes of the embedding values alone, `windows * n_vars * d_model * dtype size`.
    pub values_bytes: u64,
}

/// Describes the store at `path`.
pub fn inspect(path: &Path) -> Result<Summary> {
    let reader = StoreReader::open(path)?;
    let disk_bytes = if reader.is_finished() {
        size_of(path)?
    } else {
        let dir = journal::parts_dir(path);
        let mut total = 0;
        for entry in
            std::fs::read_dir(&dir).map_err(|e| StoreError::io(&dir, "list parts directory", e))?
        {
            let entry = entry.map_err(|e| StoreError::io(&dir, "list parts directory", e))?;
            total += size_of(&entry.path())?;
        }
        total
    };
    let dims = reader.dims();
    let fingerprint = reader.fingerprint().clone();
    let values_bytes = (dims.windows * dims.window_len() * fingerprint.dtype.size()) as u64;
    let range = reader.window_range();
    Ok(Summary {
        path: path.to_path_buf(),
        finished: reader.is_finished(),
        dims,
        windows_total: reader.windows_total(),
        window_start: range.start,
        window_end: range.end,
        completed: reader.completed(),
        disk_bytes,
        values_bytes,
        fingerprint,
    })
}

fn size_of(path: &Path) -> Result<u64> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| StoreError::io(path, "stat file", e))
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.finished {
            "finished"
        } else {
            "in progress"
        };
        writeln!(f, "store     {} ({state})", self.path.display())?;
        writeln!(
            f,
            "progress  {}/{} windows (range {}..{} of {})",
            self.completed,
            self.dims.windows,
            self.window_start,
            self.window_end,
            self.windows_total
        )?;
        writeln!(
            f,
            "shape     [{}, {}, {}] {:?}",
            self.dims.windows, self.dims.n_vars, self.dims.d_model, self.fingerprint.dtype
        )?;
        writeln!(
            f,
            "size      {} bytes on disk, {} bytes of values",
            self.disk_bytes, self.values_bytes
        )?;
        writeln!(f, "fingerprint")?;
        for (field, value) in self.fingerprint.to_json_map() {
            writeln!(f, "  {field:<16} {value}")?;
        }
        Ok(())
    }
}
