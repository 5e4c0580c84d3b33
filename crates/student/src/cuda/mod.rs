//! The student's CUDA engine (feature `cuda`): one training run on one NVIDIA GPU without
//! Burn in the step. A Burn step of this model is a few hundred tiny kernels, each with the
//! framework's host-side bookkeeping: the GPU idles while the host issues them (≈8 ms a step
//! on an H100 for a few MFLOP). [`FusedStudent`] does the same step as about a hundred
//! launches of its own (cuBLAS f32 products and `kernels.cu`), with everything resident on
//! the device: parameters, gradients and AdamW's moments as flat rows in the `flat` module's
//! layout, the train and validation splits (windows and embeddings, uploaded once), and
//! every activation. Loss terms and gradient norms are summed on the device and read once
//! per epoch.
//!
//! What it computes is [`Dual::forward`](crate::Dual::forward), the four-term
//! [`distillation_loss`](crate::distillation_loss), its gradient, PyTorch's
//! `clip_grad_norm_` and AdamW as the `optim` module writes them, in f32 (no TF32):
//!
//! - forward: RevIN over time, both input projections, per layer q/k/v, scaled scores,
//!   softmax, dropout on the probabilities, context, output projection, dropout, residual
//!   and LayerNorm, ReLU feed-forward with dropout on its hidden and output, residual and
//!   LayerNorm; final LayerNorm; projections (branch 0 de-normalised);
//! - backward: the same chain by hand (the attention term's gradient reaches the last
//!   layer's dropped-out probabilities through the batch mean);
//! - dropout masks are drawn in the kernels from a counter-based hash of (key, element),
//!   the key derived from the step's seed (the same per-step seed as the Burn path) and the
//!   draw's place in the forward pass, so a mask is recomputed in the backward pass rather
//!   than stored. They are not Burn's generator's masks: a run with dropout on this engine
//!   is as reproducible as on Burn (same seed, same curve) but not the same curve; with
//!   dropout 0 the two agree to float rounding (the GPU test).
//!
//! Reductions are per-block partials summed in a fixed order, and cuBLAS runs in its
//! default (deterministic) mode on one stream: the same seed gives the same run.

mod engine;
mod gemm;
mod kernels;
mod memory;
mod params;
mod passes;
#[cfg(test)]
mod tests;
mod training;

pub use engine::{FusedStudent, SplitSlot};

use crate::config::DualConfig;

/// Bytes the engine keeps on the GPU for a split of `windows` windows of `vars` variables
/// (history, future and embeddings, f32).
pub fn split_bytes(windows: usize, vars: usize, config: &DualConfig) -> u64 {
    let per_window = vars * (config.input_len + config.output_len + config.d_llm);
    (windows * per_window * std::mem::size_of::<f32>()) as u64
}

pub(crate) use training::Engines;

/// A failure inside the engine.
#[derive(Debug)]
pub enum GpuError {
    /// The CUDA driver refused a call.
    Driver(String),
    /// A cuBLAS call failed.
    Blas(String),
    /// NVRTC could not compile the kernels.
    Compile(String),
    /// A device allocation of this many bytes failed.
    OutOfMemory {
        /// Bytes asked for.
        bytes: usize,
    },
    /// Reading the split's windows or embeddings failed.
    Data(String),
    /// The model or data is not one the engine handles.
    Unsupported(String),
    /// An invariant of the engine broke (a bug).
    Internal(String),
}

impl GpuError {
    fn driver(e: cudarc::driver::DriverError) -> Self {
        GpuError::Driver(format!("{e:?}"))
    }

    fn blas(e: cudarc::cublas::result::CublasError) -> Self {
        GpuError::Blas(format!("{e:?}"))
    }
}

impl std::fmt::Display for GpuError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GpuError::Driver(e) => write!(f, "CUDA driver error: {e}"),
            GpuError::Blas(e) => write!(f, "cuBLAS error: {e}"),
            GpuError::Compile(e) => write!(f, "NVRTC could not compile the student kernels: {e}"),
            GpuError::OutOfMemory { bytes } => write!(
                f,
                "out of GPU memory allocating {:.2} GiB for the student engine (it keeps the \
                 train and validation splits on the GPU): free the GPU or train with \
                 --train-engine burn",
                *bytes as f64 / (1u64 << 30) as f64
            ),
            GpuError::Data(e) => write!(f, "reading a split for the GPU: {e}"),
            GpuError::Unsupported(e) | GpuError::Internal(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for GpuError {}

impl From<GpuError> for crate::StudentError {
    fn from(e: GpuError) -> Self {
        crate::StudentError::Gpu(e.to_string())
    }
}
