//! The keys and values a block computed for a batch of sequences: the KV cache of a shared
//! prompt prefix.

use burn::tensor::{Int, Tensor};

/// One block's keys and values: `[batch, kv_heads, tokens, head_dim]` each, in the compute
/// type. Grouped-query models (LLaMA) have fewer key/value heads than query heads.
#[derive(Debug, Clone)]
pub struct LayerKv {
    k: Tensor<4>,
    v: Tensor<4>,
}

impl LayerKv {
    /// Keys and values of the same shape.
    pub fn new(k: Tensor<4>, v: Tensor<4>) -> Self {
        debug_assert_eq!(k.dims(), v.dims());
        LayerKv { k, v }
    }

    /// The cached sequences `rows` (in that order, repeats allowed).
    pub fn select(&self, rows: Tensor<1, Int>) -> Self {
        LayerKv {
            k: self.k.clone().select(0, rows.clone()),
            v: self.v.clone().select(0, rows),
        }
    }

    /// `past`'s keys and values followed by these: what a query of these tokens attends to.
    pub fn after(&self, past: Option<&LayerKv>) -> (Tensor<4>, Tensor<4>) {
        match past {
            Some(past) => (
                Tensor::cat(vec![past.k.clone(), self.k.clone()], 2),
                Tensor::cat(vec![past.v.clone(), self.v.clone()], 2),
            ),
            None => (self.k.clone(), self.v.clone()),
        }
    }
}
