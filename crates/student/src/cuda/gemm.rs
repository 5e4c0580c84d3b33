//! Row-major f32 matrix products on cuBLAS (true f32: the handle keeps cuBLAS's default
//! math mode, no TF32), batched with constant strides.

use std::sync::Arc;

use cudarc::cublas::result as cublas;
use cudarc::cublas::sys::{cublasHandle_t, cublasOperation_t};
use cudarc::driver::CudaStream;

use super::GpuError;

/// A cuBLAS handle bound to the engine's stream.
pub(super) struct Gemm {
    handle: cublasHandle_t,
}

/// One operand: a device pointer, whether it is read transposed, and the elements between
/// consecutive matrices of a batch.
#[derive(Clone, Copy)]
pub(super) struct Operand {
    pub ptr: u64,
    pub transposed: bool,
    pub stride: usize,
}

/// `ptr` read as stored, `stride` elements apart in a batch.
pub(super) fn plain(ptr: u64, stride: usize) -> Operand {
    Operand {
        ptr,
        transposed: false,
        stride,
    }
}

/// `ptr` read transposed, `stride` elements apart in a batch.
pub(super) fn transposed(ptr: u64, stride: usize) -> Operand {
    Operand {
        ptr,
        transposed: true,
        stride,
    }
}

impl Gemm {
    /// A handle whose work goes to `stream`.
    pub fn new(stream: &Arc<CudaStream>) -> Result<Self, GpuError> {
        stream
            .context()
            .bind_to_thread()
            .map_err(GpuError::driver)?;
        let handle = cublas::create_handle().map_err(GpuError::blas)?;
        // SAFETY: a live handle and the engine's live stream.
        unsafe { cublas::set_stream(handle, stream.cu_stream() as _) }.map_err(GpuError::blas)?;
        Ok(Gemm { handle })
    }

    /// For each of `batch` matrices: `c [m, n] = alpha · op(a) [m, k] · op(b) [k, n] + beta ·
    /// c`, all row-major (a transposed operand is stored `[k, m]` / `[n, k]`). `c`'s stride is
    /// `m · n`.
    #[allow(clippy::too_many_arguments)]
    pub fn product(
        &self,
        (m, n, k): (usize, usize, usize),
        a: Operand,
        b: Operand,
        c: u64,
        batch: usize,
        alpha: f32,
        beta: f32,
    ) -> Result<(), GpuError> {
        let op = |t: bool| match t {
            true => cublasOperation_t::CUBLAS_OP_T,
            false => cublasOperation_t::CUBLAS_OP_N,
        };
        let lda = if a.transposed { m } else { k };
        let ldb = if b.transposed { k } else { n };
        // Row-major C = A·B is column-major Cᵀ = Bᵀ·Aᵀ: cuBLAS gets b first, sizes (n, m).
        // SAFETY: the engine sizes every buffer for the largest batch it was built for.
        unsafe {
            cublas::sgemm_strided_batched(
                self.handle,
                op(b.transposed),
                op(a.transposed),
                n as i32,
                m as i32,
                k as i32,
                &alpha,
                b.ptr as *const f32,
                ldb as i32,
                b.stride as i64,
                a.ptr as *const f32,
                lda as i32,
                a.stride as i64,
                &beta,
                c as *mut f32,
                n as i32,
                (m * n) as i64,
                batch as i32,
            )
        }
        .map_err(GpuError::blas)
    }
}

impl Drop for Gemm {
    fn drop(&mut self) {
        // SAFETY: created in `new`, destroyed once.
        let _ = unsafe { cublas::destroy_handle(self.handle) };
    }
}
