//! Multi-head self-attention across variables that also returns its probabilities, for both
//! branches at once (see the `paired` module).

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::Tensor;
use burn::tensor::activation::softmax;

use crate::dropout::SeededDropout;
use crate::paired::PairedLinear;

/// The release's `AttentionLayer` around a full (unmasked) attention, per branch.
///
/// Tokens are the N variables; the scale is 1/sqrt(C/heads); dropout acts on the
/// probabilities, and the returned probabilities are the dropped-out ones (as in the release).
#[derive(Module, Debug)]
pub struct AttentionLayer {
    query_projection: PairedLinear,
    key_projection: PairedLinear,
    value_projection: PairedLinear,
    out_projection: PairedLinear,
    dropout: SeededDropout,
    heads: usize,
}

/// One branch's attention projections (query, key, value, output), as drawn at init.
pub(crate) struct AttentionWeights {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    pub out: Linear,
}

impl AttentionLayer {
    /// Pairs the time-series branch's projections with the prompt branch's.
    pub(crate) fn pair(
        ts: AttentionWeights,
        prompt: AttentionWeights,
        heads: usize,
        dropout: f64,
    ) -> Self {
        AttentionLayer {
            query_projection: PairedLinear::pair(ts.query, prompt.query),
            key_projection: PairedLinear::pair(ts.key, prompt.key),
            value_projection: PairedLinear::pair(ts.value, prompt.value),
            out_projection: PairedLinear::pair(ts.out, prompt.out),
            dropout: SeededDropout::new(dropout),
            heads,
        }
    }

    /// `x` [k branches, batch · vars, channel] (`batch` windows) → the attended tokens
    /// (same shape) and the probabilities `[k, batch, heads, vars, vars]`.
    pub fn forward(&self, x: Tensor<3>, batch: usize) -> (Tensor<3>, Tensor<5>) {
        let [k, rows, channel] = x.dims();
        let vars = rows / batch;
        let head_dim = channel / self.heads;
        let split = |t: Tensor<3>| {
            t.reshape([k * batch, vars, self.heads, head_dim])
                .swap_dims(1, 2)
        };
        let q = split(self.query_projection.forward(x.clone()));
        let keys = split(self.key_projection.forward(x.clone()));
        let v = split(self.value_projection.forward(x));
        let scores = q
            .matmul(keys.swap_dims(2, 3))
            .mul_scalar(1.0 / (head_dim as f64).sqrt());
        let probs = self.dropout.forward(softmax(scores, 3));
        let out = probs
            .clone()
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([k, rows, channel]);
        (
            self.out_projection.forward(out),
            probs.reshape([k, batch, self.heads, vars, vars]),
        )
    }
}
