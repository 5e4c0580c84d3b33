//! [`EngineArch`]: what the engine computes for each family it runs (GPT-2, LLaMA), resolved
//! once from the checkpoint's configuration: the sizes, the norm, the MLP (positions are in
//! the weights: a learned embedding or rotary tables).
//! The passes read only this, never a family's config.

use super::CudaError;
use crate::families::ModelConfig;
use crate::shape::ModelShape;

/// The normalisation of the residual stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Norm {
    /// LayerNorm with a bias (GPT-2).
    Layer,
    /// RMSNorm, no mean and no bias (LLaMA).
    Rms,
}

/// The MLP between the two products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mlp {
    /// `act(x · W_fc + b)`: GELU, tanh form (GPT-2's `gelu_new`) or exact.
    Gelu { tanh: bool },
    /// `silu(x · W_gate) · (x · W_up)`, gate and up in one product (LLaMA).
    SwiGlu,
}

/// The computation the engine runs for one checkpoint.
#[derive(Debug, Clone)]
pub(crate) struct EngineArch {
    pub(super) shape: ModelShape,
    /// The norms' epsilon.
    pub(super) eps: f32,
    pub(super) norm: Norm,
    pub(super) mlp: Mlp,
}

impl EngineArch {
    /// The engine's view of `config`; families it does not run are refused by name, as are
    /// odd head widths (rows are copied as 32-bit words).
    pub(crate) fn for_config(config: &ModelConfig) -> Result<Self, CudaError> {
        let shape = config.shape();
        if !shape.head_dim.is_multiple_of(2) {
            return Err(CudaError::Unsupported(format!(
                "the CUDA engine needs an even head width, not {}: use --engine burn",
                shape.head_dim
            )));
        }
        match config {
            ModelConfig::Gpt2(c) => Ok(EngineArch {
                shape,
                eps: c.layer_norm_epsilon as f32,
                norm: Norm::Layer,
                mlp: Mlp::Gelu { tanh: c.tanh_gelu },
            }),
            ModelConfig::Llama(c) => Ok(EngineArch {
                shape,
                eps: c.rms_norm_eps as f32,
                norm: Norm::Rms,
                mlp: Mlp::SwiGlu,
            }),
            ModelConfig::Bert(_) => Err(CudaError::Unsupported(format!(
                "the CUDA engine runs decoders (GPT-2, LLaMA); this is a {} checkpoint: use --engine burn",
                shape.family
            ))),
        }
    }

    /// Width of the query heads, `heads · head_dim` (the attention's output width).
    pub(super) fn q_width(&self) -> usize {
        self.shape.heads * self.shape.head_dim
    }

    /// Width of the key (or value) heads, `kv_heads · head_dim`.
    pub(super) fn kv_width(&self) -> usize {
        self.shape.kv_heads * self.shape.head_dim
    }

    /// Width of a `q | k | v` row.
    pub(super) fn qkv_width(&self) -> usize {
        self.q_width() + 2 * self.kv_width()
    }

    /// Query heads per key/value head.
    pub(super) fn group(&self) -> usize {
        self.shape.heads / self.shape.kv_heads
    }

    /// Width of the MLP's first product (gate and up side by side for SwiGLU).
    pub(super) fn mlp_in_width(&self) -> usize {
        match self.mlp {
            Mlp::SwiGlu => 2 * self.shape.mlp_width,
            Mlp::Gelu { .. } => self.shape.mlp_width,
        }
    }
}
