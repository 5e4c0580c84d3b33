//! The engine's own kernels (`kernels.cu`), compiled by NVRTC for the device at load time.

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaFunction, CudaModule};
use cudarc::nvrtc::{CompileOptions, compile_ptx_with_opts};

use super::CudaError;

/// The CUDA C++ source, built into the binary.
const SOURCE: &str = include_str!("kernels.cu");

/// Handles of every kernel of `kernels.cu`.
pub(crate) struct Kernels {
    pub embed_f16: CudaFunction,
    pub embed_f32: CudaFunction,
    pub ln_f16: CudaFunction,
    pub ln_f16_out_f32: CudaFunction,
    pub ln_f32: CudaFunction,
    pub gather_rows: CudaFunction,
    pub copy_keys_values: CudaFunction,
    pub gelu_f16: CudaFunction,
    pub gelu_f32: CudaFunction,
    pub swiglu_f16: CudaFunction,
    pub swiglu_f32: CudaFunction,
    pub rotary_f16: CudaFunction,
    pub rotary_f32: CudaFunction,
    pub attention_simt_f16: CudaFunction,
    pub attention_simt_f32: CudaFunction,
    pub attention_mma_f16_hd64: CudaFunction,
    pub attention_mma_f16_hd128: CudaFunction,
    /// Keeps the module loaded as long as the handles live.
    _module: Arc<CudaModule>,
}

impl Kernels {
    /// Compiles the kernels for `ctx`'s device (its own compute capability) and loads them.
    pub fn load(ctx: &Arc<CudaContext>) -> Result<Self, CudaError> {
        let (major, minor) = ctx.compute_capability().map_err(CudaError::driver)?;
        if major < 8 {
            return Err(CudaError::Unsupported(format!(
                "compute capability {major}.{minor}: the engine's tensor-core kernels need 8.0 \
                 or newer (Ampere, Hopper); use the Burn path (`--engine burn`)"
            )));
        }
        let options = CompileOptions {
            options: vec![
                format!("--gpu-architecture=compute_{major}{minor}"),
                "-std=c++17".to_string(),
            ],
            use_fast_math: Some(true),
            name: Some("timekd_kernels.cu".to_string()),
            ..Default::default()
        };
        let ptx = compile_ptx_with_opts(SOURCE, options)
            .map_err(|e| CudaError::Compile(format!("{e:?}")))?;
        let module = ctx.load_module(ptx).map_err(CudaError::driver)?;
        let get = |name: &str| module.load_function(name).map_err(CudaError::driver);
        Ok(Kernels {
            embed_f16: get("embed_f16")?,
            embed_f32: get("embed_f32")?,
            ln_f16: get("ln_f16")?,
            ln_f16_out_f32: get("ln_f16_out_f32")?,
            ln_f32: get("ln_f32")?,
            gather_rows: get("gather_rows")?,
            copy_keys_values: get("copy_keys_values")?,
            gelu_f16: get("gelu_f16")?,
            gelu_f32: get("gelu_f32")?,
            swiglu_f16: get("swiglu_f16")?,
            swiglu_f32: get("swiglu_f32")?,
            rotary_f16: get("rotary_f16")?,
            rotary_f32: get("rotary_f32")?,
            attention_simt_f16: get("attention_simt_f16")?,
            attention_simt_f32: get("attention_simt_f32")?,
            attention_mma_f16_hd64: get("attention_mma_f16_hd64")?,
            attention_mma_f16_hd128: get("attention_mma_f16_hd128")?,
            _module: module,
        })
    }
}
