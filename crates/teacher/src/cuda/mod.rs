//! The teacher's CUDA engine (feature `cuda`): the calibrated forward of extraction for the
//! decoder families (GPT-2 of every size; LLaMA with RMSNorm, rotary positions, SwiGLU and
//! grouped-query attention) written for NVIDIA GPUs, beside the Burn model that stays the CPU
//! path and the reference. BERT (bidirectional: no prefix to share) runs on Burn's CUDA
//! backend.
//!
//! What it computes is [`BurnModel::family_last_token_states`](crate::BurnModel::family_last_token_states):
//! the final state of the last token of every prompt of a list of
//! [`PromptFamily`](crate::PromptFamily)s, each family's shared prefix computed once. How:
//!
//! - **Packed tokens, no padding.** A pass holds whole sequences back to back (up to a token
//!   budget), so the matrix products run over exactly the real tokens; the attention kernels
//!   find each sequence through a small table.
//! - **cuBLASLt products** for the frozen linear layers (f16 inputs with f32 accumulation, or
//!   f32), with the bias, GPT-2's tanh GELU and the residual add (C = the residual stream,
//!   β = 1) fused as epilogues (`blas`); each product's algorithm is chosen once at load by
//!   timing the heuristic's candidates without split-K. LLaMA's q, k and v are one product,
//!   its gate and up another.
//! - **Flash-style attention** (`attention.cu`; Hopper's in `attention_wgmma.cu`): scores,
//!   causal + calibration mask, online softmax and the value product in one kernel on tensor
//!   cores, for f16 with heads 64 or 128 wide (128: Llama-3.2-3B); the [queries, keys] score
//!   matrix never reaches device memory. Other widths and f32 use a simple one-warp-per-query
//!   kernel. Suffixes read their prefix's keys and values straight from the cache. On Hopper
//!   (compute capability 9.0) 64-wide heads run on warpgroup MMA (wgmma, compiled for
//!   `compute_90a`; the next key tile's scores and softmax overlap this one's value product:
//!   see `attention_wgmma.cu`);
//!   `TIMEKD_CUDA_ATTENTION=mma` keeps the `mma.sync` kernel instead.
//! - **LayerNorm (or RMSNorm)** one row per warp, the row in registers (a kernel per common
//!   width), and a final block that computes only each prompt's last row past its keys and
//!   values. The residual stream is in the compute type (f16 in f16, as in PyTorch's f16
//!   models); norm statistics are f32.
//! - **Rotary positions** (LLaMA) applied in place to the projected queries and keys from
//!   cos/sin tables made on the host; the cache holds rotated keys (and values: a prefix's
//!   queries are not kept).
//!
//! - **Queued calls.** [`CudaEngine::queue`] queues a call's passes and the copy of its states
//!   into page-locked host memory and returns; [`CudaEngine::collect`] waits and reads them.
//!   Extraction queues the next chunk before it reads the one before, so the GPU does not wait
//!   for the host in between (at most two calls are queued at once).
//!
//! - **The SCA fused** ([`CudaSca`], `sca.cu`): beside the engine, extraction runs the SCA on
//!   the chunk's states read back to the host in two kernels, f32 throughout (a thread per
//!   embedding dimension, the N variables in registers, keys and values through shared memory
//!   with an online softmax), instead of Burn's operation by operation; up to
//!   [`FUSED_SCA_MAX_VARS`] variables, Burn's beyond (and where `TIMEKD_CUDA_SCA=burn`).
//!
//! One CUDA stream per engine; one engine per GPU (worker thread). All libraries (driver,
//! NVRTC, cuBLASLt) are loaded at run time, so the build needs no CUDA toolkit.

mod arch;
mod attention;
mod blas;
mod buffer;
mod engine;
mod kernels;
mod layers;
mod limits;
mod model;
mod passes;
mod plan;
mod profile;
mod sca;
mod weights;
mod workspace;

pub use engine::{CudaEngine, QueuedStates};
pub use kernels::{ATTENTION_ENV, KernelProgram, kernel_program};
pub use limits::{EngineLimits, longest_prompt};
pub(crate) use model::EngineModel;
pub use sca::{CudaSca, FUSED_SCA_MAX_VARS, SCA_ENV, sca_program};

/// Free and total bytes of CUDA device `ordinal`, as its driver reports them (other
/// processes' allocations included).
pub fn device_memory(ordinal: usize) -> Result<(u64, u64), crate::TeacherError> {
    let ctx = cudarc::driver::CudaContext::new(ordinal).map_err(CudaError::driver)?;
    let (free, total) = ctx.mem_get_info().map_err(CudaError::driver)?;
    Ok((free as u64, total as u64))
}

/// A failure inside the engine (turned into [`TeacherError::Cuda`](crate::TeacherError::Cuda),
/// or [`TeacherError::DeviceOutOfMemory`](crate::TeacherError::DeviceOutOfMemory) for a failed
/// allocation, which extraction answers with smaller passes).
#[derive(Debug)]
pub(crate) enum CudaError {
    /// The CUDA driver refused a call.
    Driver(String),
    /// A cuBLASLt call failed.
    Blas(String),
    /// NVRTC could not compile the kernels.
    Compile(String),
    /// A device allocation of this size failed.
    OutOfMemory { bytes: usize },
    /// The device or model is not one the engine handles.
    Unsupported(String),
    /// An invariant of the engine broke (a bug).
    Internal(String),
}

impl CudaError {
    fn driver(e: cudarc::driver::DriverError) -> Self {
        CudaError::Driver(format!("{e:?}"))
    }

    fn blas(e: cudarc::cublaslt::result::CublasError) -> Self {
        CudaError::Blas(format!("{e:?}"))
    }
}

impl std::fmt::Display for CudaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CudaError::Driver(e) => write!(f, "CUDA driver error: {e}"),
            CudaError::Blas(e) => write!(f, "cuBLASLt error: {e}"),
            CudaError::Compile(e) => write!(f, "NVRTC could not compile the kernels: {e}"),
            CudaError::OutOfMemory { bytes } => write!(
                f,
                "out of GPU memory allocating {:.2} GiB: lower --max-gpu-mem or free the GPU",
                *bytes as f64 / (1u64 << 30) as f64
            ),
            CudaError::Unsupported(e) | CudaError::Internal(e) => f.write_str(e),
        }
    }
}

impl From<CudaError> for crate::TeacherError {
    fn from(e: CudaError) -> Self {
        match e {
            CudaError::OutOfMemory { bytes } => crate::TeacherError::DeviceOutOfMemory {
                what: "CUDA engine buffer".into(),
                bytes: bytes as u64,
            },
            e => crate::TeacherError::Cuda(e.to_string()),
        }
    }
}
