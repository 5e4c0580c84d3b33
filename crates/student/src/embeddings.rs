//! Where the teacher's embeddings come from: a small trait so memory stays bounded by the
//! batch, whatever the split size.

use timekd_data::seeded::SplitMix64;

use crate::error::SourceError;

/// Random access to the stored teacher embeddings of one split.
///
/// Window `i` of the source is window `i` of the data split it was extracted from. Training
/// reads batches on a helper thread (prefetch), hence `Send`.
pub trait EmbeddingSource: Send {
    /// (windows, N variables, d_llm).
    fn dims(&self) -> (usize, usize, usize);

    /// Embeddings of `windows`, in that order, as `[windows.len(), N, d_llm]` row-major.
    fn read_batch(&mut self, windows: &[usize]) -> Result<Vec<f32>, SourceError>;
}

/// Embeddings held in memory (tests, examples, small experiments).
#[derive(Debug, Clone)]
pub struct InMemoryEmbeddings {
    data: Vec<f32>,
    dims: (usize, usize, usize),
}

impl InMemoryEmbeddings {
    /// Wraps `[windows, n_vars, d_llm]` row-major values.
    ///
    /// # Panics
    /// When `data.len()` is not `windows · n_vars · d_llm`.
    pub fn new(data: Vec<f32>, windows: usize, n_vars: usize, d_llm: usize) -> Self {
        assert_eq!(
            data.len(),
            windows * n_vars * d_llm,
            "embedding data must hold windows·n_vars·d_llm values"
        );
        InMemoryEmbeddings {
            data,
            dims: (windows, n_vars, d_llm),
        }
    }

    /// Standard-normal embeddings drawn from `seed` (a stand-in for a teacher).
    pub fn random(windows: usize, n_vars: usize, d_llm: usize, seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed);
        let data = (0..windows * n_vars * d_llm)
            .map(|_| rng.standard_normal() as f32)
            .collect();
        Self::new(data, windows, n_vars, d_llm)
    }
}

impl EmbeddingSource for InMemoryEmbeddings {
    fn dims(&self) -> (usize, usize, usize) {
        self.dims
    }

    fn read_batch(&mut self, windows: &[usize]) -> Result<Vec<f32>, SourceError> {
        let (count, n, d) = self.dims;
        let per = n * d;
        let mut out = Vec::with_capacity(windows.len() * per);
        for &w in windows {
            if w >= count {
                return Err(format!("window {w} is out of range: the source holds {count}").into());
            }
            out.extend_from_slice(&self.data[w * per..(w + 1) * per]);
        }
        Ok(out)
    }
}
