//! The engine's per-layer launches: embeddings, rotary positions, products with fused
//! epilogues, residual + norm, the MLP's activation, and a block's tail.

use super::CudaError;
use super::arch::{Mlp, Norm};
use super::blas::Epilogue;
use super::engine::ROW_THREADS;
use super::engine::{Arg, CudaEngine};
use super::profile::Stage;
use super::weights::{BlockWeights, LinearWeights, NormWeights};
use super::workspace::Workspace;

/// Threads per block of the element-wise kernels.
pub(super) const ELEMENT_THREADS: u32 = 256;

/// Rows of the products [`CudaEngine::tune_products`] times (passes are up to 65,536).
const TUNE_ROWS: usize = 32_768;

impl CudaEngine {
    /// Token (and learned position) embeddings of the uploaded ids, then the first block's
    /// norm into `a`.
    pub(super) fn embed(&self, work: &Workspace, rows: usize) -> Result<(), CudaError> {
        let weights = &self.weights;
        let positions = weights.position_embedding.as_ref().map_or(0, |b| b.ptr());
        let kernel = if self.is_half() {
            &self.kernels.embed_f16
        } else {
            &self.kernels.embed_f32
        };
        self.launch(
            kernel,
            (warp_blocks(rows), 1),
            ROW_THREADS,
            0,
            &[
                Arg::Ptr(work.ids.ptr()),
                Arg::Ptr(work.positions.ptr()),
                Arg::Ptr(weights.token_embedding.ptr()),
                Arg::Ptr(positions),
                Arg::Ptr(work.h.ptr()),
                Arg::Int(rows as i32),
                Arg::Int(self.arch.shape.d_model as i32),
            ],
        )?;
        self.mark(Stage::Embed)?;
        self.norm(
            work.h.ptr(),
            &weights.blocks[0].attn_norm,
            work.a.ptr(),
            rows,
            false,
        )
    }

    /// `x · W_qkv + b` of `rows` rows into `qkv` (rows of `qkv_width`), queries and keys
    /// rotated by the uploaded positions when the model's positions are rotary.
    pub(super) fn project_qkv(
        &self,
        work: &Workspace,
        block: &BlockWeights,
        qkv: u64,
        rows: usize,
    ) -> Result<(), CudaError> {
        let (d, width) = (self.arch.shape.d_model, self.arch.qkv_width());
        self.linear(
            work.a.ptr(),
            &block.qkv,
            qkv,
            (rows, width, d),
            Epilogue::Bias,
            Stage::Qkv,
        )?;
        let Some(tables) = &self.weights.rotary else {
            return Ok(());
        };
        let shape = &self.arch.shape;
        let kernel = if self.is_half() {
            &self.kernels.rotary_f16
        } else {
            &self.kernels.rotary_f32
        };
        let heads = shape.heads + shape.kv_heads;
        let pairs = rows * heads * shape.head_dim / 2;
        self.launch(
            kernel,
            (element_blocks(pairs), 1),
            ELEMENT_THREADS,
            0,
            &[
                Arg::Ptr(qkv),
                Arg::Ptr(work.positions.ptr()),
                Arg::Ptr(tables.cos.ptr()),
                Arg::Ptr(tables.sin.ptr()),
                Arg::Int(rows as i32),
                Arg::Int(width as i32),
                Arg::Int(heads as i32),
                Arg::Int(shape.head_dim as i32),
            ],
        )?;
        self.mark(Stage::Qkv)
    }

    /// After attention into `ctx`: the output projection, residual, MLP and residual of
    /// block `l` over `rows`, then the next block's norm into `a`.
    pub(super) fn mlp_and_next_norm(
        &self,
        work: &Workspace,
        block: &BlockWeights,
        l: usize,
        rows: usize,
    ) -> Result<(), CudaError> {
        let next = &self.weights.blocks[l + 1].attn_norm;
        self.block_tail(work, block, work.h.ptr(), rows, (next, work.a.ptr(), false))
    }

    /// `h += ctx · W_o + b_o; a = norm_2(h); h += MLP(a); then = norm(h)`, over `rows` rows
    /// of `h` (each residual add in its product's epilogue); `then` is (norm, destination,
    /// whether the destination is f32).
    pub(super) fn block_tail(
        &self,
        work: &Workspace,
        block: &BlockWeights,
        h: u64,
        rows: usize,
        then: (&NormWeights, u64, bool),
    ) -> Result<(), CudaError> {
        let (d, q) = (self.arch.shape.d_model, self.arch.q_width());
        let inner = self.arch.shape.mlp_width;
        self.linear(
            work.ctx.ptr(),
            &block.attn_out,
            h,
            (rows, d, q),
            Epilogue::BiasResidual,
            Stage::AttnProj,
        )?;
        self.norm(h, &block.mlp_norm, work.a.ptr(), rows, false)?;
        self.linear(
            work.a.ptr(),
            &block.mlp_in,
            work.mlp.ptr(),
            (rows, self.arch.mlp_in_width(), d),
            self.mlp_in_epilogue(),
            Stage::Fc,
        )?;
        let hidden = match (self.arch.mlp, &work.mlp_act) {
            (Mlp::Gelu { tanh: false }, _) => {
                self.exact_gelu(work.mlp.ptr(), rows * inner)?;
                work.mlp.ptr()
            }
            (Mlp::SwiGlu, Some(act)) => {
                self.swiglu(work.mlp.ptr(), act.ptr(), rows)?;
                act.ptr()
            }
            (Mlp::SwiGlu, None) => {
                return Err(CudaError::Internal(
                    "the workspace has no SwiGLU buffer".into(),
                ));
            }
            (Mlp::Gelu { tanh: true }, _) => work.mlp.ptr(),
        };
        self.linear(
            hidden,
            &block.mlp_out,
            h,
            (rows, d, inner),
            Epilogue::BiasResidual,
            Stage::MlpProj,
        )?;
        let (norm, out, out_f32) = then;
        self.norm(h, norm, out, rows, out_f32)
    }

    /// The MLP's first product's epilogue: with GPT-2's tanh GELU where cuBLASLt has it.
    fn mlp_in_epilogue(&self) -> Epilogue {
        match self.arch.mlp {
            Mlp::Gelu { tanh: true } => Epilogue::BiasGelu,
            Mlp::Gelu { tanh: false } | Mlp::SwiGlu => Epilogue::Bias,
        }
    }

    /// Chooses cuBLASLt's algorithm for each of a block's four products by timing the
    /// heuristic's candidates on the pass buffers (as scratch) at the largest pass, up to
    /// [`TUNE_ROWS`] rows ([`Blas::tune`](super::blas::Blas::tune)); once, at load. Returns
    /// a line per product: the heuristic's first choice's and the chosen one's time.
    pub(super) fn tune_products(&self, work: &Workspace) -> Result<Vec<String>, CudaError> {
        let rows = self.limits.pass_tokens.min(TUNE_ROWS);
        let (d, q) = (self.arch.shape.d_model, self.arch.q_width());
        let inner = self.arch.shape.mlp_width;
        let block = &self.weights.blocks[0];
        let hidden = work.mlp_act.as_ref().unwrap_or(&work.mlp).ptr();
        let products = [
            (
                "q|k|v",
                work.a.ptr(),
                &block.qkv,
                work.qkv.ptr(),
                (self.arch.qkv_width(), d),
                Epilogue::Bias,
            ),
            (
                "attention out",
                work.ctx.ptr(),
                &block.attn_out,
                work.h.ptr(),
                (d, q),
                Epilogue::BiasResidual,
            ),
            (
                "MLP in",
                work.a.ptr(),
                &block.mlp_in,
                work.mlp.ptr(),
                (self.arch.mlp_in_width(), d),
                self.mlp_in_epilogue(),
            ),
            (
                "MLP out",
                hidden,
                &block.mlp_out,
                work.h.ptr(),
                (d, inner),
                Epilogue::BiasResidual,
            ),
        ];
        let mut lines = Vec::with_capacity(products.len());
        for (name, x, weights, y, (n, k), epilogue) in products {
            let (first, chosen) = self.blas.borrow_mut().tune(
                &self.stream,
                (x, weights.weight.ptr(), weights.bias.ptr(), y),
                (rows, n, k),
                epilogue,
            )?;
            lines.push(format!(
                "{name}: [{rows} x {k}] x [{k} x {n}] {first:.3} ms (heuristic's first) -> {chosen:.3} ms"
            ));
        }
        Ok(lines)
    }

    /// `out[r] = norm(h[r])` of the residual rows.
    pub(super) fn norm(
        &self,
        h: u64,
        norm: &NormWeights,
        out: u64,
        rows: usize,
        out_f32: bool,
    ) -> Result<(), CudaError> {
        let kernel = match (self.is_half(), out_f32) {
            (true, false) => &self.kernels.ln_f16,
            (true, true) => &self.kernels.ln_f16_out_f32,
            (false, _) => &self.kernels.ln_f32,
        };
        self.launch(
            kernel,
            (warp_blocks(rows), 1),
            ROW_THREADS,
            0,
            &[
                Arg::Ptr(h),
                Arg::Ptr(norm.weight.ptr()),
                Arg::Ptr(norm.bias_ptr()),
                Arg::Ptr(out),
                Arg::Int(rows as i32),
                Arg::Int(self.arch.shape.d_model as i32),
                Arg::Float(self.arch.eps),
                Arg::Int(i32::from(self.arch.norm == Norm::Rms)),
            ],
        )?;
        self.mark(Stage::Norm)
    }

    fn exact_gelu(&self, x: u64, n: usize) -> Result<(), CudaError> {
        let kernel = if self.is_half() {
            &self.kernels.gelu_f16
        } else {
            &self.kernels.gelu_f32
        };
        self.launch(
            kernel,
            (element_blocks(n), 1),
            ELEMENT_THREADS,
            0,
            &[Arg::Ptr(x), Arg::Ptr(n as u64), Arg::Int(0)],
        )?;
        self.mark(Stage::Fc)
    }

    /// `act[r] = silu(gate[r]) · up[r]` for rows `gate | up` of `gate_up`.
    fn swiglu(&self, gate_up: u64, act: u64, rows: usize) -> Result<(), CudaError> {
        let kernel = if self.is_half() {
            &self.kernels.swiglu_f16
        } else {
            &self.kernels.swiglu_f32
        };
        let inner = self.arch.shape.mlp_width;
        self.launch(
            kernel,
            (element_blocks(rows * inner), 1),
            ELEMENT_THREADS,
            0,
            &[
                Arg::Ptr(gate_up),
                Arg::Ptr(act),
                Arg::Ptr(rows as u64),
                Arg::Int(inner as i32),
            ],
        )?;
        self.mark(Stage::Fc)
    }

    /// `y[rows, n] = x[rows, k] · W + b` (with the epilogue) in the compute type; `shape`
    /// is (rows, n, k).
    pub(super) fn linear(
        &self,
        x: u64,
        weights: &LinearWeights,
        y: u64,
        shape: (usize, usize, usize),
        epilogue: Epilogue,
        stage: Stage,
    ) -> Result<(), CudaError> {
        let (rows, n, k) = shape;
        self.blas.borrow_mut().linear(
            &self.stream,
            x,
            weights.weight.ptr(),
            weights.bias.ptr(),
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

/// Blocks of [`ELEMENT_THREADS`] for `n` elements (grid-stride loops past 65,535 blocks).
pub(super) fn element_blocks(n: usize) -> u32 {
    n.div_ceil(ELEMENT_THREADS as usize).min(65_535) as u32
}
