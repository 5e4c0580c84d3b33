//! Teacher embeddings from the stores `timekd extract` writes (feature `store`): the
//! [`EmbeddingSource`] of a [`StoreReader`], found through the same
//! [`StoreLayout`] and [`DataSource`] name extraction used.

use std::path::PathBuf;

use timekd_data::{DataSource, Split};
use timekd_store::{StoreError, StoreLayout, StoreReader, Verification};

use crate::embeddings::EmbeddingSource;
use crate::error::{Result, SourceError, StudentError};

/// The embeddings of one split, read from its store.
pub struct StoreEmbeddings(StoreReader);

impl StoreEmbeddings {
    /// Opens the store of `split` of `source`'s dataset (at the split's dataset's H) under
    /// `layout`, and checks it was extracted from these bytes, lengths and split and is
    /// finished. A missing or unfinished store is [`StudentError::MissingStore`].
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
        Ok(StoreEmbeddings(reader))
    }

    /// Reads the whole store and checks it against the checksums recorded when it was
    /// finished ([`timekd_store::verify`]; about a second per GB). A mismatch is
    /// [`StudentError::StoreDamaged`] naming the first bad window; a store finished before
    /// checksums were recorded gives [`Verification::NoChecksum`].
    pub fn verify(&self) -> Result<Verification> {
        let path = self.0.path();
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
        &self.0
    }

    /// The store's file.
    pub fn path(&self) -> PathBuf {
        self.0.path().to_path_buf()
    }
}

impl EmbeddingSource for StoreEmbeddings {
    fn dims(&self) -> (usize, usize, usize) {
        let d = self.0.dims();
        (d.windows, d.n_vars, d.d_model)
    }

    fn read_batch(&mut self, windows: &[usize]) -> Result<Vec<f32>, SourceError> {
        Ok(self.0.read_batch(windows)?)
    }
}
