//! Scaled dot-product attention with an additive mask and grouped key/value heads, shared by
//! every family's blocks.

use burn::tensor::activation::softmax;
use burn::tensor::{FloatDType, Tensor};

use crate::kv::LayerKv;
use crate::precision::Precision;

/// The attention context of queries `q` [b, heads, t, head_dim] (already scaled) over
/// `past`'s keys and values followed by `own`'s, with the additive `mask`
/// [b or 1, 1, t, keys] in [`Precision::score_mask`]'s type: [b, t, heads · head_dim], in the
/// compute type. Key/value heads are shared by `heads / kv_heads` query heads each.
pub(crate) fn attend(
    q: Tensor<4>,
    own: &LayerKv,
    past: Option<&LayerKv>,
    mask: Tensor<4>,
    precision: Precision,
) -> Tensor<3> {
    let [b, heads, t, hd] = q.dims();
    let (k, v) = own.after(past);
    let (k, v) = (repeat_heads(k, heads), repeat_heads(v, heads));
    let scores = precision.matmul(q, k.swap_dims(2, 3)); // [b, heads, t, keys]
    // f16 keeps its scores and softmax in f16 (half the memory traffic of the largest
    // tensors; blocked keys become -inf, which softmax maps to 0); the other precisions take
    // the softmax in f32.
    let probs = match precision {
        Precision::F16 => softmax(scores + mask, 3),
        _ => softmax(scores.cast(FloatDType::F32) + mask, 3),
    };
    precision
        .matmul(probs, v)
        .swap_dims(1, 2)
        .reshape([b, t, heads * hd])
}

/// Projections `x` [b, t, heads · hd] as [b, heads, t, hd] (the layout [`attend`] takes;
/// it returns the other).
pub(crate) fn split_heads(x: Tensor<3>, heads: usize) -> Tensor<4> {
    let [b, t, width] = x.dims();
    x.reshape([b, t, heads, width / heads]).swap_dims(1, 2)
}

/// Queries `q` [b, heads, t, hd] scaled by 1/sqrt(hd), as [`attend`] takes them.
pub(crate) fn scale_queries(q: Tensor<4>) -> Tensor<4> {
    let hd = q.dims()[3];
    q * (1.0 / (hd as f64).sqrt())
}

/// `x` [b, kv_heads, keys, hd] with each head repeated for the query heads that share it:
/// [b, heads, keys, hd] (Hugging Face's `repeat_kv`).
fn repeat_heads(x: Tensor<4>, heads: usize) -> Tensor<4> {
    let [b, kv_heads, keys, hd] = x.dims();
    if kv_heads == heads {
        return x;
    }
    let group = heads / kv_heads;
    x.unsqueeze_dim::<5>(2)
        .expand([b, kv_heads, group, keys, hd])
        .reshape([b, heads, keys, hd])
}
