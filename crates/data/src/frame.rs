//! [`Frame`]: a CSV read as it is (every value column, file order, no splits, no scaling),
//! for data a trained model forecasts from.

use std::path::Path;

use chrono::NaiveDateTime;

use crate::DataError;
use crate::csv::{Table, parse_csv_as_is};

/// A CSV with a `date` column, read whole: timestamps and every value column in file
/// order. The same checks as [`Dataset`](crate::Dataset) apply (numbers only, no NaN, time
/// order, no column named twice); nothing is split or scaled.
#[derive(Debug, Clone)]
pub struct Frame {
    table: Table,
}

impl Frame {
    /// Reads a CSV file.
    pub fn read(path: &Path) -> Result<Frame, DataError> {
        let bytes = std::fs::read(path).map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Frame::from_csv_bytes(&bytes, path)
    }

    /// Reads CSV content already in memory; `source` names it in errors.
    pub fn from_csv_bytes(bytes: &[u8], source: &Path) -> Result<Frame, DataError> {
        Ok(Frame {
            table: parse_csv_as_is(bytes, source)?,
        })
    }

    /// Value column names, file order.
    pub fn columns(&self) -> &[String] {
        &self.table.names
    }
    /// Values of column `index` (of [`columns`](Self::columns)).
    pub fn column(&self, index: usize) -> &[f64] {
        &self.table.columns[index]
    }
    /// Data rows.
    pub fn rows(&self) -> usize {
        self.table.timestamps.len()
    }
    /// Timestamps of all rows.
    pub fn timestamps(&self) -> &[NaiveDateTime] {
        &self.table.timestamps
    }
    /// Where the data came from.
    pub fn path(&self) -> &Path {
        &self.table.path
    }
    /// Accepted quirks worth telling the user (see [`Dataset::notes`](crate::Dataset::notes)).
    pub fn notes(&self) -> &[String] {
        &self.table.notes
    }
}
