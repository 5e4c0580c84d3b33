//! [`ModelShape`]: the sizes of a language model that memory budgets, FLOP counts and logs
//! need, the same for every family.

use serde::Serialize;

/// The sizes of a checkpoint, from its family's `config.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelShape {
    /// The family's `model_type` (`gpt2`, `llama`, `bert`).
    pub family: &'static str,
    /// Width D of the hidden states.
    pub d_model: usize,
    /// Blocks in the checkpoint.
    pub layers: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (fewer than `heads` with grouped-query attention).
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Inner width of the MLP.
    pub mlp_width: usize,
    /// Whether the MLP is gated (SwiGLU: three matrices instead of two).
    pub gated_mlp: bool,
    /// Vocabulary rows of the token embedding.
    pub vocab: usize,
    /// Rows of learned position (and token-type) embeddings; 0 with rotary positions.
    pub position_rows: usize,
    /// Longest prompt the model takes.
    pub max_tokens: usize,
    /// Causal attention (decoders): shared prompt prefixes can be cached.
    pub causal: bool,
}

impl ModelShape {
    /// The blocks a run uses: `requested` (all when `None`), checked against the checkpoint.
    pub fn layers_in_use(&self, requested: Option<usize>) -> Result<usize, crate::TeacherError> {
        let layers = requested.unwrap_or(self.layers);
        if layers == 0 || layers > self.layers {
            return Err(crate::TeacherError::Layers {
                requested: layers,
                available: self.layers,
            });
        }
        Ok(layers)
    }

    /// Weights of one block: the four attention projections, the MLP and (roughly) the
    /// norms' and biases' vectors.
    pub fn block_params(&self) -> u64 {
        let d = self.d_model as u64;
        let q = (self.heads * self.head_dim) as u64;
        let kv = (self.kv_heads * self.head_dim) as u64;
        let inner = self.mlp_width as u64;
        let mlp_matrices = if self.gated_mlp { 3 } else { 2 };
        2 * d * q + 2 * d * kv + mlp_matrices * d * inner + 10 * d + inner
    }

    /// Weights outside the blocks: token and position embeddings.
    pub fn embedding_params(&self) -> u64 {
        ((self.vocab + self.position_rows) * self.d_model) as u64
    }

    /// Values of keys and values one token keeps per block.
    pub fn kv_width(&self) -> usize {
        2 * self.kv_heads * self.head_dim
    }

    /// Matrix-product FLOPs per token per block outside attention (2 per multiply-add).
    pub fn linear_flops_per_token(&self) -> f64 {
        2.0 * (self.block_params() - 10 * self.d_model as u64 - self.mlp_width as u64) as f64
    }
}
