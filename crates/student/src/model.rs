//! The dual student: a time-series branch used at test time and a prompt branch that
//! carries the teacher's privileged embeddings during training.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{Device, Tensor};

use crate::config::DualConfig;
use crate::encoder::Encoder;
use crate::error::Result;
use crate::init::Initializer;
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

/// The release's `Dual` model; field names are its PyTorch state-dict names.
#[derive(Module, Debug)]
pub struct Dual {
    length_to_feature: Linear,
    token_to_feature: Linear,
    ts_encoder: Encoder,
    prompt_encoder: Encoder,
    ts_proj: Linear,
    prompt_proj: Linear,
}

impl Dual {
    /// PyTorch-default initialisation drawn from `seed`, on `device`.
    ///
    /// Use an autodiff device (`device.autodiff()`) to train; dropout is active only there.
    pub fn init(config: &DualConfig, seed: u64, device: &Device) -> Result<Self> {
        config.validate()?;
        let mut init = Initializer::new(seed, device);
        let encoder = |init: &mut Initializer| {
            Encoder::init(
                init,
                config.layers,
                config.channel,
                config.heads,
                config.d_ff,
                config.dropout,
            )
        };
        Ok(Dual {
            length_to_feature: init.linear(config.input_len, config.channel),
            token_to_feature: init.linear(config.d_llm, config.channel),
            ts_encoder: encoder(&mut init),
            prompt_encoder: encoder(&mut init),
            ts_proj: init.linear(config.channel, config.output_len),
            prompt_proj: init.linear(config.channel, config.output_len),
        })
    }

    /// Both branches: history `x [batch, input_len, vars]` and teacher embeddings
    /// `emb [batch, vars, d_llm]`.
    pub fn forward(&self, x: Tensor<3>, emb: Tensor<3>) -> DualOutput {
        let (ts_out, ts_enc, ts_att) = self.time_series_branch(x);
        let (prompt_enc, prompt_att) = self
            .prompt_encoder
            .forward(self.token_to_feature.forward(emb));
        let prompt_out = self.prompt_proj.forward(prompt_enc.clone()).swap_dims(1, 2);
        DualOutput {
            ts_out,
            prompt_out,
            ts_enc,
            prompt_enc,
            ts_att: batch_mean(ts_att),
            prompt_att: batch_mean(prompt_att),
        }
    }

    /// Time-series branch only (what evaluation and forecasting use):
    /// `x [batch, input_len, vars]` → `[batch, output_len, vars]` in the units of `x`.
    pub fn forecast(&self, x: Tensor<3>) -> Tensor<3> {
        self.time_series_branch(x).0
    }

    /// Returns (forecast `[batch, horizon, vars]`, encoding, last-layer attention).
    fn time_series_branch(&self, x: Tensor<3>) -> (Tensor<3>, Tensor<3>, Tensor<4>) {
        let (normalized, revin) = Revin::normalize(x);
        let features = self.length_to_feature.forward(normalized.swap_dims(1, 2));
        let (enc, att) = self.ts_encoder.forward(features);
        let out = self.ts_proj.forward(enc.clone()).swap_dims(1, 2);
        (revin.denormalize(out), enc, att)
    }
}

/// `[batch, heads, vars, vars]` → `[heads, vars, vars]`.
fn batch_mean(att: Tensor<4>) -> Tensor<3> {
    att.mean_dim(0).squeeze_dim(0)
}
