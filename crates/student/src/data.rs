//! The data of a training run: windows from `timekd-data` paired with their embeddings.

use timekd_data::Split;

use crate::checkpoint::DataInfo;
use crate::embeddings::EmbeddingSource;

/// One split's windows (history and future, from `timekd-data`) and its embeddings.
pub struct SplitData<'a> {
    /// The data split; window `i` pairs with embedding `i`.
    pub split: Split<'a>,
    /// The split's teacher embeddings.
    pub embeddings: &'a mut dyn EmbeddingSource,
}

/// The data of a training run: what it is, and its train and validation splits.
pub struct TrainData<'a> {
    /// Dataset name and variables, recorded in checkpoints.
    pub info: DataInfo,
    /// Training windows and embeddings.
    pub train: SplitData<'a>,
    /// Validation windows and embeddings (early stopping and best checkpoint).
    pub val: SplitData<'a>,
    /// The test windows: read while training only by [`Selection::Paper`](crate::Selection)
    /// (the release's test-based choice of checkpoint), which refuses to start without them.
    pub test: Option<Split<'a>>,
}
