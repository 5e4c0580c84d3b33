//! [`Prefetch`]: batches read ahead by a background thread through a bounded channel, from
//! [`StoreReader::prefetch`] (defined here, so the reader does not depend on this module).

use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::JoinHandle;

use crate::error::Result;
use crate::reader::StoreReader;

/// One batch from [`Prefetch`].
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// Global window indices of this batch.
    pub windows: Vec<usize>,
    /// Values `[windows.len(), n_vars, d_model]` row-major.
    pub values: Vec<f32>,
}

/// Iterator over prefetched [`Batch`]es; see [`StoreReader::prefetch`] for the memory
/// bound. Dropping it stops the background thread.
pub struct Prefetch {
    receiver: Option<Receiver<Result<Batch>>>,
    worker: Option<JoinHandle<()>>,
}

impl StoreReader {
    /// Iterates over `windows` in batches of `batch_size` read by a background thread that
    /// runs at most `depth` batches ahead. Memory held by the iterator is bounded by
    /// `(depth + 2) * batch_size * n_vars * d_model * 4` bytes: `depth` queued batches, one
    /// being read, one handed out (plus HDF5's 1 MiB chunk cache of the open file). A read
    /// error is yielded once and ends the iteration.
    pub fn prefetch(self, windows: Vec<usize>, batch_size: usize, depth: usize) -> Prefetch {
        Prefetch::spawn(self, windows, batch_size, depth)
    }
}

impl Prefetch {
    fn spawn(reader: StoreReader, windows: Vec<usize>, batch_size: usize, depth: usize) -> Self {
        let (sender, receiver) = sync_channel(depth);
        let batch_size = batch_size.max(1);
        let worker = std::thread::spawn(move || {
            for chunk in windows.chunks(batch_size) {
                let batch = reader.read_batch(chunk).map(|values| Batch {
                    windows: chunk.to_vec(),
                    values,
                });
                let failed = batch.is_err();
                if sender.send(batch).is_err() || failed {
                    break;
                }
            }
        });
        Self {
            receiver: Some(receiver),
            worker: Some(worker),
        }
    }
}

impl Iterator for Prefetch {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        self.receiver.as_ref()?.recv().ok()
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        // Closing the channel first makes a blocked sender fail, so the worker exits.
        self.receiver.take();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}
