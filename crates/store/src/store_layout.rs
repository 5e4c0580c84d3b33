//! [`StoreLayout`]: where the store of a (dataset, output length, split) lives under a root.
//! The only code that builds store paths; extraction and training both ask it.

use std::path::{Path, PathBuf};

/// Stores under one root directory: `<root>/<dataset>/<H>/<split>.h5`.
///
/// ```
/// use timekd_store::StoreLayout;
///
/// let layout = StoreLayout::new("runs/embeddings");
/// let path = layout.store("ETTh1", 24, "train");
/// assert_eq!(path, std::path::Path::new("runs/embeddings/ETTh1/24/train.h5"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreLayout {
    root: PathBuf,
}

impl StoreLayout {
    /// Stores under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StoreLayout { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The store of `split` (`train`, `val`, ...) of `dataset` at output length `output_len`.
    pub fn store(&self, dataset: &str, output_len: usize, split: &str) -> PathBuf {
        self.root
            .join(dataset)
            .join(output_len.to_string())
            .join(format!("{split}.h5"))
    }
}
