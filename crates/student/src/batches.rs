//! Training and validation batches: read ahead on a helper thread, moved to the device a
//! chunk of batches at a time.
//!
//! Reading (data rows and stored embeddings) overlaps the device's work, and memory stays
//! bounded by [`CHUNK_BATCHES`] × [`CHUNKS_AHEAD`] batches whatever the split size. A copy
//! from host memory can make the host wait for the device's queue to drain; uploading a
//! chunk at once, not every batch, keeps the device's queue full between those waits.

use std::ops::Range;

use burn::tensor::{Device, Tensor, TensorData};

use crate::data::SplitData;
use crate::error::{Result, StudentError};

/// Batches uploaded to the device together.
const CHUNK_BATCHES: usize = 16;

/// Chunks the reader thread may have ready before the training loop takes them.
const CHUNKS_AHEAD: usize = 2;

/// A batch on a device: `x` [b, L, N], `y` [b, H, N] (scaled) and `emb` [b, N, d].
pub(crate) struct Batch {
    pub x: Tensor<3>,
    pub y: Tensor<3>,
    pub emb: Tensor<3>,
    pub len: usize,
}

impl Batch {
    /// Windows `rows` of the batch, on `device` (a data-parallel share).
    pub fn rows(&self, rows: Range<usize>, device: &Device) -> Batch {
        let part = |t: &Tensor<3>| {
            t.clone()
                .narrow(0, rows.start, rows.len())
                .to_device(device)
        };
        Batch {
            x: part(&self.x),
            y: part(&self.y),
            emb: part(&self.emb),
            len: rows.len(),
        }
    }
}

/// Consecutive batches on the host, concatenated along the window axis.
struct HostChunk {
    x: Vec<f32>,
    y: Vec<f32>,
    emb: Vec<f32>,
    /// Windows per batch.
    sizes: Vec<usize>,
    /// (L, H, N, d).
    dims: (usize, usize, usize, usize),
}

impl HostChunk {
    /// Reads the windows of `batches` from `data` (data rows and embeddings).
    fn read(data: &mut SplitData, batches: &[Vec<usize>]) -> Result<HostChunk> {
        let windows: Vec<usize> = batches.iter().flatten().copied().collect();
        let dataset = data.split.dataset();
        let (l, h, n) = (dataset.input_len(), dataset.output_len(), dataset.n_vars());
        let (mut x, mut y) = (Vec::new(), Vec::new());
        data.split.fill_scaled(&windows, &mut x, &mut y);
        let emb = data
            .embeddings
            .read_batch(&windows)
            .map_err(StudentError::Embeddings)?;
        let (_, _, d) = data.embeddings.dims();
        let b = windows.len();
        if emb.len() != b * n * d {
            return Err(StudentError::Embeddings(
                format!(
                    "read_batch returned {} values for {b} windows of [{n}, {d}]",
                    emb.len()
                )
                .into(),
            ));
        }
        Ok(HostChunk {
            x,
            y,
            emb,
            sizes: batches.iter().map(Vec::len).collect(),
            dims: (l, h, n, d),
        })
    }

    /// One upload per tensor, then each batch as a slice of the uploaded chunk.
    fn upload(self, device: &Device) -> Vec<Batch> {
        let (l, h, n, d) = self.dims;
        let b: usize = self.sizes.iter().sum();
        let tensor =
            |v: Vec<f32>, shape: [usize; 3]| Tensor::from_data(TensorData::new(v, shape), device);
        let whole = Batch {
            x: tensor(self.x, [b, l, n]),
            y: tensor(self.y, [b, h, n]),
            emb: tensor(self.emb, [b, n, d]),
            len: b,
        };
        if self.sizes.len() == 1 {
            return vec![whole];
        }
        let mut start = 0;
        self.sizes
            .iter()
            .map(|&len| {
                let batch = whole.rows(start..start + len, device);
                start += len;
                batch
            })
            .collect()
    }
}

/// Runs `consume` over `batches` (window lists) of `data` as device batches, in order. A
/// helper thread reads chunks of [`CHUNK_BATCHES`] ahead; a read error ends the stream with
/// that error; stopping early stops the reader.
pub(crate) fn stream_batches<R>(
    data: &mut SplitData,
    batches: &[Vec<usize>],
    device: &Device,
    consume: impl FnOnce(&mut dyn Iterator<Item = Result<Batch>>) -> R,
) -> R {
    std::thread::scope(|scope| {
        let (sender, receiver) = std::sync::mpsc::sync_channel(CHUNKS_AHEAD);
        scope.spawn(move || {
            for chunk in batches.chunks(CHUNK_BATCHES) {
                let read = HostChunk::read(data, chunk);
                let failed = read.is_err();
                if sender.send(read).is_err() || failed {
                    break;
                }
            }
        });
        let mut stream = receiver.into_iter().flat_map(|chunk| match chunk {
            Ok(chunk) => chunk.upload(device).into_iter().map(Ok).collect::<Vec<_>>(),
            Err(e) => vec![Err(e)],
        });
        consume(&mut stream)
    })
}
