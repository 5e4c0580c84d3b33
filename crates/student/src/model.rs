//! The dual student: a time-series branch used at test time and a prompt branch that
//! carries the teacher's privileged embeddings during training.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{Device, Tensor};

use crate::config::DualConfig;
use crate::encoder::{Encoder, EncoderShape};
use crate::error::Result;
use crate::init::Initializer;
use crate::paired::PairedLinear;
use crate::revin::Revin;

/// Everything the distillation loss needs from one forward pass of both branches.
#[derive(Debug, Clone)]
pub struct DualOutput {
    /// Forecast of the time-series branch, de-normalised: `[batch, horizon, vars]`.
    pub ts_out: Tensor<3>,
    /// Reconstruction of the prompt branch (no de-normalisation): `[batch, horizon, vars]`.
    pub prompt_out: Tensor<3>,
    /// Time-series encoding: `[batch, vars, channel]`.
    pub ts_enc: Tensor<3>,
    /// Prompt encoding: `[batch, vars, channel]`.
    pub prompt_enc: Tensor<3>,
    /// Last-layer attention of the time-series encoder averaged over the batch: `[heads, vars, vars]`.
    pub ts_att: Tensor<3>,
    /// Last-layer attention of the prompt encoder averaged over the batch: `[heads, vars, vars]`.
    pub prompt_att: Tensor<3>,
}

/// The release's `Dual` model. Both branches' encoders live in one `Encoder` and both
/// output projections in one `PairedLinear` (the `paired` layers), so a training step runs
/// each layer once for the two branches; the state dict keeps the release's names
/// (`ts_encoder.*`, `prompt_encoder.*`, `ts_proj.*`, `prompt_proj.*`).
#[derive(Module, Debug)]
pub struct Dual {
    length_to_feature: Linear,
    token_to_feature: Linear,
    encoder: Encoder,
    projection: PairedLinear,
}

impl Dual {
    /// PyTorch-default initialisation drawn from `seed`, on `device`, in the release's
    /// module order.
    ///
    /// Use an autodiff device (`device.autodiff()`) to train; dropout is active only there.
    pub fn init(config: &DualConfig, seed: u64, device: &Device) -> Result<Self> {
        config.validate()?;
        let mut init = Initializer::new(seed, device);
        let length_to_feature = init.linear(config.input_len, config.channel);
        let token_to_feature = init.linear(config.d_llm, config.channel);
        let shape = EncoderShape {
            layers: config.layers,
            channel: config.channel,
            heads: config.heads,
            d_ff: config.d_ff,
            dropout: config.dropout,
        };
        let encoder = Encoder::init_pair(&mut init, &shape);
        let ts_proj = init.linear(config.channel, config.output_len);
        let prompt_proj = init.linear(config.channel, config.output_len);
        Ok(Dual {
            length_to_feature,
            token_to_feature,
            encoder,
            projection: PairedLinear::pair(ts_proj, prompt_proj),
        })
    }

    /// Both branches: `x` `[batch, L, vars]` (scaled history) and `emb` `[batch, vars, d_llm]`.
    pub fn forward(&self, x: Tensor<3>, emb: Tensor<3>) -> DualOutput {
        let (normalized, revin) = Revin::normalize(x);
        let ts_tokens = self.length_to_feature.forward(normalized.swap_dims(1, 2));
        let prompt_tokens = self.token_to_feature.forward(emb);
        let (enc, att, out) = self.branches(Tensor::stack(vec![ts_tokens, prompt_tokens], 0));
        // Batch means of both branches' attention in one reduction: [2, heads, vars, vars].
        let att = att.mean_dim(1).squeeze_dim::<4>(1);
        DualOutput {
            ts_out: revin.denormalize(branch(&out, 0)),
            prompt_out: branch(&out, 1),
            ts_enc: branch(&enc, 0),
            prompt_enc: branch(&enc, 1),
            ts_att: branch(&att, 0),
            prompt_att: branch(&att, 1),
        }
    }

    /// The time-series branch alone (no embeddings needed): `x` `[batch, L, vars]` →
    /// forecast `[batch, horizon, vars]`, de-normalised.
    pub fn forecast(&self, x: Tensor<3>) -> Tensor<3> {
        let (normalized, revin) = Revin::normalize(x);
        let tokens = self.length_to_feature.forward(normalized.swap_dims(1, 2));
        let (_, _, out) = self.branches(tokens.unsqueeze_dim(0));
        revin.denormalize(branch(&out, 0))
    }

    /// Encoders and projections of `k` branches: tokens `[k, batch, vars, channel]` →
    /// (encoding [k, batch, vars, channel], last attention [k, batch, heads, vars, vars],
    /// projection [k, batch, horizon, vars]).
    fn branches(&self, tokens: Tensor<4>) -> (Tensor<4>, Tensor<5>, Tensor<4>) {
        let [k, batch, vars, channel] = tokens.dims();
        let (enc, att) = self.encoder.forward(tokens);
        let out = self
            .projection
            .forward(enc.clone().reshape([k, batch * vars, channel]));
        let horizon = out.dims()[2];
        let out = out.reshape([k, batch, vars, horizon]).swap_dims(2, 3);
        (enc, att, out)
    }
}

/// Branch `i` of a `[k, ...]` tensor.
fn branch<const D: usize, const E: usize>(t: &Tensor<D>, i: usize) -> Tensor<E> {
    t.clone().narrow(0, i, 1).squeeze_dim(0)
}
