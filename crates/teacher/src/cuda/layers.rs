//! The engine's per-layer launches: embeddings, rotary positions, products with fused
//! epilogues (the residual add among them), norms, the MLP's activation, and a block's tail.

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
        self.linear(Product::Qkv, block, (work.a.ptr(), qkv), rows)?;
        let Some(tables) = &self.weights.rotary else {
            return Ok(());
        };
        let shape = &self.arch.shape;
        let kernel = if self.is_half() {
            &self.kernels.rotary_f16
        } else {
            &self.kernels.rotary_f32
        };
        let width = self.arch.qkv_width();
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
        let inner = self.arch.shape.mlp_width;
        self.linear(Product::AttnOut, block, (work.ctx.ptr(), h), rows)?;
        self.norm(h, &block.mlp_norm, work.a.ptr(), rows, false)?;
        self.linear(Product::MlpIn, block, (work.a.ptr(), work.mlp.ptr()), rows)?;
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
        self.linear(Product::MlpOut, block, (hidden, h), rows)?;
        let (norm, out, out_f32) = then;
        self.norm(h, norm, out, rows, out_f32)
    }

    /// How `product` is computed: its (n, k), its epilogue and the stage it is profiled
    /// under. The forward passes and the tuning at load both read it here.
    fn product_shape(&self, product: Product) -> ((usize, usize), Epilogue, Stage) {
        let (d, q) = (self.arch.shape.d_model, self.arch.q_width());
        match product {
            Product::Qkv => ((self.arch.qkv_width(), d), Epilogue::Bias, Stage::Qkv),
            Product::AttnOut => ((d, q), Epilogue::BiasResidual, Stage::AttnProj),
            Product::MlpIn => {
                // GPT-2's tanh GELU in the epilogue, where cuBLASLt has it.
                let epilogue = match self.arch.mlp {
                    Mlp::Gelu { tanh: true } => Epilogue::BiasGelu,
                    Mlp::Gelu { tanh: false } | Mlp::SwiGlu => Epilogue::Bias,
                };
                ((self.arch.mlp_in_width(), d), epilogue, Stage::Fc)
            }
            Product::MlpOut => (
                (d, self.arch.shape.mlp_width),
                Epilogue::BiasResidual,
                Stage::MlpProj,
            ),
        }
    }

    /// Chooses cuBLASLt's algorithm for each of a block's four products by timing the
    /// heuristic's candidates on the pass buffers (as scratch) at the largest pass, up to
    /// [`TUNE_ROWS`] rows ([`Blas::tune`](super::blas::Blas::tune)); once, at load. Returns
    /// a line per product: the heuristic's first choice's and the chosen one's time.
    pub(super) fn tune_products(&self, work: &Workspace) -> Result<Vec<String>, CudaError> {
        let rows = self.limits.pass_tokens.min(TUNE_ROWS);
        let block = &self.weights.blocks[0];
        let hidden = work.mlp_act.as_ref().unwrap_or(&work.mlp).ptr();
        let mut lines = Vec::with_capacity(Product::ALL.len());
        for product in Product::ALL {
            // Each product's input and output buffers of a pass, as scratch.
            let (x, y) = match product {
                Product::Qkv => (work.a.ptr(), work.qkv.ptr()),
                Product::AttnOut => (work.ctx.ptr(), work.h.ptr()),
                Product::MlpIn => (work.a.ptr(), work.mlp.ptr()),
                Product::MlpOut => (hidden, work.h.ptr()),
            };
            let ((n, k), epilogue, _) = self.product_shape(product);
            let weights = product.weights(block);
            let (first, chosen) = self.blas.borrow_mut().tune(
                &self.stream,
                (x, weights.weight.ptr(), weights.bias.ptr(), y),
                (rows, n, k),
                epilogue,
            )?;
            lines.push(format!(
                "{}: [{rows} x {k}] x [{k} x {n}] {first:.3} ms (heuristic's first) -> {chosen:.3} ms",
                product.name()
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

    /// `y[rows, n] = x[rows, k] · W + b` of `block`'s `product` (with its epilogue) in the
    /// compute type; `buffers` is (x, y).
    fn linear(
        &self,
        product: Product,
        block: &BlockWeights,
        (x, y): (u64, u64),
        rows: usize,
    ) -> Result<(), CudaError> {
        let ((n, k), epilogue, stage) = self.product_shape(product);
        let weights = product.weights(block);
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

/// A block's four matrix products.
#[derive(Debug, Clone, Copy)]
enum Product {
    Qkv,
    AttnOut,
    MlpIn,
    MlpOut,
}

impl Product {
    const ALL: [Product; 4] = [
        Product::Qkv,
        Product::AttnOut,
        Product::MlpIn,
        Product::MlpOut,
    ];

    /// Its weights in `block`.
    fn weights(self, block: &BlockWeights) -> &LinearWeights {
        match self {
            Product::Qkv => &block.qkv,
            Product::AttnOut => &block.attn_out,
            Product::MlpIn => &block.mlp_in,
            Product::MlpOut => &block.mlp_out,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Product::Qkv => "q|k|v",
            Product::AttnOut => "attention out",
            Product::MlpIn => "MLP in",
            Product::MlpOut => "MLP out",
        }
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
