//! The engine's per-layer launches: embeddings, products with fused epilogues, residual +
//! LayerNorm, GELU, and a block's tail.

use super::CudaError;
use super::blas::Epilogue;
use super::buffer::DeviceBuffer;
use super::engine::ROW_THREADS;
use super::engine::{Arg, CudaGpt2};
use super::profile::Stage;
use super::workspace::{BlockWeights, Workspace};

impl CudaGpt2 {
    /// Token and position embeddings of the uploaded ids, then the first `ln_1` into `a`.
    pub(super) fn embed(&self, work: &Workspace, rows: usize) -> Result<(), CudaError> {
        self.launch(
            &self.kernels.embed,
            (warp_blocks(rows), 1),
            ROW_THREADS,
            0,
            &[
                Arg::Ptr(work.ids.ptr()),
                Arg::Ptr(work.positions.ptr()),
                Arg::Ptr(self.wte.ptr()),
                Arg::Ptr(self.wpe.ptr()),
                Arg::Ptr(work.h.ptr()),
                Arg::Int(rows as i32),
                Arg::Int(self.config.n_embd as i32),
            ],
        )?;
        self.mark(Stage::Embed)?;
        self.add_norm(
            work.h.ptr(),
            0,
            &self.blocks[0].ln_1,
            work.a.ptr(),
            rows,
            false,
        )
    }

    /// After attention into `ctx`: the output projection, residual, MLP and residual of
    /// block `l` over `rows`, then the next block's `ln_1` into `a`.
    pub(super) fn mlp_and_next_norm(
        &self,
        work: &Workspace,
        block: &BlockWeights,
        l: usize,
        rows: usize,
    ) -> Result<(), CudaError> {
        let next = &self.blocks[l + 1].ln_1;
        self.block_tail(work, block, work.h.ptr(), rows, (next, work.a.ptr(), false))
    }

    /// `h += ctx · W_o + b_o; a = ln_2(h); h += MLP(a); then = norm(h)`, over `rows` rows
    /// of `h`; `then` is (norm, destination, whether the destination is f32).
    pub(super) fn block_tail(
        &self,
        work: &Workspace,
        block: &BlockWeights,
        h: u64,
        rows: usize,
        then: (&(DeviceBuffer, DeviceBuffer), u64, bool),
    ) -> Result<(), CudaError> {
        let (d, inner) = (self.config.n_embd, self.config.n_inner);
        self.linear(
            work.ctx.ptr(),
            &block.attn_proj,
            work.o.ptr(),
            (rows, d, d),
            Epilogue::Bias,
            Stage::AttnProj,
        )?;
        self.add_norm(h, work.o.ptr(), &block.ln_2, work.a.ptr(), rows, false)?;
        let activation = if self.config.tanh_gelu {
            Epilogue::BiasGelu
        } else {
            Epilogue::Bias
        };
        self.linear(
            work.a.ptr(),
            &block.fc,
            work.mlp.ptr(),
            (rows, inner, d),
            activation,
            Stage::Fc,
        )?;
        if !self.config.tanh_gelu {
            self.exact_gelu(work.mlp.ptr(), rows * inner)?;
        }
        self.linear(
            work.mlp.ptr(),
            &block.mlp_proj,
            work.o.ptr(),
            (rows, d, inner),
            Epilogue::Bias,
            Stage::MlpProj,
        )?;
        let (norm, out, out_f32) = then;
        self.add_norm(h, work.o.ptr(), norm, out, rows, out_f32)
    }

    /// `h[r] += delta[r]` (when `delta` is not 0), then `out[r] = norm(h[r])`.
    pub(super) fn add_norm(
        &self,
        h: u64,
        delta: u64,
        norm: &(DeviceBuffer, DeviceBuffer),
        out: u64,
        rows: usize,
        out_f32: bool,
    ) -> Result<(), CudaError> {
        let kernel = match (self.is_half(), out_f32) {
            (true, false) => &self.kernels.add_ln_f16,
            (true, true) => &self.kernels.add_ln_f16_out_f32,
            (false, _) => &self.kernels.add_ln_f32,
        };
        self.launch(
            kernel,
            (warp_blocks(rows), 1),
            ROW_THREADS,
            0,
            &[
                Arg::Ptr(h),
                Arg::Ptr(delta),
                Arg::Ptr(norm.0.ptr()),
                Arg::Ptr(norm.1.ptr()),
                Arg::Ptr(out),
                Arg::Int(rows as i32),
                Arg::Int(self.config.n_embd as i32),
                Arg::Float(self.config.layer_norm_epsilon as f32),
            ],
        )?;
        self.mark(Stage::Norm)
    }

    pub(super) fn exact_gelu(&self, x: u64, n: usize) -> Result<(), CudaError> {
        let kernel = if self.is_half() {
            &self.kernels.gelu_f16
        } else {
            &self.kernels.gelu_f32
        };
        let blocks = n.div_ceil(256).min(65_535) as u32;
        self.launch(
            kernel,
            (blocks, 1),
            256,
            0,
            &[Arg::Ptr(x), Arg::Ptr(n as u64), Arg::Int(0)],
        )?;
        self.mark(Stage::Fc)
    }

    /// `y[rows, n] = x[rows, k] · W + b` (with the epilogue) in the compute type; `shape`
    /// is (rows, n, k).
    pub(super) fn linear(
        &self,
        x: u64,
        weights: &(DeviceBuffer, DeviceBuffer),
        y: u64,
        shape: (usize, usize, usize),
        epilogue: Epilogue,
        stage: Stage,
    ) -> Result<(), CudaError> {
        let (rows, n, k) = shape;
        self.blas.borrow_mut().linear(
            &self.stream,
            x,
            weights.0.ptr(),
            weights.1.ptr(),
            y,
            rows,
            n,
            k,
            epilogue,
        )?;
        self.mark(stage)
    }
}

/// Blocks of [`ROW_THREADS`] for one warp per row.
pub(super) fn warp_blocks(rows: usize) -> u32 {
    rows.div_ceil((ROW_THREADS / 32) as usize) as u32
}
