//! Multi-head self-attention across variables that also returns its probabilities.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::tensor::Tensor;
use burn::tensor::activation::softmax;

use crate::init::Initializer;

/// The release's `AttentionLayer` around a full (unmasked) attention.
///
/// Tokens are the N variables; the scale is 1/sqrt(C/heads); dropout acts on the
/// probabilities, and the returned probabilities are the dropped-out ones (as in the release).
#[derive(Module, Debug)]
pub struct AttentionLayer {
    query_projection: Linear,
    key_projection: Linear,
    value_projection: Linear,
    out_projection: Linear,
    dropout: Dropout,
    heads: usize,
}

impl AttentionLayer {
    /// PyTorch-default initialisation of four `channel → channel` projections.
    pub(crate) fn init(init: &mut Initializer, channel: usize, heads: usize, dropout: f64) -> Self {
        AttentionLayer {
            query_projection: init.linear(channel, channel),
            key_projection: init.linear(channel, channel),
            value_projection: init.linear(channel, channel),
            out_projection: init.linear(channel, channel),
            dropout: DropoutConfig::new(dropout).init(),
            heads,
        }
    }

    /// `x [batch, vars, channel]` → (output `[batch, vars, channel]`,
    /// probabilities `[batch, heads, vars, vars]`).
    pub fn forward(&self, x: Tensor<3>) -> (Tensor<3>, Tensor<4>) {
        let [batch, vars, channel] = x.dims();
        let head_dim = channel / self.heads;
        let split = |t: Tensor<3>| {
            t.reshape([batch, vars, self.heads, head_dim])
                .swap_dims(1, 2)
        };
        let q = split(self.query_projection.forward(x.clone()));
        let k = split(self.key_projection.forward(x.clone()));
        let v = split(self.value_projection.forward(x));
        // [batch, heads, vars, vars]
        let scores = q
            .matmul(k.swap_dims(2, 3))
            .mul_scalar(1.0 / (head_dim as f64).sqrt());
        let probs = self.dropout.forward(softmax(scores, 3));
        let out = probs
            .clone()
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([batch, vars, channel]);
        (self.out_projection.forward(out), probs)
    }
}
