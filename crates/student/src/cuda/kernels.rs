//! The student engine's kernels (`kernels.cu`), compiled by NVRTC for the device at start.

use std::sync::{Arc, Mutex};

use cudarc::driver::{CudaContext, CudaFunction, CudaModule};
use cudarc::nvrtc::{CompileOptions, Ptx, compile_ptx_with_opts};

use super::GpuError;

/// The CUDA C++ source, built into the binary.
const SOURCE: &str = include_str!("kernels.cu");

/// Blocks (and threads per block) of the kernels that leave per-block partial sums; must
/// equal `PARTIAL_BLOCKS` and `REDUCE_THREADS` in `kernels.cu`.
pub(super) const PARTIAL_BLOCKS: u32 = 256;

/// Handles of every kernel of `kernels.cu`.
pub(super) struct Kernels {
    pub revin_rows: CudaFunction,
    pub gather_rows: CudaFunction,
    pub add_bias2: CudaFunction,
    pub heads_layout: CudaFunction,
    pub softmax_dropout: CudaFunction,
    pub residual_dropout_ln: CudaFunction,
    pub bias_relu_dropout: CudaFunction,
    pub projection_loss: CudaFunction,
    pub feature_loss: CudaFunction,
    pub attention_loss: CudaFunction,
    pub finish_losses: CudaFunction,
    pub softmax_backward: CudaFunction,
    pub ln_backward: CudaFunction,
    pub ln_param_grads: CudaFunction,
    pub column_sums: CudaFunction,
    pub relu_dropout_backward: CudaFunction,
    pub square_partials: CudaFunction,
    pub clip_adamw: CudaFunction,
    /// Keeps the module loaded as long as the handles live.
    _module: Arc<CudaModule>,
}

impl Kernels {
    /// Compiles the kernels for `ctx`'s device (once per process and compute capability:
    /// the engines of a pack share the PTX) and loads them.
    pub fn load(ctx: &Arc<CudaContext>) -> Result<Self, GpuError> {
        static COMPILED: Mutex<Vec<((i32, i32), Ptx)>> = Mutex::new(Vec::new());
        let capability = ctx.compute_capability().map_err(GpuError::driver)?;
        let mut compiled = COMPILED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let ptx = match compiled.iter().find(|(c, _)| *c == capability) {
            Some((_, ptx)) => ptx.clone(),
            None => {
                let ptx = compile(capability)?;
                compiled.push((capability, ptx.clone()));
                ptx
            }
        };
        drop(compiled);
        let module = ctx.load_module(ptx).map_err(GpuError::driver)?;
        let get = |name: &str| module.load_function(name).map_err(GpuError::driver);
        Ok(Kernels {
            revin_rows: get("revin_rows")?,
            gather_rows: get("gather_rows")?,
            add_bias2: get("add_bias2")?,
            heads_layout: get("heads_layout")?,
            softmax_dropout: get("softmax_dropout")?,
            residual_dropout_ln: get("residual_dropout_ln")?,
            bias_relu_dropout: get("bias_relu_dropout")?,
            projection_loss: get("projection_loss")?,
            feature_loss: get("feature_loss")?,
            attention_loss: get("attention_loss")?,
            finish_losses: get("finish_losses")?,
            softmax_backward: get("softmax_backward")?,
            ln_backward: get("ln_backward")?,
            ln_param_grads: get("ln_param_grads")?,
            column_sums: get("column_sums")?,
            relu_dropout_backward: get("relu_dropout_backward")?,
            square_partials: get("square_partials")?,
            clip_adamw: get("clip_adamw")?,
            _module: module,
        })
    }
}

/// The PTX of `kernels.cu` for compute capability `(major, minor)`.
fn compile((major, minor): (i32, i32)) -> Result<Ptx, GpuError> {
    let options = CompileOptions {
        options: vec![
            format!("--gpu-architecture=compute_{major}{minor}"),
            "-std=c++17".to_string(),
        ],
        // Exact division, square roots and exponentials: the engine matches the Burn
        // model's f32 arithmetic, not a fast approximation of it.
        use_fast_math: Some(false),
        name: Some("timekd_student.cu".to_string()),
        ..Default::default()
    };
    compile_ptx_with_opts(SOURCE, options).map_err(|e| GpuError::Compile(format!("{e:?}")))
}
