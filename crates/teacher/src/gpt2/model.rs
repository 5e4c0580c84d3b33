//! The GPT-2 transformer in Burn with the calibration mask.
//!
//! ```text
//! h0  = wte[ids] + wpe[0..T)
//! h   = h + Attn(ln_1(h));  h = h + MLP(ln_2(h))        (each block)
//! out = ln_f(h)
//! ```
//!
//! Attention scores are `q·kᵀ / sqrt(head_dim)`, plus the calibration matrix
//! (−100 where the two tokens' types differ), with keys after the query removed (causal).
//!
//! Every step works on whole `[batch, tokens, d]` tensors. A block's attention takes its
//! keys and values from the same sequence as its queries; prefix caching would pass
//! previously computed keys/values in instead (GT and HD prompts share their history
//! prefix), which this layout leaves room for.

use burn::module::Module;
use burn::nn::{Embedding, LayerNorm, Linear};
use burn::tensor::activation::{gelu, gelu_approximate, softmax};
use burn::tensor::{Bool, DType, Int, Tensor};

/// Additive penalty between a language and a time-series token.
pub const CALIBRATION_PENALTY: f64 = -100.0;

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

impl Block {
    /// `x` [batch, tokens, d], `mask` [batch or 1, 1, tokens, tokens] additive.
    fn forward(&self, x: Tensor<3>, mask: &Tensor<4>) -> Tensor<3> {
        let [b, t, d] = x.dims();
        let heads = self.n_head;
        let hd = d / heads;

        let qkv = self.c_attn.forward(self.ln_1.forward(x.clone())); // [b, t, 3d]
        let split = |i: usize| {
            qkv.clone()
                .narrow(2, i * d, d)
                .reshape([b, t, heads, hd])
                .swap_dims(1, 2) // [b, heads, t, hd]
        };
        let (q, k, v) = (split(0), split(1), split(2));
        let scores = q.matmul(k.swap_dims(2, 3)) * (1.0 / (hd as f64).sqrt()); // [b, heads, t, t]
        let probs = softmax(scores + mask.clone(), 3);
        let ctx = probs.matmul(v).swap_dims(1, 2).reshape([b, t, d]);
        let x = x + self.attn_proj.forward(ctx);

        let inner = self.c_fc.forward(self.ln_2.forward(x.clone()));
        let inner = if self.tanh_gelu {
            gelu_approximate(inner)
        } else {
            gelu(inner)
        };
        x + self.mlp_proj.forward(inner)
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
    /// Hidden states after the last block, BEFORE `ln_f`: [batch, tokens, d].
    ///
    /// `ids` [batch, tokens]; `types` [batch, tokens] as 0.0 / 1.0 (language /
    /// time-series), or `None` for plain causal GPT-2.
    pub(crate) fn blocks_forward(
        &self,
        ids: Tensor<2, Int>,
        types: Option<Tensor<2>>,
    ) -> Tensor<3> {
        let [_, t] = ids.dims();
        let device = ids.device();
        let positions = Tensor::<1, Int>::arange(0..t as i64, &device).reshape([1, t]);
        let mut x = self.wte.forward(ids) + self.wpe.forward(positions);
        let mask = attention_mask(types, t, x.dtype(), &device);
        for block in &self.blocks {
            x = block.forward(x, &mask);
        }
        x
    }

    /// The final LayerNorm, on any [.., d] tensor.
    pub(crate) fn final_norm<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        self.ln_f.forward(x)
    }
}

/// The additive attention mask [batch or 1, 1, t, t]: the calibration matrix of each
/// prompt's own types (−100 where `types[a] != types[b]`, a tensor op, no host loop) with
/// every key after its query set to a large negative value.
///
/// Padding tokens sit after a prompt's real tokens, so the causal part hides them from every
/// real query whatever their type: padding cannot change a real token's state.
pub fn attention_mask(
    types: Option<Tensor<2>>,
    t: usize,
    dtype: DType,
    device: &burn::tensor::Device,
) -> Tensor<4> {
    // Large enough to vanish in softmax, small enough to stay finite in f16.
    let blocked = if dtype == DType::F16 { -6.0e4 } else { -1.0e9 };
    // true where the key comes after the query.
    let future: Tensor<2, Bool> = Tensor::<2, Bool>::tril_mask([t, t], 0, device);
    match types {
        Some(types) => {
            let [b, _] = types.dims();
            let differ = (types.clone().unsqueeze_dim::<3>(2) - types.unsqueeze_dim::<3>(1)).abs(); // [b, t, t]
            let calib = differ * CALIBRATION_PENALTY;
            calib
                .mask_fill(future.unsqueeze_dim::<3>(0).expand([b, t, t]), blocked)
                .unsqueeze_dim(1)
        }
        None => Tensor::<2>::zeros([t, t], device)
            .mask_fill(future, blocked)
            .reshape([1, 1, t, t]),
    }
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
        let mask = attention_mask(Some(types), 3, DType::F32, &device);
        assert_eq!(mask.dims(), [1, 1, 3, 3]);
        let m = mask.try_into_vec_as::<f32>().unwrap();
        let expected = [0.0, -1e9, -1e9, -100.0, 0.0, -1e9, -100.0, 0.0, 0.0];
        assert_eq!(m, expected);
    }

    #[test]
    fn plain_mask_is_only_causal() {
        let device = Device::flex();
        let m = attention_mask(None, 2, DType::F32, &device)
            .try_into_vec_as::<f32>()
            .unwrap();
        assert_eq!(m, [0.0, -1e9, 0.0, 0.0]);
    }
}
