//! Post-norm transformer encoder over variables (the release's Informer-style `Encoder`),
//! for both branches at once (see the `paired` module).

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::Device;
use burn::tensor::Tensor;
use burn::tensor::activation::relu;

use crate::attention::{AttentionLayer, AttentionWeights};
use crate::dropout::SeededDropout;
use crate::init::Initializer;
use crate::paired::{PairedLayerNorm, PairedLinear};

/// LayerNorm epsilon (PyTorch's default, as in the release).
const LAYER_NORM_EPS: f64 = 1e-5;

/// One post-norm layer: attention, add & norm, ReLU feed-forward (1x1 convolutions), add & norm.
#[derive(Module, Debug)]
pub struct EncoderLayer {
    attention: AttentionLayer,
    conv1: PairedLinear,
    conv2: PairedLinear,
    norm1: PairedLayerNorm,
    norm2: PairedLayerNorm,
    dropout: SeededDropout,
}

/// One branch's layer weights, as drawn at init.
struct LayerWeights {
    attention: AttentionWeights,
    conv1: Linear,
    conv2: Linear,
}

impl LayerWeights {
    /// Draws in the release's module order: query, key, value, output, conv1, conv2.
    fn draw(init: &mut Initializer, channel: usize, d_ff: usize) -> Self {
        LayerWeights {
            attention: AttentionWeights {
                query: init.linear(channel, channel),
                key: init.linear(channel, channel),
                value: init.linear(channel, channel),
                out: init.linear(channel, channel),
            },
            conv1: init.linear(channel, d_ff),
            conv2: init.linear(d_ff, channel),
        }
    }
}

impl EncoderLayer {
    fn pair(ts: LayerWeights, prompt: LayerWeights, shape: &EncoderShape, device: &Device) -> Self {
        EncoderLayer {
            attention: AttentionLayer::pair(
                ts.attention,
                prompt.attention,
                shape.heads,
                shape.dropout,
            ),
            conv1: PairedLinear::pair(ts.conv1, prompt.conv1),
            conv2: PairedLinear::pair(ts.conv2, prompt.conv2),
            norm1: PairedLayerNorm::new(shape.channel, LAYER_NORM_EPS, device),
            norm2: PairedLayerNorm::new(shape.channel, LAYER_NORM_EPS, device),
            dropout: SeededDropout::new(shape.dropout),
        }
    }

    /// `x` [k, batch · vars, channel] → the same shape, and the attention probabilities.
    fn forward(&self, x: Tensor<3>, batch: usize) -> (Tensor<3>, Tensor<5>) {
        let (attended, probs) = self.attention.forward(x.clone(), batch);
        let x = self.norm1.forward(x + self.dropout.forward(attended));
        let hidden = self.dropout.forward(relu(self.conv1.forward(x.clone())));
        let y = self.dropout.forward(self.conv2.forward(hidden));
        (self.norm2.forward(x + y), probs)
    }
}

/// Sizes shared by every layer of an encoder.
pub(crate) struct EncoderShape {
    pub layers: usize,
    pub channel: usize,
    pub heads: usize,
    pub d_ff: usize,
    pub dropout: f64,
}

/// A stack of [`EncoderLayer`]s and a final LayerNorm, per branch.
#[derive(Module, Debug)]
pub struct Encoder {
    attn_layers: Vec<EncoderLayer>,
    norm: PairedLayerNorm,
}

impl Encoder {
    /// Draws the time-series branch's encoder, then the prompt branch's (the release's
    /// order: all of `ts_encoder` before `prompt_encoder`), and pairs them.
    pub(crate) fn init_pair(init: &mut Initializer, shape: &EncoderShape) -> Self {
        let draw = |init: &mut Initializer| -> Vec<LayerWeights> {
            (0..shape.layers)
                .map(|_| LayerWeights::draw(init, shape.channel, shape.d_ff))
                .collect()
        };
        let ts = draw(init);
        let prompt = draw(init);
        let device = init.device();
        Encoder {
            attn_layers: ts
                .into_iter()
                .zip(prompt)
                .map(|(ts, prompt)| EncoderLayer::pair(ts, prompt, shape, device))
                .collect(),
            norm: PairedLayerNorm::new(shape.channel, LAYER_NORM_EPS, device),
        }
    }

    /// Number of layers.
    pub(crate) fn depth(&self) -> usize {
        self.attn_layers.len()
    }

    /// `x` [k branches, batch, vars, channel] → the encoding (same shape) and the last
    /// layer's attention probabilities `[k, batch, heads, vars, vars]`.
    pub fn forward(&self, x: Tensor<4>) -> (Tensor<4>, Tensor<5>) {
        let [k, batch, vars, channel] = x.dims();
        let mut x = x.reshape([k, batch * vars, channel]);
        let mut last = None;
        for layer in &self.attn_layers {
            let (next, probs) = layer.forward(x, batch);
            x = next;
            last = Some(probs);
        }
        let probs = last.expect("an encoder has at least one layer (checked by DualConfig)");
        (
            self.norm.forward(x).reshape([k, batch, vars, channel]),
            probs,
        )
    }
}
