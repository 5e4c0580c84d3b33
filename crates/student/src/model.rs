//! The dual student: a time-series branch used at test time and a prompt branch that
//! carries the teacher's privileged embeddings during training.

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use crate::config::DualConfig;
use crate::encoder::{Encoder, EncoderShape};
use crate::error::{Result, StudentError};
use crate::init::Initializer;
use crate::pack;
use crate::paired::PairedLinear;
use crate::revin::Revin;

/// Everything the distillation loss needs from one forward pass of both branches.
///
/// For a pack of R runs (see [`Dual::pack`]) every field holds the runs one after another
/// along its first axis (`batch` below is R × the windows of one run's batch).
#[derive(Debug, Clone)]
pub struct DualOutput {
    /// Runs of the model that produced it (1 unless packed).
    pub runs: usize,
    /// Forecast of the time-series branch, de-normalised: `[batch, horizon, vars]`.
    pub ts_out: Tensor<3>,
    /// Reconstruction of the prompt branch (no de-normalisation): `[batch, horizon, vars]`.
    pub prompt_out: Tensor<3>,
    /// Time-series encoding: `[batch, vars, channel]`.
    pub ts_enc: Tensor<3>,
    /// Prompt encoding: `[batch, vars, channel]`.
    pub prompt_enc: Tensor<3>,
    /// Last-layer attention of the time-series encoder averaged over each run's batch:
    /// `[runs · heads, vars, vars]`.
    pub ts_att: Tensor<3>,
    /// Last-layer attention of the prompt encoder averaged over each run's batch:
    /// `[runs · heads, vars, vars]`.
    pub prompt_att: Tensor<3>,
}

/// The release's `Dual` model. Both branches' encoders live in one `Encoder` and both
/// output projections in one `PairedLinear` (the `paired` layers), so a training step runs
/// each layer once for the two branches; the state dict keeps the release's names
/// (`ts_encoder.*`, `prompt_encoder.*`, `ts_proj.*`, `prompt_proj.*`).
///
/// Several runs of one configuration (other seeds) can be packed into one model
/// ([`Dual::pack`]) that trains them all with one kernel per operation; each run's numbers
/// are what it computes alone.
#[derive(Module, Debug)]
pub struct Dual {
    length_to_feature: PairedLinear,
    token_to_feature: PairedLinear,
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
            length_to_feature: PairedLinear::single(length_to_feature),
            token_to_feature: PairedLinear::single(token_to_feature),
            encoder,
            projection: PairedLinear::pair(ts_proj, prompt_proj),
        })
    }

    /// The runs this model holds: 1, or the size of a pack.
    pub fn runs(&self) -> usize {
        self.length_to_feature.weight.dims()[0]
    }

    /// One model of several runs of the same shape (their parameters concatenated, run
    /// after run), for training them together. Fails when the shapes differ.
    pub fn pack(models: Vec<Dual>) -> Result<Dual> {
        let shapes: Vec<_> = models.iter().map(Dual::shape).collect();
        if models.is_empty() || shapes.iter().any(|s| *s != shapes[0]) {
            return Err(StudentError::Config(format!(
                "only models of one shape pack together (per run: L×C, d_llm×C, C×H \
                 {:?})",
                shapes
            )));
        }
        Ok(pack::concat(models))
    }

    /// The runs of a pack as separate models, in pack order (one model for an unpacked one).
    pub fn unpack(self) -> Vec<Dual> {
        let runs = self.runs();
        if runs == 1 {
            return vec![self];
        }
        (0..runs)
            .map(|r| pack::part(self.clone(), r, runs))
            .collect()
    }

    /// Per-run parameter shapes that decide whether two models pack together.
    fn shape(&self) -> ([usize; 3], [usize; 3], [usize; 3], usize) {
        let per_run = |mut dims: [usize; 3]| {
            dims[0] = 1;
            dims
        };
        (
            per_run(self.length_to_feature.weight.dims()),
            per_run(self.token_to_feature.weight.dims()),
            per_run(self.projection.weight.dims()),
            self.encoder.depth(),
        )
    }

    /// Both branches: `x` `[batch, L, vars]` (scaled history) and `emb` `[batch, vars,
    /// d_llm]`. For a pack of R runs, `batch` is R equal batches one after another, run `r`'s
    /// at rows `r·b..(r+1)·b`.
    pub fn forward(&self, x: Tensor<3>, emb: Tensor<3>) -> DualOutput {
        let runs = self.runs();
        let [rows, _, vars] = x.dims();
        let batch = rows / runs;
        let (normalized, revin) = Revin::normalize(x);
        let ts_tokens = self
            .length_to_feature
            .forward_batched(by_run(normalized.swap_dims(1, 2), runs));
        let prompt_tokens = self.token_to_feature.forward_batched(by_run(emb, runs));
        let channel = ts_tokens.dims()[3];
        // [R, 2, b, N, C] → [2R, b, N, C]: the runs' branches in stack order.
        let tokens = Tensor::stack::<5>(vec![ts_tokens, prompt_tokens], 1).reshape([
            2 * runs,
            batch,
            vars,
            channel,
        ]);
        let (enc, att, out) = self.branches(tokens);
        // Batch means of every branch's attention in one reduction: [2R, heads, vars, vars].
        let att = att.mean_dim(1).squeeze_dim::<4>(1);
        DualOutput {
            runs,
            ts_out: revin.denormalize(branch(out.clone(), runs, 0)),
            prompt_out: branch(out, runs, 1),
            ts_enc: branch(enc.clone(), runs, 0),
            prompt_enc: branch(enc, runs, 1),
            ts_att: branch(att.clone(), runs, 0),
            prompt_att: branch(att, runs, 1),
        }
    }

    /// The time-series branch alone (no embeddings needed): `x` `[batch, L, vars]` →
    /// forecast `[batch, horizon, vars]`, de-normalised. For one run (unpack a pack first).
    pub fn forecast(&self, x: Tensor<3>) -> Tensor<3> {
        debug_assert_eq!(self.runs(), 1, "forecast with one run of a pack");
        let [batch, length, vars] = x.dims();
        let (normalized, revin) = Revin::normalize(x);
        let tokens = self
            .length_to_feature
            .forward(
                normalized
                    .swap_dims(1, 2)
                    .reshape([1, batch * vars, length]),
            );
        let channel = tokens.dims()[2];
        let (_, _, out) = self.branches(tokens.reshape([1, batch, vars, channel]));
        revin.denormalize(out.squeeze_dim(0))
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

/// The runs' windows on an axis of their own: `[R·b, a, c]` → `[R, b, a, c]` (one run's
/// by a new axis, so its tensor is not copied).
fn by_run(t: Tensor<3>, runs: usize) -> Tensor<4> {
    if runs == 1 {
        return t.unsqueeze_dim(0);
    }
    let [rows, a, c] = t.dims();
    t.reshape([runs, rows / runs, a, c])
}

/// Branch `i` of every run of `t` `[2R, x, y, z]` (run after run, each run's branches in
/// order) as `[R·x, y, z]`. One run's branch is a view (narrowed and squeezed, not copied).
fn branch(t: Tensor<4>, runs: usize, i: usize) -> Tensor<3> {
    if runs == 1 {
        return t.narrow(0, i, 1).squeeze_dim(0);
    }
    let [_, x, y, z] = t.dims();
    t.reshape([runs, 2, x * y, z])
        .narrow(1, i, 1)
        .reshape([runs * x, y, z])
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Tensor};

    use super::Dual;
    use crate::config::DualConfig;
    use crate::state_dict::tensor_to_vec;

    #[test]
    fn a_pack_unpacks_into_its_runs_and_refuses_other_shapes() {
        let device = Device::flex();
        let config = DualConfig::default();
        let models: Vec<Dual> = (0..3)
            .map(|seed| Dual::init(&config, seed, &device).unwrap())
            .collect();
        let packed = Dual::pack(models.clone()).unwrap();
        assert_eq!(packed.runs(), 3);
        let x = Tensor::<3>::ones([2, config.input_len, 7], &device);
        for (alone, back) in models.iter().zip(packed.unpack()) {
            assert_eq!(back.runs(), 1);
            let forecast = |m: &Dual| tensor_to_vec(m.forecast(x.clone())).unwrap();
            assert_eq!(forecast(alone), forecast(&back));
        }
        let other = DualConfig {
            output_len: config.output_len * 2,
            ..config
        };
        let mut mixed = models;
        mixed.push(Dual::init(&other, 9, &device).unwrap());
        let err = Dual::pack(mixed).expect_err("another H does not pack");
        assert!(err.to_string().contains("one shape"), "{err}");
        assert!(Dual::pack(Vec::new()).is_err());
    }
}
