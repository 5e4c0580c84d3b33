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

#[cfg(test)]
mod survey;

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
    /// `Y = X · W + b`.
    Bias,
    /// `Y = gelu_tanh(X · W + b)` (cuBLASLt's GELU is the tanh form).
    BiasGelu,
    /// `Y += X · W + b`: a residual add, `Y` read as cuBLASLt's C (β = 1) and written in place.
    BiasResidual,
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
    /// The weight of C (= D) in the sum: 1 for a residual add, else 0.
    beta: f32,
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
    /// Algorithms chosen by [`tune`](Self::tune), per (n, k, epilogue).
    tuned: HashMap<(usize, usize, Epilogue), Tuned>,
}

/// The fastest algorithm of a product, and the rows it was timed at.
#[derive(Clone, Copy)]
struct Tuned {
    algo: sys::cublasLtMatmulAlgo_t,
    rows: usize,
}

// SAFETY: the handle is used by one thread at a time (the engine is not Sync); cuBLASLt
// handles may move between threads.
unsafe impl Send for Blas {}

/// Workspace cuBLASLt may use (NVIDIA recommends 32 MiB on Hopper).
const WORKSPACE_BYTES: usize = 32 << 20;

/// Distinct shapes kept before the plan cache starts over (packed passes vary in rows).
const MAX_PLANS: usize = 4096;

/// The heuristic's candidates [`Blas::tune`] times, and the products it times each for.
const TUNE_CANDIDATES: usize = 8;
const TUNE_REPS: usize = 3;

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
            tuned: HashMap::new(),
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
            let mut plan = self.descriptors(shape)?;
            plan.algo = match self.tuned.get(&(n, k, epilogue)) {
                Some(tuned) if 4 * m >= tuned.rows && self.supports(&plan, &tuned.algo) => {
                    tuned.algo
                }
                _ => self.algorithms(&plan, shape, 1)?[0],
            };
            self.plans.insert(shape, plan);
        }
        let plan = &self.plans[&shape];
        self.run(stream, plan, &plan.algo, (x, w, bias, y))
    }

    /// Times the heuristic's first candidates without split-K (whose summation order
    /// differs) for `y = x · w + b` at `(m, n, k)` on the given buffers (scratch: `y` is
    /// overwritten, read too for a residual), and keeps the fastest for later products of
    /// that `(n, k, epilogue)` with at least a quarter of `m` rows (smaller ones take the
    /// heuristic's own first choice). The candidates compute the same sums in the same order
    /// (the survey test finds their products bit-for-bit equal), so the choice changes speed,
    /// not results. Returns the first candidate's and the chosen one's milliseconds.
    pub fn tune(
        &mut self,
        stream: &std::sync::Arc<CudaStream>,
        pointers: (u64, u64, u64, u64),
        (m, n, k): (usize, usize, usize),
        epilogue: Epilogue,
    ) -> Result<(f32, f32), CudaError> {
        use sys::cublasLtMatmulAlgoConfigAttributes_t as Config;
        let shape = Shape { m, n, k, epilogue };
        let plan = self.descriptors(shape)?;
        let candidates: Vec<_> = self
            .algorithms(&plan, shape, TUNE_CANDIDATES)?
            .into_iter()
            .filter(|algo| config(algo, Config::CUBLASLT_ALGO_CONFIG_SPLITK_NUM).unwrap_or(0) <= 1)
            .collect();
        if candidates.is_empty() {
            return Ok((0.0, 0.0));
        }
        // Two rounds, the faster of each: the first candidate also warms the GPU's clocks.
        let first = self.time(stream, &plan, &candidates, pointers, TUNE_REPS, |_| Ok(()))?;
        let second = self.time(stream, &plan, &candidates, pointers, TUNE_REPS, |_| Ok(()))?;
        let millis: Vec<f32> = first.iter().zip(&second).map(|(a, b)| a.min(*b)).collect();
        let best = (0..millis.len())
            .min_by(|&a, &b| millis[a].total_cmp(&millis[b]))
            .unwrap_or(0);
        self.tuned.insert(
            (n, k, epilogue),
            Tuned {
                algo: candidates[best],
                rows: m,
            },
        );
        self.plans
            .retain(|s, _| (s.n, s.k, s.epilogue) != (n, k, epilogue));
        Ok((millis[0], millis[best]))
    }

    /// Times `algorithms` for `plan`, `reps` products each after an untimed one; each leaves
    /// its product in `y`, and `check` sees it (with the algorithm's index) before the next
    /// runs.
    fn time(
        &self,
        stream: &std::sync::Arc<CudaStream>,
        plan: &Plan,
        algorithms: &[sys::cublasLtMatmulAlgo_t],
        pointers: (u64, u64, u64, u64),
        reps: usize,
        mut check: impl FnMut(usize) -> Result<(), CudaError>,
    ) -> Result<Vec<f32>, CudaError> {
        let mut millis = Vec::with_capacity(algorithms.len());
        for (rank, algo) in algorithms.iter().enumerate() {
            self.run(stream, plan, algo, pointers)?;
            check(rank)?;
            let timing = Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT);
            let start = stream.record_event(timing).map_err(CudaError::driver)?;
            for _ in 0..reps {
                self.run(stream, plan, algo, pointers)?;
            }
            let end = stream.record_event(timing).map_err(CudaError::driver)?;
            let total = start.elapsed_ms(&end).map_err(CudaError::driver)?;
            millis.push(total / reps.max(1) as f32);
        }
        Ok(millis)
    }

    /// Whether `algo` computes `plan`'s shape within the workspace.
    fn supports(&self, plan: &Plan, algo: &sys::cublasLtMatmulAlgo_t) -> bool {
        let mut result = std::mem::MaybeUninit::<sys::cublasLtMatmulHeuristicResult_t>::zeroed();
        // SAFETY: every handle is alive; `result` is written by the call.
        let status = unsafe {
            sys::cublasLtMatmulAlgoCheck(
                self.handle,
                plan.desc,
                plan.a,
                plan.b,
                plan.d,
                plan.d,
                algo,
                result.as_mut_ptr(),
            )
        };
        // SAFETY: zero-initialised, and filled in on success.
        let result = unsafe { result.assume_init() };
        status == sys::cublasStatus_t::CUBLAS_STATUS_SUCCESS
            && result.workspaceSize <= WORKSPACE_BYTES
    }

    /// Queues one product with `algo` on `stream`.
    fn run(
        &self,
        stream: &CudaStream,
        plan: &Plan,
        algo: &sys::cublasLtMatmulAlgo_t,
        (x, w, bias, y): (u64, u64, u64, u64),
    ) -> Result<(), CudaError> {
        // SAFETY: the descriptor outlives the call; the pointer attribute is copied.
        unsafe {
            lt::set_matmul_desc_attribute(
                plan.desc,
                sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                (&raw const bias).cast(),
                size_of::<u64>(),
            )
            .map_err(CudaError::blas)?;
        }
        let (alpha, beta) = (1.0f32, plan.beta);
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
                algo,
                self.workspace.ptr() as *mut c_void,
                WORKSPACE_BYTES,
                stream.cu_stream() as sys::cudaStream_t,
            )
            .map_err(CudaError::blas)
        }
    }

    /// The descriptors of `shape`, with no algorithm chosen yet.
    fn descriptors(&self, shape: Shape) -> Result<Plan, CudaError> {
        let Shape { m, n, k, epilogue } = shape;
        let ty = self.ty.data_type();
        let layout = |rows: usize, cols: usize| {
            lt::create_matrix_layout(ty, rows as u64, cols as u64, rows as i64)
        };
        let desc = lt::create_matmul_desc(self.ty.compute_type(), sys::cudaDataType::CUDA_R_32F)
            .map_err(CudaError::blas)?;
        let plan = Plan {
            desc,
            a: layout(n, k).map_err(CudaError::blas)?,
            b: layout(k, m).map_err(CudaError::blas)?,
            d: layout(n, m).map_err(CudaError::blas)?,
            algo: sys::cublasLtMatmulAlgo_t { data: [0; 8] },
            beta: if epilogue == Epilogue::BiasResidual {
                1.0
            } else {
                0.0
            },
        };
        let epilogue = match epilogue {
            Epilogue::Bias | Epilogue::BiasResidual => {
                sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_BIAS
            }
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
        Ok(plan)
    }

    /// The heuristic's first `count` algorithms for `plan` (at least one, best first).
    fn algorithms(
        &self,
        plan: &Plan,
        Shape { m, n, k, .. }: Shape,
        count: usize,
    ) -> Result<Vec<sys::cublasLtMatmulAlgo_t>, CudaError> {
        let pref = lt::create_matmul_pref().map_err(CudaError::blas)?;
        let workspace = WORKSPACE_BYTES;
        let mut results: Vec<sys::cublasLtMatmulHeuristicResult_t> =
            Vec::with_capacity(count.max(1));
        let mut returned = 0i32;
        // SAFETY: as above; every handle passed is alive and `results` has room for
        // `count` entries, of which the call fills `returned`.
        let status = unsafe {
            let set = lt::set_matmul_pref_attribute(
                pref,
                sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                (&raw const workspace).cast(),
                size_of::<usize>(),
            );
            let status = set.and_then(|()| {
                sys::cublasLtMatmulAlgoGetHeuristic(
                    self.handle,
                    plan.desc,
                    plan.a,
                    plan.b,
                    plan.d,
                    plan.d,
                    pref,
                    count.max(1) as i32,
                    results.as_mut_ptr(),
                    &mut returned,
                )
                .result()
            });
            let _ = lt::destroy_matmul_pref(pref);
            if status.is_ok() {
                results.set_len(returned.max(0) as usize);
            }
            status
        };
        match status {
            Ok(()) if !results.is_empty() => Ok(results.iter().map(|r| r.algo).collect()),
            outcome => Err(CudaError::Blas(format!(
                "no cuBLASLt algorithm for [{m}, {k}] x [{k}, {n}]: {outcome:?}"
            ))),
        }
    }
}

/// One 4-byte configuration attribute of `algo` (None when cuBLASLt does not give it).
fn config(
    algo: &sys::cublasLtMatmulAlgo_t,
    attr: sys::cublasLtMatmulAlgoConfigAttributes_t,
) -> Option<u32> {
    let mut value = 0u32;
    let mut written = 0usize;
    // SAFETY: `value` has room for the 4-byte attributes asked for.
    let status = unsafe {
        sys::cublasLtMatmulAlgoConfigGetAttribute(
            algo,
            attr,
            (&raw mut value).cast(),
            size_of::<u32>(),
            &mut written,
        )
    };
    (status == sys::cublasStatus_t::CUBLAS_STATUS_SUCCESS).then_some(value)
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
