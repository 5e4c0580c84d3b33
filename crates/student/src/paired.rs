//! Layers holding BOTH branches' weights, stacked along a leading axis of 2: branch 0 is the
//! time-series branch, branch 1 the prompt branch. Layers of one branch (the input
//! projections) have a leading axis of 1, so every parameter of the student has a stack
//! axis, and a pack of runs (see the `pack` module) concatenates runs along it: `[2R, ...]`
//! for R runs, run after run, each run's branches in order.
//!
//! The two branches have the same shape, so one batched matrix product (or normalisation)
//! runs both: half the kernel launches of two separate encoders, which is what bounds a
//! model this small on a GPU. Inputs are `[k, rows, features]`; with `k = 1` only the
//! time-series branch runs (forecasting, which has no teacher embeddings).
//!
//! The PyTorch state dict keeps the branches apart (`ts_encoder.*` / `prompt_encoder.*`,
//! `ts_proj.*` / `prompt_proj.*`); `state_dict` splits and joins them.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::{Device, Tensor};

/// The first `k` branches of a stacked parameter.
fn branches<const D: usize>(stacked: Tensor<D>, k: usize) -> Tensor<D> {
    if stacked.dims()[0] == k {
        stacked
    } else {
        stacked.narrow(0, 0, k)
    }
}

/// `parts` stacked on a new leading axis as a new leaf tensor (stacked without autodiff,
/// then tracked again if the inputs were), so it can become a parameter.
fn stack_leaf<const D: usize, const E: usize>(parts: Vec<Tensor<D>>) -> Tensor<E> {
    let autodiff = parts.iter().any(Tensor::is_autodiff);
    let stacked = Tensor::stack(parts.into_iter().map(Tensor::inner).collect(), 0);
    if autodiff {
        stacked.autodiff()
    } else {
        stacked
    }
}

/// A Linear layer (or 1x1 convolution) per branch: weight `[k, in, out]`, bias `[k, out]`
/// (k = 2 for both branches, 1 for one; times the runs of a pack).
#[derive(Module, Debug)]
pub struct PairedLinear {
    pub(crate) weight: Param<Tensor<3>>,
    pub(crate) bias: Param<Tensor<2>>,
}

impl PairedLinear {
    /// Stacks the time-series branch's layer and the prompt branch's.
    pub(crate) fn pair(ts: Linear, prompt: Linear) -> Self {
        Self::stack(vec![ts, prompt])
    }

    /// One layer alone, with a stack axis of 1.
    pub(crate) fn single(layer: Linear) -> Self {
        Self::stack(vec![layer])
    }

    fn stack(layers: Vec<Linear>) -> Self {
        let (weights, biases) = layers
            .into_iter()
            .map(|layer| {
                let bias = layer
                    .bias
                    .expect("student layers are initialised with a bias")
                    .val();
                (layer.weight.val(), bias)
            })
            .unzip();
        PairedLinear {
            weight: Param::from_tensor(stack_leaf(weights)),
            bias: Param::from_tensor(stack_leaf(biases)),
        }
    }

    /// `x` [k, rows, in] → [k, rows, out], branch by branch.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let k = x.dims()[0];
        let weight = branches(self.weight.val(), k);
        let bias = branches(self.bias.val(), k);
        x.matmul(weight) + bias.unsqueeze_dim(1)
    }
}

impl PairedLinear {
    /// `x` [k, batch, rows, in] → [k, batch, rows, out]: each slice's layer over each of
    /// its batch's matrices (what a Linear does to a 3-D input).
    pub fn forward_batched(&self, x: Tensor<4>) -> Tensor<4> {
        x.matmul(self.weight.val().unsqueeze_dim(1))
            + self.bias.val().unsqueeze_dim::<3>(1).unsqueeze_dim(1)
    }
}

/// LayerNorm (biased variance, eps inside the square root, as PyTorch) per branch: gain
/// and shift `[2, features]`.
#[derive(Module, Debug)]
pub struct PairedLayerNorm {
    pub(crate) gamma: Param<Tensor<2>>,
    pub(crate) beta: Param<Tensor<2>>,
    epsilon: f64,
}

impl PairedLayerNorm {
    /// Gain 1, shift 0 for both branches.
    pub(crate) fn new(features: usize, epsilon: f64, device: &Device) -> Self {
        PairedLayerNorm {
            gamma: Param::from_tensor(Tensor::ones([2, features], device)),
            beta: Param::from_tensor(Tensor::zeros([2, features], device)),
            epsilon,
        }
    }

    /// `x` [k, rows, features] normalised over features, branch by branch.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let k = x.dims()[0];
        let mean = x.clone().mean_dim(2);
        let centered = x - mean;
        let var = (centered.clone() * centered.clone()).mean_dim(2);
        let normalized = centered / var.add_scalar(self.epsilon).sqrt();
        normalized * branches(self.gamma.val(), k).unsqueeze_dim(1)
            + branches(self.beta.val(), k).unsqueeze_dim(1)
    }
}
