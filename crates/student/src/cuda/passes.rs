//! The engine's passes: forward through both branches, the four loss terms, backward, and
//! clipping + AdamW; see the [module docs](super) for the arithmetic they reproduce.

use super::GpuError;
use super::engine::{Arg, FusedStudent, SplitSlot, Sums, THREADS};
use super::gemm::{plain, transposed};
use super::kernels::PARTIAL_BLOCKS;
use crate::config::LossKind;
use crate::parallel::mix;

/// Warps per block of the one-warp-per-row kernels.
const ROWS_PER_BLOCK: usize = THREADS as usize / 32;

/// Blocks for one warp per row.
fn row_blocks(rows: usize) -> u32 {
    rows.div_ceil(ROWS_PER_BLOCK) as u32
}

/// Blocks for one thread per element (grid-stride kernels cap the grid).
fn element_blocks(n: usize) -> u32 {
    n.div_ceil(THREADS as usize).min(4096) as u32
}

/// Blocks of the column-sum kernels (32 columns each).
fn column_blocks(columns: usize) -> u32 {
    columns.div_ceil(32) as u32
}

fn loss_kind(kind: LossKind) -> i32 {
    match kind {
        LossKind::SmoothL1 => 0,
        LossKind::Mse => 1,
        LossKind::L1 => 2,
    }
}

/// The dropout keys of one step (`None`: no dropout, as in evaluation): draw `4·layer + j`
/// is j = 0 attention probabilities, 1 attention output, 2 hidden, 3 feed-forward output.
#[derive(Clone, Copy)]
struct Dropout {
    seed: Option<u64>,
    keep: f32,
}

impl Dropout {
    fn key(&self, layer: usize, draw: u64) -> (Arg, Arg) {
        match self.seed {
            Some(seed) => (
                Arg::Wide(mix(seed, 4 * layer as u64 + draw, 3)),
                Arg::Float(self.keep),
            ),
            None => (Arg::Wide(0), Arg::Float(1.0)),
        }
    }
}

impl FusedStudent {
    /// One optimiser step on the windows at `positions` of the order set by
    /// [`set_order`](Self::set_order), dropout masks from `step_seed`, at learning rate
    /// `lr`; its loss terms are added to the epoch's sums times `share` (the batch's
    /// windows over the epoch's). Queued: nothing waits for the device.
    pub fn train_step(
        &mut self,
        positions: std::ops::Range<usize>,
        step_seed: u64,
        lr: f64,
        share: f32,
    ) -> Result<(), GpuError> {
        let batch = positions.len();
        let dropout = Dropout {
            seed: (self.dims.keep < 1.0).then_some(step_seed),
            keep: self.dims.keep,
        };
        self.forward(SplitSlot::Train, positions.start, batch, dropout)?;
        self.losses(batch, Sums::TRAIN, share)?;
        self.backward(batch, dropout)?;
        self.optimizer_step(lr)
    }

    /// Mean loss terms over the windows of `batches` (consecutive ranges of the order set
    /// by [`set_order`](Self::set_order)) of `slot`, without dropout: (total, forecast,
    /// recon, feature, att).
    pub fn evaluate(
        &mut self,
        slot: SplitSlot,
        batches: &[std::ops::Range<usize>],
    ) -> Result<[f32; crate::loss::TERMS], GpuError> {
        let total: usize = batches.iter().map(|r| r.len()).sum();
        let zero = [0.0f32; crate::loss::TERMS];
        self.sums.values.upload(&self.stream, Sums::VAL, &zero)?;
        let off = Dropout {
            seed: None,
            keep: 1.0,
        };
        for range in batches {
            self.forward(slot, range.start, range.len(), off)?;
            self.losses(range.len(), Sums::VAL, range.len() as f32 / total as f32)?;
        }
        let all = self.sums.values.download(&self.stream)?;
        Ok(Sums::terms(&all, Sums::VAL))
    }

    fn param(&self, offset: usize) -> u64 {
        self.state.params.at(offset)
    }

    fn grad(&self, offset: usize) -> u64 {
        self.state.grads.at(offset)
    }

    /// Both branches of `batch` windows at `start` of the order: tokens, encoders, final
    /// norm and projections into the buffers.
    fn forward(
        &self,
        slot: SplitSlot,
        start: usize,
        batch: usize,
        dropout: Dropout,
    ) -> Result<(), GpuError> {
        let d = self.dims;
        let split = self.splits[slot as usize]
            .as_ref()
            .ok_or_else(|| GpuError::Internal(format!("{slot:?} split not uploaded")))?;
        if batch > d.batch_max || start + batch > split.windows {
            return Err(GpuError::Internal(format!(
                "batch of {batch} at {start}: buffers hold {}, the split {}",
                d.batch_max, split.windows
            )));
        }
        let k = &self.kernels;
        let b = &self.buffers;
        let rows = batch * d.vars;
        let c = d.channel;
        let idx = self.order.at(start);
        self.launch(
            &k.revin_rows,
            row_blocks(rows),
            &[
                Arg::Ptr(split.x.ptr()),
                Arg::Ptr(idx),
                Arg::Int(rows as i32),
                Arg::Int(d.input_len as i32),
                Arg::Int(d.vars as i32),
                Arg::Ptr(b.xt.ptr()),
                Arg::Ptr(b.mean.ptr()),
                Arg::Ptr(b.stdv.ptr()),
            ],
        )?;
        for (src, width, dst) in [
            (&split.emb, d.vars * d.d_llm, &b.emb),
            (&split.y, d.horizon * d.vars, &b.target),
        ] {
            self.launch(
                &k.gather_rows,
                element_blocks(batch * width),
                &[
                    Arg::Ptr(src.ptr()),
                    Arg::Ptr(idx),
                    Arg::Int(batch as i32),
                    Arg::Int(width as i32),
                    Arg::Ptr(dst.ptr()),
                ],
            )?;
        }
        let o = &self.offsets;
        let branch1 = b.tokens.at(rows * c);
        self.gemm.product(
            (rows, c, d.input_len),
            plain(b.xt.ptr(), 0),
            plain(self.param(o.length_to_feature.weight), 0),
            b.tokens.ptr(),
            1,
            1.0,
            0.0,
        )?;
        self.gemm.product(
            (rows, c, d.d_llm),
            plain(b.emb.ptr(), 0),
            plain(self.param(o.token_to_feature.weight), 0),
            branch1,
            1,
            1.0,
            0.0,
        )?;
        self.launch(
            &k.add_bias2,
            element_blocks(2 * rows * c),
            &[
                Arg::Ptr(b.tokens.ptr()),
                Arg::Ptr(self.param(o.length_to_feature.bias)),
                Arg::Ptr(self.param(o.token_to_feature.bias)),
                Arg::Int(rows as i32),
                Arg::Int(c as i32),
            ],
        )?;
        for layer in 0..b.layers.len() {
            self.layer_forward(layer, batch, dropout)?;
        }
        let last = &b.layers[b.layers.len() - 1];
        self.norm(
            None,
            last.x2.ptr(),
            None,
            (Arg::Wide(0), Arg::Float(1.0)),
            o.final_norm,
            (b.enc.ptr(), b.xhat_final.ptr(), b.sd_final.ptr()),
            rows,
        )?;
        self.gemm.product(
            (rows, d.horizon, c),
            plain(b.enc.ptr(), rows * c),
            plain(self.param(o.projection.weight), c * d.horizon),
            b.proj.ptr(),
            2,
            1.0,
            0.0,
        )
    }

    /// `out = LayerNorm(res + dropout(y + bias))` of both branches.
    #[allow(clippy::too_many_arguments)]
    fn norm(
        &self,
        res: Option<u64>,
        y: u64,
        bias: Option<u64>,
        (key, keep): (Arg, Arg),
        at: super::params::NormAt,
        (out, xhat, sd): (u64, u64, u64),
        rows: usize,
    ) -> Result<(), GpuError> {
        self.launch(
            &self.kernels.residual_dropout_ln,
            row_blocks(2 * rows),
            &[
                Arg::Ptr(res.unwrap_or(0)),
                Arg::Ptr(y),
                Arg::Ptr(bias.unwrap_or(0)),
                key,
                keep,
                Arg::Ptr(self.param(at.gamma)),
                Arg::Ptr(self.param(at.beta)),
                Arg::Ptr(out),
                Arg::Ptr(xhat),
                Arg::Ptr(sd),
                Arg::Int(2),
                Arg::Int(rows as i32),
                Arg::Int(self.dims.channel as i32),
            ],
        )
    }

    /// Moves `[2, B·N, C]` tokens to heads (`to_heads`, adding `bias`) or back.
    fn heads(
        &self,
        src: u64,
        bias: Option<u64>,
        dst: u64,
        to_heads: bool,
        batch: usize,
    ) -> Result<(), GpuError> {
        let d = self.dims;
        self.launch(
            &self.kernels.heads_layout,
            element_blocks(2 * batch * d.vars * d.channel),
            &[
                Arg::Ptr(src),
                Arg::Ptr(bias.unwrap_or(0)),
                Arg::Ptr(dst),
                Arg::Int(to_heads as i32),
                Arg::Int(2),
                Arg::Int(batch as i32),
                Arg::Int(d.vars as i32),
                Arg::Int(d.heads as i32),
                Arg::Int(d.head_dim() as i32),
            ],
        )
    }

    fn layer_forward(&self, layer: usize, batch: usize, dropout: Dropout) -> Result<(), GpuError> {
        let d = self.dims;
        let (c, f, n, hd) = (d.channel, d.d_ff, d.vars, d.head_dim());
        let rows = batch * n;
        let b = &self.buffers;
        let at = self.offsets.layers[layer];
        let buf = &b.layers[layer];
        let x = if layer == 0 {
            b.tokens.ptr()
        } else {
            b.layers[layer - 1].x2.ptr()
        };
        let tokens = rows * c;
        for (w, out, head, bias) in [
            (at.query, &buf.q, &buf.qh, at.query.bias),
            (at.key, &buf.k, &buf.kh, at.key.bias),
            (at.value, &buf.v, &buf.vh, at.value.bias),
        ] {
            self.gemm.product(
                (rows, c, c),
                plain(x, tokens),
                plain(self.param(w.weight), c * c),
                out.ptr(),
                2,
                1.0,
                0.0,
            )?;
            self.heads(out.ptr(), Some(self.param(bias)), head.ptr(), true, batch)?;
        }
        let groups = 2 * batch * d.heads;
        let scale = 1.0 / (hd as f32).sqrt();
        self.gemm.product(
            (n, n, hd),
            plain(buf.qh.ptr(), n * hd),
            transposed(buf.kh.ptr(), n * hd),
            buf.scores.ptr(),
            groups,
            scale,
            0.0,
        )?;
        let (key, keep) = dropout.key(layer, 0);
        self.launch(
            &self.kernels.softmax_dropout,
            row_blocks(groups * n),
            &[
                Arg::Ptr(buf.scores.ptr()),
                Arg::Ptr(buf.probs.ptr()),
                Arg::Ptr(buf.dropped.ptr()),
                Arg::Int((groups * n) as i32),
                Arg::Int(n as i32),
                key,
                keep,
            ],
        )?;
        self.gemm.product(
            (n, hd, n),
            plain(buf.dropped.ptr(), n * n),
            plain(buf.vh.ptr(), n * hd),
            buf.ctxh.ptr(),
            groups,
            1.0,
            0.0,
        )?;
        self.heads(buf.ctxh.ptr(), None, buf.ctx.ptr(), false, batch)?;
        self.gemm.product(
            (rows, c, c),
            plain(buf.ctx.ptr(), tokens),
            plain(self.param(at.out.weight), c * c),
            buf.attn_out.ptr(),
            2,
            1.0,
            0.0,
        )?;
        self.norm(
            Some(x),
            buf.attn_out.ptr(),
            Some(self.param(at.out.bias)),
            dropout.key(layer, 1),
            at.norm1,
            (buf.x1.ptr(), buf.xhat1.ptr(), buf.sd1.ptr()),
            rows,
        )?;
        self.gemm.product(
            (rows, f, c),
            plain(buf.x1.ptr(), tokens),
            plain(self.param(at.conv1.weight), c * f),
            buf.hidden_pre.ptr(),
            2,
            1.0,
            0.0,
        )?;
        let (key, keep) = dropout.key(layer, 2);
        self.launch(
            &self.kernels.bias_relu_dropout,
            element_blocks(2 * rows * f),
            &[
                Arg::Ptr(buf.hidden_pre.ptr()),
                Arg::Ptr(buf.hidden.ptr()),
                Arg::Ptr(self.param(at.conv1.bias)),
                key,
                keep,
                Arg::Int(2),
                Arg::Int(rows as i32),
                Arg::Int(f as i32),
            ],
        )?;
        self.gemm.product(
            (rows, c, f),
            plain(buf.hidden.ptr(), rows * f),
            plain(self.param(at.conv2.weight), f * c),
            buf.ffn_out.ptr(),
            2,
            1.0,
            0.0,
        )?;
        self.norm(
            Some(buf.x1.ptr()),
            buf.ffn_out.ptr(),
            Some(self.param(at.conv2.bias)),
            dropout.key(layer, 3),
            at.norm2,
            (buf.x2.ptr(), buf.xhat2.ptr(), buf.sd2.ptr()),
            rows,
        )
    }

    /// The four terms of the batch just forwarded (their gradients into `dproj`,
    /// `denc` and `gatt`), their total into the step's values, and `share` of them into the
    /// sums at `sums_at`.
    fn losses(&self, batch: usize, sums_at: usize, share: f32) -> Result<(), GpuError> {
        let d = self.dims;
        let l = &self.loss;
        let b = &self.buffers;
        let s = &self.scratch;
        let rows = batch * d.vars;
        let partial = self.sums.values.at(Sums::LOSS_PARTIALS);
        let o = &self.offsets;
        self.launch(
            &self.kernels.projection_loss,
            PARTIAL_BLOCKS,
            &[
                Arg::Ptr(b.proj.ptr()),
                Arg::Ptr(self.param(o.projection.bias)),
                Arg::Ptr(b.target.ptr()),
                Arg::Ptr(b.mean.ptr()),
                Arg::Ptr(b.stdv.ptr()),
                Arg::Ptr(b.dproj.ptr()),
                Arg::Ptr(partial),
                Arg::Int(batch as i32),
                Arg::Int(d.vars as i32),
                Arg::Int(d.horizon as i32),
                Arg::Int(l.target_only as i32),
                Arg::Int(loss_kind(l.forecast_kind)),
                Arg::Float(l.forecast_weight as f32),
                Arg::Float(l.recon_weight as f32),
            ],
        )?;
        // d(loss)/d(encodings) through the projection, then the feature term's share.
        self.gemm.product(
            (rows, d.channel, d.horizon),
            plain(b.dproj.ptr(), rows * d.horizon),
            transposed(self.param(o.projection.weight), d.channel * d.horizon),
            s.denc.ptr(),
            2,
            1.0,
            0.0,
        )?;
        self.launch(
            &self.kernels.feature_loss,
            PARTIAL_BLOCKS,
            &[
                Arg::Ptr(b.enc.ptr()),
                Arg::Ptr(s.denc.ptr()),
                Arg::Ptr(partial),
                Arg::Int((rows * d.channel) as i32),
                Arg::Int(loss_kind(l.distill_kind)),
                Arg::Float(l.feature_weight as f32),
            ],
        )?;
        let last = &b.layers[b.layers.len() - 1];
        self.launch(
            &self.kernels.attention_loss,
            PARTIAL_BLOCKS,
            &[
                Arg::Ptr(last.dropped.ptr()),
                Arg::Ptr(s.gatt.ptr()),
                Arg::Ptr(partial),
                Arg::Int(batch as i32),
                Arg::Int((d.heads * d.vars * d.vars) as i32),
                Arg::Int(loss_kind(l.distill_kind)),
                Arg::Float(l.att_weight as f32),
            ],
        )?;
        self.launch(
            &self.kernels.finish_losses,
            1,
            &[
                Arg::Ptr(partial),
                Arg::Ptr(self.sums.values.at(Sums::STEP)),
                Arg::Ptr(self.sums.values.at(sums_at)),
                Arg::Float(share),
                Arg::Float(l.forecast_weight as f32),
                Arg::Float(l.recon_weight as f32),
                Arg::Float(l.feature_weight as f32),
                Arg::Float(l.att_weight as f32),
            ],
        )
    }

    /// Sums over rows of `g` `[k, rows, width]` into the gradient at `offset` (`[k, width]`).
    fn column_sums(
        &self,
        g: u64,
        offset: usize,
        k: usize,
        rows: usize,
        width: usize,
    ) -> Result<(), GpuError> {
        self.launch(
            &self.kernels.column_sums,
            column_blocks(k * width),
            &[
                Arg::Ptr(g),
                Arg::Ptr(self.grad(offset)),
                Arg::Int(k as i32),
                Arg::Int(rows as i32),
                Arg::Int(width as i32),
            ],
        )
    }

    /// Backward of a `norm`: from `dout` to `dres` (and `dbranch`, the dropped-out branch's
    /// input, when given), and the gain and shift gradients.
    #[allow(clippy::too_many_arguments)]
    fn norm_backward(
        &self,
        dout: u64,
        (xhat, sd): (u64, u64),
        at: super::params::NormAt,
        dres: u64,
        dbranch: Option<u64>,
        (key, keep): (Arg, Arg),
        rows: usize,
    ) -> Result<(), GpuError> {
        let c = self.dims.channel;
        self.launch(
            &self.kernels.ln_backward,
            row_blocks(2 * rows),
            &[
                Arg::Ptr(dout),
                Arg::Ptr(xhat),
                Arg::Ptr(sd),
                Arg::Ptr(self.param(at.gamma)),
                Arg::Ptr(dres),
                Arg::Ptr(dbranch.unwrap_or(0)),
                key,
                keep,
                Arg::Int(2),
                Arg::Int(rows as i32),
                Arg::Int(c as i32),
            ],
        )?;
        self.launch(
            &self.kernels.ln_param_grads,
            column_blocks(2 * c),
            &[
                Arg::Ptr(dout),
                Arg::Ptr(xhat),
                Arg::Ptr(self.grad(at.gamma)),
                Arg::Ptr(self.grad(at.beta)),
                Arg::Int(2),
                Arg::Int(rows as i32),
                Arg::Int(c as i32),
            ],
        )
    }

    /// Weight and bias gradients of a Linear of both branches (`k` = 2) or one: input `x`
    /// `[k, rows, din]`, output gradient `dy` `[k, rows, dout]`.
    #[allow(clippy::too_many_arguments)]
    fn linear_grads(
        &self,
        at: super::params::LinearAt,
        x: u64,
        dy: u64,
        (din, dout): (usize, usize),
        rows: usize,
        k: usize,
    ) -> Result<(), GpuError> {
        self.gemm.product(
            (din, dout, rows),
            transposed(x, rows * din),
            plain(dy, rows * dout),
            self.grad(at.weight),
            k,
            1.0,
            0.0,
        )?;
        self.column_sums(dy, at.bias, k, rows, dout)
    }

    /// Backward of a Linear of both branches: its weight and bias gradients (input `x`,
    /// output gradient `dy`), and `dx` (+)= `dy · Wᵀ` (added when `accumulate`).
    fn linear_backward(
        &self,
        at: super::params::LinearAt,
        x: u64,
        dy: u64,
        (dx, accumulate): (u64, bool),
        (din, dout): (usize, usize),
        rows: usize,
    ) -> Result<(), GpuError> {
        self.linear_grads(at, x, dy, (din, dout), rows, 2)?;
        self.gemm.product(
            (rows, din, dout),
            plain(dy, rows * dout),
            transposed(self.param(at.weight), din * dout),
            dx,
            2,
            1.0,
            if accumulate { 1.0 } else { 0.0 },
        )
    }

    /// Gradients of every parameter for the batch just forwarded (its loss gradients set
    /// by `losses`), into the flat gradient row.
    fn backward(&self, batch: usize, dropout: Dropout) -> Result<(), GpuError> {
        let d = self.dims;
        let (c, n) = (d.channel, d.vars);
        let rows = batch * n;
        let b = &self.buffers;
        let s = &self.scratch;
        let o = &self.offsets;
        self.linear_grads(
            o.projection,
            b.enc.ptr(),
            b.dproj.ptr(),
            (c, d.horizon),
            rows,
            2,
        )?;
        self.norm_backward(
            s.denc.ptr(),
            (b.xhat_final.ptr(), b.sd_final.ptr()),
            o.final_norm,
            s.dx.ptr(),
            None,
            (Arg::Wide(0), Arg::Float(1.0)),
            rows,
        )?;
        for layer in (0..b.layers.len()).rev() {
            self.layer_backward(layer, batch, dropout)?;
        }
        // s.dx now holds d(loss)/d(tokens).
        self.linear_grads(
            o.length_to_feature,
            b.xt.ptr(),
            s.dx.ptr(),
            (d.input_len, c),
            rows,
            1,
        )?;
        self.linear_grads(
            o.token_to_feature,
            b.emb.ptr(),
            s.dx.at(rows * c),
            (d.d_llm, c),
            rows,
            1,
        )
    }

    /// One layer's backward pass: `scratch.dx` holds d(loss)/d(layer output) and receives
    /// d(loss)/d(layer input).
    fn layer_backward(&self, layer: usize, batch: usize, dropout: Dropout) -> Result<(), GpuError> {
        let d = self.dims;
        let (c, f, n, hd) = (d.channel, d.d_ff, d.vars, d.head_dim());
        let rows = batch * n;
        let b = &self.buffers;
        let s = &self.scratch;
        let at = self.offsets.layers[layer];
        let buf = &b.layers[layer];
        let x = if layer == 0 {
            b.tokens.ptr()
        } else {
            b.layers[layer - 1].x2.ptr()
        };
        // LN2: dx → dx1 (residual) and dffn (the feed-forward output's gradient).
        self.norm_backward(
            s.dx.ptr(),
            (buf.xhat2.ptr(), buf.sd2.ptr()),
            at.norm2,
            s.dx1.ptr(),
            Some(s.dffn.ptr()),
            dropout.key(layer, 3),
            rows,
        )?;
        self.linear_backward(
            at.conv2,
            buf.hidden.ptr(),
            s.dffn.ptr(),
            (s.dhidden.ptr(), false),
            (f, c),
            rows,
        )?;
        let (key, keep) = dropout.key(layer, 2);
        self.launch(
            &self.kernels.relu_dropout_backward,
            element_blocks(2 * rows * f),
            &[
                Arg::Ptr(s.dhidden.ptr()),
                Arg::Ptr(buf.hidden_pre.ptr()),
                Arg::Ptr(s.dpre.ptr()),
                key,
                keep,
                Arg::Wide((2 * rows * f) as u64),
            ],
        )?;
        self.linear_backward(
            at.conv1,
            buf.x1.ptr(),
            s.dpre.ptr(),
            (s.dx1.ptr(), true),
            (c, f),
            rows,
        )?;
        // LN1: dx1 → dx (residual) and dattn (the attention output's gradient).
        self.norm_backward(
            s.dx1.ptr(),
            (buf.xhat1.ptr(), buf.sd1.ptr()),
            at.norm1,
            s.dx.ptr(),
            Some(s.dattn.ptr()),
            dropout.key(layer, 1),
            rows,
        )?;
        self.linear_backward(
            at.out,
            buf.ctx.ptr(),
            s.dattn.ptr(),
            (s.dctx.ptr(), false),
            (c, c),
            rows,
        )?;
        self.heads(s.dctx.ptr(), None, s.dctxh.ptr(), true, batch)?;
        let groups = 2 * batch * d.heads;
        self.gemm.product(
            (n, n, hd),
            plain(s.dctxh.ptr(), n * hd),
            transposed(buf.vh.ptr(), n * hd),
            s.ddropped.ptr(),
            groups,
            1.0,
            0.0,
        )?;
        self.gemm.product(
            (n, hd, n),
            transposed(buf.dropped.ptr(), n * n),
            plain(s.dctxh.ptr(), n * hd),
            s.dvh.ptr(),
            groups,
            1.0,
            0.0,
        )?;
        let last = layer + 1 == b.layers.len();
        let (key, keep) = dropout.key(layer, 0);
        self.launch(
            &self.kernels.softmax_backward,
            row_blocks(groups * n),
            &[
                Arg::Ptr(buf.probs.ptr()),
                Arg::Ptr(s.ddropped.ptr()),
                Arg::Ptr(if last { s.gatt.ptr() } else { 0 }),
                Arg::Ptr(buf.scores.ptr()),
                Arg::Int((groups * n) as i32),
                Arg::Int(n as i32),
                Arg::Int(batch as i32),
                Arg::Int(d.heads as i32),
                key,
                keep,
            ],
        )?;
        let scale = 1.0 / (hd as f32).sqrt();
        self.gemm.product(
            (n, hd, n),
            plain(buf.scores.ptr(), n * n),
            plain(buf.kh.ptr(), n * hd),
            s.dqh.ptr(),
            groups,
            scale,
            0.0,
        )?;
        self.gemm.product(
            (n, hd, n),
            transposed(buf.scores.ptr(), n * n),
            plain(buf.qh.ptr(), n * hd),
            s.dkh.ptr(),
            groups,
            scale,
            0.0,
        )?;
        for (dh, dtok, w) in [
            (&s.dqh, &s.dq, at.query),
            (&s.dkh, &s.dk, at.key),
            (&s.dvh, &s.dv, at.value),
        ] {
            self.heads(dh.ptr(), None, dtok.ptr(), false, batch)?;
            self.linear_backward(w, x, dtok.ptr(), (s.dx.ptr(), true), (c, c), rows)?;
        }
        Ok(())
    }

    /// Clipping by the global gradient norm and one AdamW step at `lr` (the scalar factors
    /// in f64, as the `optim` module computes them).
    fn optimizer_step(&mut self, lr: f64) -> Result<(), GpuError> {
        self.steps += 1;
        let c = &self.optim;
        let step = self.steps as i32;
        let bc1 = 1.0 - c.beta1.powi(step);
        let bc2 = 1.0 - c.beta2.powi(step);
        let len = self.layout.len();
        let norm_partials = self.sums.values.at(Sums::NORM_PARTIALS);
        self.launch(
            &self.kernels.square_partials,
            PARTIAL_BLOCKS,
            &[
                Arg::Ptr(self.state.grads.ptr()),
                Arg::Wide(len as u64),
                Arg::Ptr(norm_partials),
            ],
        )?;
        let s = &self.state;
        self.launch(
            &self.kernels.clip_adamw,
            element_blocks(len),
            &[
                Arg::Ptr(s.params.ptr()),
                Arg::Ptr(s.exp_avg.ptr()),
                Arg::Ptr(s.exp_avg_sq.ptr()),
                Arg::Ptr(s.grads.ptr()),
                Arg::Ptr(norm_partials),
                Arg::Wide(len as u64),
                Arg::Float(c.clip_grad_norm.unwrap_or(0.0) as f32),
                Arg::Float((1.0 - lr * c.weight_decay) as f32),
                Arg::Float(c.beta1 as f32),
                Arg::Float((1.0 - c.beta1) as f32),
                Arg::Float(c.beta2 as f32),
                Arg::Float((1.0 - c.beta2) as f32),
                Arg::Float(bc2.sqrt() as f32),
                Arg::Float(c.eps as f32),
                Arg::Float((lr / bc1) as f32),
                Arg::Ptr(self.sums.values.at(Sums::NORM)),
            ],
        )
    }
}
