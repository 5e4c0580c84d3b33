//! Post-norm transformer encoder over variables (the release's Informer-style `Encoder`).

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, LayerNorm, Linear};
use burn::tensor::Tensor;
use burn::tensor::activation::relu;

use crate::attention::AttentionLayer;
use crate::init::Initializer;

/// One post-norm layer: attention, add & norm, ReLU feed-forward (1x1 convolutions), add & norm.
#[derive(Module, Debug)]
pub struct EncoderLayer {
    attention: AttentionLayer,
    conv1: Linear,
    conv2: Linear,
    norm1: LayerNorm,
    norm2: LayerNorm,
    dropout: Dropout,
}

impl EncoderLayer {
    fn init(init: &mut Initializer, channel: usize, heads: usize, d_ff: usize, p: f64) -> Self {
        EncoderLayer {
            attention: AttentionLayer::init(init, channel, heads, p),
            conv1: init.linear(channel, d_ff),
            conv2: init.linear(d_ff, channel),
            norm1: init.layer_norm(channel),
            norm2: init.layer_norm(channel),
            dropout: DropoutConfig::new(p).init(),
        }
    }

    /// `x [batch, vars, channel]` → (same shape, attention `[batch, heads, vars, vars]`).
    fn forward(&self, x: Tensor<3>) -> (Tensor<3>, Tensor<4>) {
        let (attended, probs) = self.attention.forward(x.clone());
        let x = self.norm1.forward(x + self.dropout.forward(attended));
        let hidden = self.dropout.forward(relu(self.conv1.forward(x.clone())));
        let y = self.dropout.forward(self.conv2.forward(hidden));
        (self.norm2.forward(x + y), probs)
    }
}

/// A stack of [`EncoderLayer`]s followed by a final LayerNorm.
#[derive(Module, Debug)]
pub struct Encoder {
    attn_layers: Vec<EncoderLayer>,
    norm: LayerNorm,
}

impl Encoder {
    /// PyTorch-default initialisation, layer by layer.
    pub(crate) fn init(
        init: &mut Initializer,
        layers: usize,
        channel: usize,
        heads: usize,
        d_ff: usize,
        dropout: f64,
    ) -> Self {
        let attn_layers = (0..layers)
            .map(|_| EncoderLayer::init(init, channel, heads, d_ff, dropout))
            .collect();
        Encoder {
            attn_layers,
            norm: init.layer_norm(channel),
        }
    }

    /// `x [batch, vars, channel]` → (encoding, LAST layer's attention `[batch, heads, vars, vars]`).
    pub fn forward(&self, x: Tensor<3>) -> (Tensor<3>, Tensor<4>) {
        let mut x = x;
        let mut last = None;
        for layer in &self.attn_layers {
            let (next, probs) = layer.forward(x);
            x = next;
            last = Some(probs);
        }
        let probs = last.expect("an encoder has at least one layer (checked by DualConfig)");
        (self.norm.forward(x), probs)
    }
}
