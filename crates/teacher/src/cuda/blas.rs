//! Row-major `Y = X · W + b` (optionally GELU) through cuBLASLt, on the engine's stream.
//!
//! cuBLAS is column-major: a row-major `[rows, cols]` matrix is the column-major
//! `[cols, rows]` one with the same memory. So `Y[m, n] = X[m, k] · W[k, n]` is computed as
//! `Yᵀ = Wᵀ · Xᵀ` with cuBLAS's A = W (`n × k`, ld n), B = X (`k × m`, ld k) and D = Y
//! (`n × m`, ld n), none transposed; the bias epilogue adds a vector over D's rows, which are
//! Y's columns. Descriptors and the heuristic's algorithm are kept per shape.

use std::collections::HashMap;
use std::ffi::c_void;
use std::mem::size_of;

use cudarc::cublaslt::result as lt;
use cudarc::cublaslt::sys;
use cudarc::driver::CudaStream;

use super::CudaError;
use super::buffer::DeviceBuffer;

/// The element type and accumulation of the products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum GemmType {
    /// f16 inputs and outputs, f32 accumulation.
    F16,
    /// f32 inputs and outputs, true f32 arithmetic.
    F32,
    /// f32 inputs and outputs, TF32 tensor cores (10-bit mantissa inputs).
    Tf32,
}

impl GemmType {
    fn data_type(self) -> sys::cudaDataType {
        match self {
            GemmType::F16 => sys::cudaDataType::CUDA_R_16F,
            GemmType::F32 | GemmType::Tf32 => sys::cudaDataType::CUDA_R_32F,
        }
    }

    fn compute_type(self) -> sys::cublasComputeType_t {
        match self {
            GemmType::F16 | GemmType::F32 => sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
            GemmType::Tf32 => sys::cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_TF32,
        }
    }
}

/// What is applied to `X · W` before it is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Epilogue {
    /// `+ b`.
    Bias,
    /// `gelu_tanh(X · W + b)` (cuBLASLt's GELU is the tanh form).
    BiasGelu,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Shape {
    m: usize,
    n: usize,
    k: usize,
    epilogue: Epilogue,
}

/// Descriptors and algorithm of one shape.
struct Plan {
    desc: sys::cublasLtMatmulDesc_t,
    a: sys::cublasLtMatrixLayout_t,
    b: sys::cublasLtMatrixLayout_t,
    d: sys::cublasLtMatrixLayout_t,
    algo: sys::cublasLtMatmulAlgo_t,
}

impl Drop for Plan {
    fn drop(&mut self) {
        // SAFETY: each handle was created by this plan and is destroyed once.
        unsafe {
            let _ = lt::destroy_matrix_layout(self.a);
            let _ = lt::destroy_matrix_layout(self.b);
            let _ = lt::destroy_matrix_layout(self.d);
            let _ = lt::destroy_matmul_desc(self.desc);
        }
    }
}

/// A cuBLASLt handle with its workspace and per-shape plans.
pub(crate) struct Blas {
    handle: sys::cublasLtHandle_t,
    workspace: DeviceBuffer,
    ty: GemmType,
    plans: HashMap<Shape, Plan>,
}

// SAFETY: the handle is used by one thread at a time (the engine is not Sync); cuBLASLt
// handles may move between threads.
unsafe impl Send for Blas {}

/// Workspace cuBLASLt may use (NVIDIA recommends 32 MiB on Hopper).
const WORKSPACE_BYTES: usize = 32 << 20;

/// Distinct shapes kept before the plan cache starts over (packed passes vary in rows).
const MAX_PLANS: usize = 4096;

impl Blas {
    pub fn new(stream: &std::sync::Arc<CudaStream>, ty: GemmType) -> Result<Self, CudaError> {
        // SAFETY: probing only dlopens the candidate library names.
        if !unsafe { sys::is_culib_present() } {
            return Err(CudaError::Unsupported(
                "cuBLASLt (libcublasLt.so) was not found: install the CUDA toolkit's cuBLAS or \
                 add its lib directory to LD_LIBRARY_PATH (with PyTorch's wheels it is \
                 site-packages/nvidia/cublas/lib)"
                    .to_string(),
            ));
        }
        let handle = lt::create_handle().map_err(CudaError::blas)?;
        Ok(Blas {
            handle,
            workspace: DeviceBuffer::new(stream, WORKSPACE_BYTES)?,
            ty,
            plans: HashMap::new(),
        })
    }

    /// `y[m, n] = epilogue(x[m, k] · w[k, n] + bias[n])`, all row-major and contiguous, in the
    /// handle's element type, queued on `stream`.
    #[allow(clippy::too_many_arguments)]
    pub fn linear(
        &mut self,
        stream: &CudaStream,
        x: u64,
        w: u64,
        bias: u64,
        y: u64,
        m: usize,
        n: usize,
        k: usize,
        epilogue: Epilogue,
    ) -> Result<(), CudaError> {
        if m == 0 {
            return Ok(());
        }
        let shape = Shape { m, n, k, epilogue };
        if !self.plans.contains_key(&shape) {
            if self.plans.len() >= MAX_PLANS {
                self.plans.clear();
            }
            let plan = self.plan(shape)?;
            self.plans.insert(shape, plan);
        }
        let plan = &self.plans[&shape];
        let bias_ptr = bias;
        // SAFETY: the descriptor outlives the call; the pointer attribute is copied.
        unsafe {
            lt::set_matmul_desc_attribute(
                plan.desc,
                sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                (&raw const bias_ptr).cast(),
                size_of::<u64>(),
            )
            .map_err(CudaError::blas)?;
        }
        let (alpha, beta) = (1.0f32, 0.0f32);
        // SAFETY: the caller passes device pointers of at least the shapes' sizes, valid
        // until the stream has run the product.
        unsafe {
            lt::matmul(
                self.handle,
                plan.desc,
                (&raw const alpha).cast(),
                (&raw const beta).cast(),
                w as *const c_void,
                plan.a,
                x as *const c_void,
                plan.b,
                y as *const c_void,
                plan.d,
                y as *mut c_void,
                plan.d,
                &plan.algo,
                self.workspace.ptr() as *mut c_void,
                WORKSPACE_BYTES,
                stream.cu_stream() as sys::cudaStream_t,
            )
            .map_err(CudaError::blas)
        }
    }

    fn plan(&self, shape: Shape) -> Result<Plan, CudaError> {
        let Shape { m, n, k, epilogue } = shape;
        let ty = self.ty.data_type();
        let layout = |rows: usize, cols: usize| {
            lt::create_matrix_layout(ty, rows as u64, cols as u64, rows as i64)
        };
        let desc = lt::create_matmul_desc(self.ty.compute_type(), sys::cudaDataType::CUDA_R_32F)
            .map_err(CudaError::blas)?;
        let mut plan = Plan {
            desc,
            a: layout(n, k).map_err(CudaError::blas)?,
            b: layout(k, m).map_err(CudaError::blas)?,
            d: layout(n, m).map_err(CudaError::blas)?,
            algo: sys::cublasLtMatmulAlgo_t { data: [0; 8] },
        };
        let epilogue = match epilogue {
            Epilogue::Bias => sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_BIAS,
            Epilogue::BiasGelu => sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_GELU_BIAS,
        };
        // SAFETY: attribute buffers are plain values of the documented types.
        unsafe {
            lt::set_matmul_desc_attribute(
                plan.desc,
                sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_EPILOGUE,
                (&raw const epilogue).cast(),
                size_of::<sys::cublasLtEpilogue_t>(),
            )
            .map_err(CudaError::blas)?;
        }
        let pref = lt::create_matmul_pref().map_err(CudaError::blas)?;
        let workspace = WORKSPACE_BYTES;
        // SAFETY: as above; every handle passed is alive.
        let heuristic = unsafe {
            let set = lt::set_matmul_pref_attribute(
                pref,
                sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                (&raw const workspace).cast(),
                size_of::<usize>(),
            );
            let result = set.and_then(|()| {
                lt::get_matmul_algo_heuristic(
                    self.handle,
                    plan.desc,
                    plan.a,
                    plan.b,
                    plan.d,
                    plan.d,
                    pref,
                )
            });
            let _ = lt::destroy_matmul_pref(pref);
            result.map_err(|e| {
                CudaError::Blas(format!(
                    "no cuBLASLt algorithm for [{m}, {k}] x [{k}, {n}]: {e:?}"
                ))
            })?
        };
        plan.algo = heuristic.algo;
        Ok(plan)
    }
}

impl Drop for Blas {
    fn drop(&mut self) {
        self.plans.clear();
        // SAFETY: created in `new`, destroyed once, after its plans.
        unsafe {
            let _ = lt::destroy_handle(self.handle);
        }
    }
}
