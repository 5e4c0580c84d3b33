//! Teacher embeddings from the stores `timekd extract` writes (feature `store`): the
//! [`EmbeddingSource`] of a [`StoreReader`], found through the same
//! [`StoreLayout`] and [`DataSource`] name extraction used.

use std::path::PathBuf;

use timekd_data::{DataSource, Split};
use timekd_store::{StoreError, StoreLayout, StoreReader, Verification};

use crate::embeddings::EmbeddingSource;
use crate::error::{Result, SourceError, StudentError};

/// The embeddings of one split, read from its store: the rows of the split's variables,
/// found by name among the store's columns (so a run on the target alone, `S`, reads the
/// target's row of an all-variable store).
pub struct StoreEmbeddings {
    reader: StoreReader,
    /// Store rows of the split's variables, in the split's order; `None` when they are the
    /// store's own, in order.
    rows: Option<Vec<usize>>,
}

impl StoreEmbeddings {
    /// Opens the store of `split` of `source`'s dataset (at the split's dataset's H) under
    /// `layout`, and checks it was extracted from these bytes, lengths and split and is
    /// finished. A missing or unfinished store is [`StudentError::MissingStore`]; one without
    /// a variable of the split is [`StudentError::StoreMismatch`].
    pub fn open(layout: &StoreLayout, source: &DataSource, split: &Split<'_>) -> Result<Self> {
        let dataset = split.dataset();
        let kind = split.kind();
        let path = layout.store(source.name(), dataset.output_len(), kind.name());
        let missing = |unfinished| StudentError::MissingStore {
            path: path.clone(),
            split: kind.name(),
            unfinished,
        };
        let reader = StoreReader::open(&path).map_err(|_| missing(false))?;
        let f = reader.fingerprint();
        if f.data_sha256 != source.sha256()
            || f.input_len != dataset.input_len()
            || f.output_len != dataset.output_len()
            || f.split != kind.name()
        {
            return Err(StudentError::StoreMismatch {
                path,
                message: format!(
                    "the store was extracted for other data (sha256 {}, L {}, H {}, split {}); \
                     this run has sha256 {}, L {}, H {}, split {kind}",
                    f.data_sha256,
                    f.input_len,
                    f.output_len,
                    f.split,
                    source.sha256(),
                    dataset.input_len(),
                    dataset.output_len()
                ),
            });
        }
        if !reader.is_finished() {
            return Err(missing(true));
        }
        let rows = store_rows(&f.columns, dataset.var_names()).map_err(|message| {
            StudentError::StoreMismatch {
                path: path.clone(),
                message,
            }
        })?;
        Ok(StoreEmbeddings { reader, rows })
    }

    /// Reads the whole store and checks it against the checksums recorded when it was
    /// finished ([`timekd_store::verify`]; about a second per GB). A mismatch is
    /// [`StudentError::StoreDamaged`] naming the first bad window; a store finished before
    /// checksums were recorded gives [`Verification::NoChecksum`].
    pub fn verify(&self) -> Result<Verification> {
        let path = self.reader.path();
        timekd_store::verify(path).map_err(|e| match e {
            StoreError::ChecksumMismatch { .. } | StoreError::Corrupt { .. } => {
                StudentError::StoreDamaged {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                }
            }
            other => StudentError::Embeddings(Box::new(other)),
        })
    }

    /// The reader underneath.
    pub fn reader(&self) -> &StoreReader {
        &self.reader
    }

    /// The store's file.
    pub fn path(&self) -> PathBuf {
        self.reader.path().to_path_buf()
    }
}

/// Where each of `wanted` is among `columns`; `None` when they are `columns` itself.
fn store_rows(
    columns: &[String],
    wanted: &[String],
) -> std::result::Result<Option<Vec<usize>>, String> {
    if columns == wanted {
        return Ok(None);
    }
    let rows: Vec<Option<usize>> = wanted
        .iter()
        .map(|name| columns.iter().position(|c| c == name))
        .collect();
    let missing: Vec<&str> = wanted
        .iter()
        .zip(&rows)
        .filter(|(_, row)| row.is_none())
        .map(|(name, _)| name.as_str())
        .collect();
    if missing.is_empty() {
        return Ok(Some(rows.into_iter().flatten().collect()));
    }
    Err(format!(
        "the store has no embeddings of {} (its variables: {}); extract the stores with every \
         variable the run reads (`timekd extract` without --columns, whatever --features the \
         training uses)",
        missing.join(", "),
        columns.join(", ")
    ))
}

impl EmbeddingSource for StoreEmbeddings {
    fn dims(&self) -> (usize, usize, usize) {
        let d = self.reader.dims();
        let n = self.rows.as_ref().map_or(d.n_vars, Vec::len);
        (d.windows, n, d.d_model)
    }

    fn read_batch(&mut self, windows: &[usize]) -> Result<Vec<f32>, SourceError> {
        let all = self.reader.read_batch(windows)?;
        let Some(rows) = &self.rows else {
            return Ok(all);
        };
        // [windows, N_store, d] -> [windows, N, d]
        let d = self.reader.dims();
        let (n_store, width) = (d.n_vars, d.d_model);
        let mut picked = Vec::with_capacity(windows.len() * rows.len() * width);
        for window in all.chunks_exact(n_store * width) {
            for &row in rows {
                picked.extend_from_slice(&window[row * width..(row + 1) * width]);
            }
        }
        Ok(picked)
    }
}

#[cfg(test)]
mod tests {
    use super::store_rows;

    #[test]
    fn rows_are_found_by_name() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let store = names(&["a", "b", "OT"]);
        assert_eq!(store_rows(&store, &store).unwrap(), None);
        assert_eq!(store_rows(&store, &names(&["OT"])).unwrap(), Some(vec![2]));
        assert_eq!(
            store_rows(&store, &names(&["b", "a", "OT"])).unwrap(),
            Some(vec![1, 0, 2])
        );
        let err = store_rows(&names(&["a", "b"]), &names(&["OT"])).unwrap_err();
        assert!(
            err.contains("no embeddings of OT") && err.contains("a, b"),
            "{err}"
        );
    }
}
