//! What a model family implements ([`Architecture`], [`Block`]) and the forwards every
//! family shares: whole prompts, the last token only, and a cached prefix's keys and values.
//!
//! A family provides its embedding, blocks and final norm; a block provides its queries,
//! keys and values (rotary positions or not, grouped heads or not) and what follows the
//! attention (residuals, norms before or after, MLP). Attention itself
//! (`attention::attend`) and the way the forwards walk the blocks are written once here:
//!
//! ```text
//! x = embed(ids, positions)
//! for each block: own = keys_values(x); ctx = attend(queries(x), past + own); x = finish(x, ctx)
//! out = final_norm(x)
//! ```
//!
//! The final block of a last-token forward computes its queries, attention and MLP for one
//! row per sequence only; every position still gives its key and value.

use std::fmt::Debug;

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::attention::attend;
use crate::error::TeacherError;
use crate::kv::LayerKv;
use crate::precision::Precision;
use crate::shape::ModelShape;
use crate::weights::NamedTensors;

/// One transformer block of a family.
pub trait Block: Debug + Send + Sized {
    /// Queries of the rows `x` [b, t, d] at `positions` [b or 1, t]: [b, heads, t, head_dim]
    /// in the compute type, already scaled by 1/sqrt(head_dim).
    fn queries(&self, x: &Tensor<3>, positions: &Tensor<2, Int>, precision: Precision)
    -> Tensor<4>;

    /// Keys and values of `x` [b, t, d] at `positions`: [b, kv_heads, t, head_dim] each.
    fn keys_values(
        &self,
        x: &Tensor<3>,
        positions: &Tensor<2, Int>,
        precision: Precision,
    ) -> LayerKv;

    /// Queries, keys and values together (a family may fuse the products).
    fn projections(
        &self,
        x: &Tensor<3>,
        positions: &Tensor<2, Int>,
        precision: Precision,
    ) -> (Tensor<4>, LayerKv) {
        (
            self.queries(x, positions, precision),
            self.keys_values(x, positions, precision),
        )
    }

    /// The block's output [b, t, d] (f32) for the rows `x` given their attention context
    /// [b, t, heads · head_dim] (compute type): output projection, residuals, norms, MLP.
    fn finish(&self, x: Tensor<3>, context: Tensor<3>, precision: Precision) -> Tensor<3>;

    /// `self` with its matrix weights in `precision`'s compute type.
    fn prepared(self, precision: Precision) -> Self;
}

/// A family's transformer in Burn (GPT-2, LLaMA, BERT): its `config.json`, how its
/// checkpoint builds it, its embedding, blocks and final norm.
pub trait Architecture: Debug + Send + Sized + 'static {
    /// The family's `config.json`, parsed.
    type Config: Debug + Clone + Send + Sync + 'static;
    /// Its transformer block.
    type Block: Block;
    /// The `model_type` of its `config.json`.
    const MODEL_TYPE: &'static str;
    /// Causal attention (a decoder): each token sees those before it, so a shared prefix
    /// can be cached and padding after a prompt needs no mask of its own. Encoders see
    /// every token.
    const CAUSAL: bool;

    /// Parses the text of a `config.json`; the error says what is wrong.
    fn parse_config(text: &str) -> Result<Self::Config, String>;

    /// The sizes of a checkpoint of `config`.
    fn shape(config: &Self::Config) -> ModelShape;

    /// The first `layers` blocks (and embeddings, final norm) from the checkpoint.
    fn build(
        tensors: &mut NamedTensors<'_>,
        config: &Self::Config,
        layers: usize,
        device: &Device,
    ) -> Result<Self, TeacherError>;

    /// Input states [b, t, d] (f32) of `ids` [b, t] at `positions` [b or 1, t].
    fn embed(&self, ids: Tensor<2, Int>, positions: &Tensor<2, Int>) -> Tensor<3>;

    /// The blocks in use.
    fn blocks(&self) -> &[Self::Block];

    /// The blocks, to replace them.
    fn blocks_mut(&mut self) -> &mut Vec<Self::Block>;

    /// The norm after the last block (the identity for post-norm encoders).
    fn final_norm(&self, x: Tensor<3>) -> Tensor<3>;

    /// `self` with its blocks' matrix weights in `precision`'s compute type (embeddings and
    /// norms stay f32).
    fn prepared(mut self, precision: Precision) -> Self {
        let blocks = std::mem::take(self.blocks_mut());
        *self.blocks_mut() = blocks.into_iter().map(|b| b.prepared(precision)).collect();
        self
    }
}

/// Every position's final state [b, t, d]: `ids`, `positions` [b or 1, t]; `mask`
/// [b or 1, 1, t, t] additive.
pub(crate) fn hidden_states<A: Architecture>(
    model: &A,
    ids: Tensor<2, Int>,
    positions: &Tensor<2, Int>,
    mask: &Tensor<4>,
    precision: Precision,
) -> Tensor<3> {
    let mask = precision.score_mask(mask);
    let mut x = model.embed(ids, positions);
    for block in model.blocks() {
        x = block_forward(block, x, positions, &mask, None, precision).0;
    }
    model.final_norm(x)
}

/// The final state at one position per sequence, `last[i]` of sequence i: [b, d]. Inputs as
/// in [`hidden_states`], plus `past`: each block's keys and values of a shared prefix, which
/// come first among the keys (the mask covers them).
pub(crate) fn last_states<A: Architecture>(
    model: &A,
    ids: Tensor<2, Int>,
    positions: &Tensor<2, Int>,
    mask: &Tensor<4>,
    past: Option<&[LayerKv]>,
    precision: Precision,
    last: &[usize],
) -> Tensor<2> {
    let mask = precision.score_mask(mask);
    let mut x = model.embed(ids, positions);
    let [b, _, d] = x.dims();
    let (final_block, rest) = model.blocks().split_last().expect("a model has ≥ 1 block");
    for (i, block) in rest.iter().enumerate() {
        x = block_forward(block, x, positions, &mask, past.map(|kv| &kv[i]), precision).0;
    }
    let past = past.map(|kv| &kv[rest.len()]);
    let out = block_rows(final_block, x, positions, &mask, past, precision, last);
    model.final_norm(out).reshape([b, d])
}

/// Each block's keys and values for a batch of prefixes (for [`last_states`]' `past`). The
/// last block computes only its keys and values.
pub(crate) fn prefix_kv<A: Architecture>(
    model: &A,
    ids: Tensor<2, Int>,
    positions: &Tensor<2, Int>,
    mask: &Tensor<4>,
    precision: Precision,
) -> Vec<LayerKv> {
    let mask = precision.score_mask(mask);
    let mut x = model.embed(ids, positions);
    let (last, rest) = model.blocks().split_last().expect("a model has ≥ 1 block");
    let mut cache = Vec::with_capacity(rest.len() + 1);
    for block in rest {
        let (next, kv) = block_forward(block, x, positions, &mask, None, precision);
        cache.push(kv);
        x = next;
    }
    cache.push(last.keys_values(&x, positions, precision));
    cache
}

/// One block over every row of `x`; also returns the rows' own keys and values.
fn block_forward<B: Block>(
    block: &B,
    x: Tensor<3>,
    positions: &Tensor<2, Int>,
    mask: &Tensor<4>,
    past: Option<&LayerKv>,
    precision: Precision,
) -> (Tensor<3>, LayerKv) {
    let (q, own) = block.projections(&x, positions, precision);
    let context = attend(q, &own, past, mask.clone(), precision);
    (block.finish(x, context, precision), own)
}

/// One block's output at one row per sequence (`last[i]` of sequence i): [b, 1, d]. Every
/// row still gives its key and value; only the chosen rows' queries, attention and the rest
/// of the block are computed.
fn block_rows<B: Block>(
    block: &B,
    x: Tensor<3>,
    positions: &Tensor<2, Int>,
    mask: &Tensor<4>,
    past: Option<&LayerKv>,
    precision: Precision,
    last: &[usize],
) -> Tensor<3> {
    let [b, t, d] = x.dims();
    let [_, _, queries, keys] = mask.dims();
    let device = x.device();
    let own = block.keys_values(&x, positions, precision);
    let index = |width: usize| {
        let values: Vec<i64> = last
            .iter()
            .flat_map(|&i| std::iter::repeat_n(i as i64, width))
            .collect();
        Tensor::<3, Int>::from_data(TensorData::new(values, [b, 1, width]), &device)
    };
    let x_rows = x.gather(1, index(d)); // [b, 1, d]
    let row_positions = positions
        .clone()
        .expand([b, t])
        .gather(1, index(1).reshape([b, 1]));
    let q_rows = block.queries(&x_rows, &row_positions, precision); // [b, heads, 1, hd]
    let mask_rows = mask
        .clone()
        .expand([b, 1, queries, keys])
        .gather(2, index(1).reshape([b, 1, 1, 1]).expand([b, 1, 1, keys]));
    let context = attend(q_rows, &own, past, mask_rows, precision);
    block.finish(x_rows, context, precision)
}
