//! The stores of a run, one per (split, output length), each resumable on its own (its own
//! writer, fingerprint and missing windows), and the chunks of work their missing windows
//! make.

use std::collections::BTreeMap;
use std::ops::Range;

use timekd_data::SplitKind;
use timekd_store::{Fingerprint, StoreWriter, WriterOptions};

use super::error::ExtractError;
use super::observer::{ExtractObserver, StoreStatus};
use super::workers::WorkItem;
use crate::pipeline::HostEmbeddings;

/// What to open a store with.
pub(crate) struct StoreRequest {
    /// Where, which split and length, how many windows it covers.
    pub status: StoreStatus,
    /// The fingerprint it must have.
    pub fingerprint: Fingerprint,
    /// Windows of the whole split at this length (or the first `--max-windows`).
    pub windows_total: usize,
    /// This shard's windows, or all.
    pub range: Option<Range<usize>>,
    /// Replace an existing store instead of resuming it.
    pub overwrite: bool,
}

/// An open store and the windows it still misses.
struct OpenStore {
    status: StoreStatus,
    /// `None` once finished.
    writer: Option<StoreWriter>,
    missing: Vec<usize>,
    remaining: usize,
}

/// Every store of a run.
pub(crate) struct RunStores {
    stores: Vec<OpenStore>,
}

impl RunStores {
    /// Opens every requested store (resuming what is there) and finishes those that miss
    /// nothing, telling `observer` about each.
    pub fn open(
        requests: Vec<StoreRequest>,
        observer: &mut dyn ExtractObserver,
    ) -> Result<Self, ExtractError> {
        let mut stores = Vec::with_capacity(requests.len());
        for request in requests {
            let options = WriterOptions {
                overwrite: request.overwrite,
                part_windows: None,
                range: request.range,
            };
            let writer = StoreWriter::open(
                &request.status.path,
                request.fingerprint,
                request.windows_total,
                options,
            )?;
            let missing = writer.missing();
            let status = StoreStatus {
                missing: missing.len(),
                ..request.status
            };
            observer.store_opened(&status);
            let mut store = OpenStore {
                status,
                writer: Some(writer),
                remaining: missing.len(),
                missing,
            };
            if store.remaining == 0 {
                store.finish(observer)?;
            }
            stores.push(store);
        }
        Ok(RunStores { stores })
    }

    /// Embeddings (window × output length) still to compute.
    pub fn remaining(&self) -> usize {
        self.stores.iter().map(|s| s.remaining).sum()
    }

    /// The missing windows as chunks of at most `chunk` windows, split by split in the order
    /// the stores were opened; each window with the lengths whose stores miss it.
    pub fn work(&self, chunk: usize) -> Vec<WorkItem> {
        let mut splits: Vec<SplitKind> = Vec::new();
        for store in &self.stores {
            if !splits.contains(&store.status.split) {
                splits.push(store.status.split);
            }
        }
        let mut items = Vec::new();
        for split in splits {
            let mut lengths: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
            for store in self.stores.iter().filter(|s| s.status.split == split) {
                for &window in &store.missing {
                    lengths
                        .entry(window)
                        .or_default()
                        .push(store.status.output_len);
                }
            }
            let windows: Vec<(usize, Vec<usize>)> = lengths
                .into_iter()
                .map(|(window, mut hs)| {
                    hs.sort_unstable();
                    (window, hs)
                })
                .collect();
            items.extend(windows.chunks(chunk.max(1)).map(|part| WorkItem {
                split,
                windows: part.to_vec(),
            }));
        }
        items
    }

    /// Writes a chunk's embeddings of `split` durably (a part per store: a crash loses at
    /// most the chunks in flight) and finishes every store that is then complete. Returns
    /// the embeddings written.
    pub fn put(
        &mut self,
        split: SplitKind,
        lengths: &[HostEmbeddings],
        observer: &mut dyn ExtractObserver,
    ) -> Result<usize, ExtractError> {
        let mut written = 0;
        for length in lengths {
            let store = self
                .stores
                .iter_mut()
                .find(|s| s.status.split == split && s.status.output_len == length.output_len)
                .ok_or_else(|| {
                    ExtractError::Internal(format!(
                        "embeddings for H = {} of the {split} split, which this run does not extract",
                        length.output_len
                    ))
                })?;
            let writer = store.writer.as_mut().ok_or_else(|| {
                ExtractError::Internal(format!(
                    "embeddings for the finished store {}",
                    store.status.path.display()
                ))
            })?;
            if !length.windows.is_empty() {
                let per_window = length.values.len() / length.windows.len();
                for (window, values) in length.windows.iter().zip(length.values.chunks(per_window))
                {
                    writer.put(*window, values)?;
                }
                writer.flush()?;
            }
            store.remaining = store.remaining.saturating_sub(length.windows.len());
            written += length.windows.len();
            if store.remaining == 0 {
                store.finish(observer)?;
            }
        }
        Ok(written)
    }

    /// The stores' final paths, in the order they were requested.
    pub fn statuses(&self) -> Vec<StoreStatus> {
        self.stores.iter().map(|s| s.status.clone()).collect()
    }
}

impl OpenStore {
    fn finish(&mut self, observer: &mut dyn ExtractObserver) -> Result<(), ExtractError> {
        if let Some(writer) = self.writer.take() {
            self.status.path = writer.finish()?;
            observer.store_finished(&self.status);
        }
        Ok(())
    }
}
