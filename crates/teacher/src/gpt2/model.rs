//! The GPT-2 transformer in Burn with the calibration mask.
//!
//! ```text
//! h0  = wte[ids] + wpe[positions]
//! h   = h + Attn(ln_1(h));  h = h + MLP(ln_2(h))        (each block)
//! out = ln_f(h)
//! ```
//!
//! Attention scores are `(q / sqrt(head_dim))·kᵀ`, plus the calibration matrix (−100 where
//! the two tokens' types differ), with keys after the query removed (causal).
//!
//! Every step works on whole `[batch, tokens, d]` tensors. A block can take previously
//! computed keys and values ([`LayerKv`]) for a shared prefix: its queries are then only the
//! suffix tokens, attending to prefix and suffix keys. The residual stream, LayerNorms and
//! masks are f32; matrix products follow the model's [`Precision`], and so does the softmax
//! in f16 (f32 otherwise).

use burn::module::Module;
use burn::nn::{Embedding, LayerNorm, Linear};
use burn::tensor::activation::{gelu, gelu_approximate, softmax};
use burn::tensor::{Bool, FloatDType, Int, Tensor, TensorData};

use crate::precision::Precision;

/// Additive penalty between a language and a time-series token.
pub const CALIBRATION_PENALTY: f64 = -100.0;

/// Additive score of a key a query must not see (after it, or padding): vanishes in an f32
/// softmax.
pub const BLOCKED: f64 = -1.0e9;

/// One transformer block (pre-norm attention and MLP).
#[derive(Module, Debug)]
pub struct Block {
    pub(crate) ln_1: LayerNorm,
    /// Query, key and value projection, `[d, 3d]` (q | k | v along the output axis).
    pub(crate) c_attn: Linear,
    pub(crate) attn_proj: Linear,
    pub(crate) ln_2: LayerNorm,
    pub(crate) c_fc: Linear,
    pub(crate) mlp_proj: Linear,
    pub(crate) n_head: usize,
    pub(crate) tanh_gelu: bool,
}

/// The keys and values one block computed for a batch of sequences:
/// `[batch, heads, tokens, head_dim]` each, in the compute type.
#[derive(Debug, Clone)]
pub(crate) struct LayerKv {
    k: Tensor<4>,
    v: Tensor<4>,
}

impl LayerKv {
    /// The cached sequences `rows` (in that order, repeats allowed).
    pub(crate) fn select(&self, rows: Tensor<1, Int>) -> Self {
        LayerKv {
            k: self.k.clone().select(0, rows.clone()),
            v: self.v.clone().select(0, rows),
        }
    }
}

impl Block {
    /// `ln_1(x) · c_attn + bias` for `x` [b, t, d], output columns `from..from + width` only
    /// (queries are columns 0..d, keys d..2d, values 2d..3d): [b, t, width], compute type.
    fn attn_columns(
        &self,
        x: Tensor<3>,
        from: usize,
        width: usize,
        precision: Precision,
    ) -> Tensor<3> {
        let layer = &self.c_attn;
        let [_, cols] = layer.weight.dims();
        let x = self.ln_1.forward(x);
        if from == 0 && width == cols {
            return precision.linear(layer, x);
        }
        precision.affine(
            x,
            layer.weight.val().narrow(1, from, width),
            layer.bias.as_ref().map(|b| b.val().narrow(0, from, width)),
        )
    }

    /// `[b, t, n·d]` projections → n tensors `[b, heads, t, head_dim]`.
    fn heads(&self, x: Tensor<3>, n: usize) -> Vec<Tensor<4>> {
        let [b, t, width] = x.dims();
        let d = width / n;
        let hd = d / self.n_head;
        (0..n)
            .map(|i| {
                x.clone()
                    .narrow(2, i * d, d)
                    .reshape([b, t, self.n_head, hd])
                    .swap_dims(1, 2)
            })
            .collect()
    }

    /// Queries (pre-scaled by 1/sqrt(head_dim)), keys and values of `x` [b, t, d]:
    /// [b, heads, t, head_dim] each, in the compute type.
    fn qkv(&self, x: Tensor<3>, precision: Precision) -> (Tensor<4>, LayerKv) {
        let d = x.dims()[2];
        let hd = d / self.n_head;
        let [q, k, v] = self
            .heads(self.attn_columns(x, 0, 3 * d, precision), 3)
            .try_into()
            .expect("three projections");
        (q * (1.0 / (hd as f64).sqrt()), LayerKv { k, v })
    }

    /// Keys and values only (no queries) of `x` [b, t, d].
    fn kv(&self, x: Tensor<3>, precision: Precision) -> LayerKv {
        let d = x.dims()[2];
        let [k, v] = self
            .heads(self.attn_columns(x, d, 2 * d, precision), 2)
            .try_into()
            .expect("two projections");
        LayerKv { k, v }
    }

    /// `x` [b, t, d] → [b, t, d]. `mask` [b or 1, 1, t, keys] is additive, where the keys are
    /// `past`'s (if any) followed by `x`'s own, in [`Precision::score_mask`]'s type. Returns
    /// the keys and values of `x` too.
    fn forward(
        &self,
        x: Tensor<3>,
        mask: &Tensor<4>,
        past: Option<&LayerKv>,
        precision: Precision,
    ) -> (Tensor<3>, LayerKv) {
        let (q, own) = self.qkv(x.clone(), precision);
        let out = self.attend_and_mlp(x, q, mask.clone(), &own, past, precision);
        (out, own)
    }

    /// [`forward`](Self::forward)'s output at one position per sequence only: `rows`
    /// [b, 1, d] holds each sequence's position (repeated along d); returns [b, 1, d]. Every
    /// position still contributes its key and value; only that row's query, attention output
    /// and MLP are computed (the final block, when only the last token is kept).
    fn forward_rows(
        &self,
        x: Tensor<3>,
        mask: &Tensor<4>,
        past: Option<&LayerKv>,
        precision: Precision,
        rows: Tensor<3, Int>,
    ) -> Tensor<3> {
        let [b, _, _] = x.dims();
        let [_, _, _, keys] = mask.dims();
        let own = self.kv(x.clone(), precision);
        let x_rows = x.gather(1, rows.clone()); // [b, 1, d]
        let q_rows = self.qkv(x_rows.clone(), precision).0; // [b, heads, 1, hd]
        let mask_rows = rows
            .narrow(2, 0, 1)
            .reshape([b, 1, 1, 1])
            .expand([b, 1, 1, keys]);
        let mask = mask
            .clone()
            .expand([b, 1, mask.dims()[2], keys])
            .gather(2, mask_rows);
        self.attend_and_mlp(x_rows, q_rows, mask, &own, past, precision)
    }

    /// The rest of the block after the projections: attention of queries `q` (of the rows
    /// `x`) over `past` + `own` keys and values, then the MLP, with residuals.
    fn attend_and_mlp(
        &self,
        x: Tensor<3>,
        q: Tensor<4>,
        mask: Tensor<4>,
        own: &LayerKv,
        past: Option<&LayerKv>,
        precision: Precision,
    ) -> Tensor<3> {
        let [b, t, d] = x.dims();
        let (k, v) = match past {
            Some(past) => (
                Tensor::cat(vec![past.k.clone(), own.k.clone()], 2),
                Tensor::cat(vec![past.v.clone(), own.v.clone()], 2),
            ),
            None => (own.k.clone(), own.v.clone()),
        };
        let scores = precision.matmul(q, k.swap_dims(2, 3)); // [b, heads, t, keys]
        // f16 keeps its scores and softmax in f16 (half the memory traffic of the largest
        // tensors; blocked keys become -inf, which softmax maps to 0); the other precisions
        // take the softmax in f32.
        let probs = match precision {
            Precision::F16 => softmax(scores + mask, 3),
            _ => softmax(scores.cast(FloatDType::F32) + mask, 3),
        };
        let ctx = precision
            .matmul(probs, v)
            .swap_dims(1, 2)
            .reshape([b, t, d]);
        let x = x + precision.linear(&self.attn_proj, ctx).cast(FloatDType::F32);

        let inner = precision.linear(&self.c_fc, self.ln_2.forward(x.clone()));
        let inner = if self.tanh_gelu {
            gelu_approximate(inner)
        } else {
            gelu(inner)
        };
        x + precision
            .linear(&self.mlp_proj, inner)
            .cast(FloatDType::F32)
    }

    /// `self` with its Linear weights in `precision`'s compute type.
    fn prepared(self, precision: Precision) -> Self {
        Block {
            c_attn: precision.prepare_linear(self.c_attn),
            attn_proj: precision.prepare_linear(self.attn_proj),
            c_fc: precision.prepare_linear(self.c_fc),
            mlp_proj: precision.prepare_linear(self.mlp_proj),
            ..self
        }
    }
}

/// GPT-2 (embeddings, blocks, final LayerNorm), inference only.
#[derive(Module, Debug)]
pub struct Gpt2Module {
    pub(crate) wte: Embedding,
    pub(crate) wpe: Embedding,
    pub(crate) blocks: Vec<Block>,
    pub(crate) ln_f: LayerNorm,
}

impl Gpt2Module {
    /// Token plus position embeddings: `ids`, `positions` [b or 1, t] → [b, t, d].
    fn embed(&self, ids: Tensor<2, Int>, positions: Tensor<2, Int>) -> Tensor<3> {
        self.wte.forward(ids) + self.wpe.forward(positions)
    }

    /// Hidden states of every position after the last block, BEFORE `ln_f`:
    /// [batch, tokens, d].
    ///
    /// `ids`, `positions` [b or 1, t]; `mask` [b or 1, 1, t, t] additive (see
    /// [`calibrated_mask`]).
    pub(crate) fn blocks_forward(
        &self,
        ids: Tensor<2, Int>,
        positions: Tensor<2, Int>,
        mask: &Tensor<4>,
        precision: Precision,
    ) -> Tensor<3> {
        let mask = &precision.score_mask(mask);
        let mut x = self.embed(ids, positions);
        for block in &self.blocks {
            x = block.forward(x, mask, None, precision).0;
        }
        x
    }

    /// The final state (after `ln_f`) at one position per sequence: `last[i]` of sequence
    /// i; [b, d]. Inputs as in [`blocks_forward`](Self::blocks_forward), plus `past`: the
    /// keys and values of a shared prefix per block, which come first among the keys. The
    /// final block computes only those positions.
    pub(crate) fn last_states(
        &self,
        ids: Tensor<2, Int>,
        positions: Tensor<2, Int>,
        mask: &Tensor<4>,
        past: Option<&[LayerKv]>,
        precision: Precision,
        last: &[usize],
    ) -> Tensor<2> {
        let mask = &precision.score_mask(mask);
        let mut x = self.embed(ids, positions);
        let [b, _, d] = x.dims();
        let (final_block, rest) = self.blocks.split_last().expect("a model has ≥ 1 block");
        for (i, block) in rest.iter().enumerate() {
            x = block.forward(x, mask, past.map(|kv| &kv[i]), precision).0;
        }
        let index: Vec<i64> = last
            .iter()
            .flat_map(|&i| std::iter::repeat_n(i as i64, d))
            .collect();
        let rows = Tensor::<3, Int>::from_data(TensorData::new(index, [b, 1, d]), &x.device());
        let past = past.map(|kv| &kv[self.blocks.len() - 1]);
        let out = final_block.forward_rows(x, mask, past, precision, rows);
        self.final_norm(out).reshape([b, d])
    }

    /// The keys and values of every block for a batch of prefixes, for
    /// [`blocks_forward`](Self::blocks_forward)'s `past`. The last block computes only its
    /// keys and values.
    pub(crate) fn prefix_kv(
        &self,
        ids: Tensor<2, Int>,
        positions: Tensor<2, Int>,
        mask: &Tensor<4>,
        precision: Precision,
    ) -> Vec<LayerKv> {
        let mask = &precision.score_mask(mask);
        let mut x = self.embed(ids, positions);
        let mut cache = Vec::with_capacity(self.blocks.len());
        let (last, rest) = self.blocks.split_last().expect("a model has ≥ 1 block");
        for block in rest {
            let (next, kv) = block.forward(x, mask, None, precision);
            cache.push(kv);
            x = next;
        }
        cache.push(last.kv(x, precision));
        cache
    }

    /// The final LayerNorm, on any [.., d] tensor.
    pub(crate) fn final_norm<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        self.ln_f.forward(x)
    }

    /// `self` with its Linear weights in `precision`'s compute type.
    pub(crate) fn prepared(self, precision: Precision) -> Self {
        Gpt2Module {
            blocks: self
                .blocks
                .into_iter()
                .map(|b| b.prepared(precision))
                .collect(),
            ..self
        }
    }
}

/// The additive attention mask [b, 1, queries, keys] of calibrated causal attention.
///
/// `query_types` [b, q] and `key_types` [b, k] are 0.0 / 1.0 (language / time-series); the
/// queries are the LAST q of the k key positions (a whole prompt when q = k, or the suffix
/// after a cached prefix). Scores get −100 where the two types differ (a tensor op, no host
/// loop), [`BLOCKED`] where the key comes after the query, and `key_penalty` [b, k] (e.g.
/// [`BLOCKED`] on a cached prefix's padding) when given.
///
/// Padding tokens sit after a prompt's real tokens, so the causal part hides them from every
/// real query whatever their type: padding cannot change a real token's state.
pub fn calibrated_mask(
    query_types: Tensor<2>,
    key_types: Tensor<2>,
    key_penalty: Option<Tensor<2>>,
) -> Tensor<4> {
    let [b, q] = query_types.dims();
    let [_, k] = key_types.dims();
    let device = query_types.device();
    let differ = (query_types.unsqueeze_dim::<3>(2) - key_types.unsqueeze_dim::<3>(1)).abs(); // [b, q, k]
    let mut mask = differ * CALIBRATION_PENALTY;
    if let Some(penalty) = key_penalty {
        mask = mask + penalty.unsqueeze_dim(1);
    }
    mask.mask_fill(future_keys(q, k, &device).expand([b, q, k]), BLOCKED)
        .unsqueeze_dim(1)
}

/// The plain causal mask [1, 1, t, t] (Hugging Face's `GPT2Model`, no calibration).
pub fn causal_mask(t: usize, device: &burn::tensor::Device) -> Tensor<4> {
    Tensor::<2>::zeros([t, t], device)
        .mask_fill(future_keys(t, t, device).squeeze_dim(0), BLOCKED)
        .reshape([1, 1, t, t])
}

/// [1, q, k], true where key j comes after query i, the queries being the last q of the k
/// positions.
fn future_keys(q: usize, k: usize, device: &burn::tensor::Device) -> Tensor<3, Bool> {
    Tensor::<2, Bool>::tril_mask([q, k], (k - q) as i64, device).unsqueeze_dim(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn mask_is_calibrated_and_causal() {
        let device = Device::flex();
        let types =
            Tensor::<2>::from_data(TensorData::new(vec![0.0f32, 1.0, 1.0], [1, 3]), &device);
        let mask = calibrated_mask(types.clone(), types, None);
        assert_eq!(mask.dims(), [1, 1, 3, 3]);
        let m = mask.try_into_vec_as::<f32>().unwrap();
        let expected = [0.0, -1e9, -1e9, -100.0, 0.0, -1e9, -100.0, 0.0, 0.0];
        assert_eq!(m, expected);
    }

    #[test]
    fn plain_mask_is_only_causal() {
        let device = Device::flex();
        let m = causal_mask(2, &device).try_into_vec_as::<f32>().unwrap();
        assert_eq!(m, [0.0, -1e9, 0.0, 0.0]);
    }
}
