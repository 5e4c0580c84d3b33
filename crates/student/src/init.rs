//! PyTorch-default initialisation drawn from a seeded, portable generator.
//!
//! `nn.Linear` and `nn.Conv1d` initialise weight and bias uniformly in ±1/sqrt(fan_in)
//! ([`torch_linear_init`]); LayerNorms start at 1 and 0. Values are drawn on the host from
//! the workspace's [`SplitMix64`] so a seed gives the same weights on every platform and
//! device.

use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::{Device, Tensor, TensorData};
use timekd_data::seeded::{SplitMix64, torch_linear_init};

/// Draws layer parameters in a fixed order from one seeded stream.
pub(crate) struct Initializer<'a> {
    rng: SplitMix64,
    device: &'a Device,
}

impl<'a> Initializer<'a> {
    /// A stream seeded with `seed`, creating tensors on `device`.
    pub(crate) fn new(seed: u64, device: &'a Device) -> Self {
        Initializer {
            rng: SplitMix64::new(seed),
            device,
        }
    }

    /// A `d_input → d_output` linear layer (also a 1x1 convolution), weight stored `[in, out]`.
    pub(crate) fn linear(&mut self, d_input: usize, d_output: usize) -> Linear {
        // Drawn in PyTorch's [out, in] order, then stored transposed for Burn.
        let (torch, bias) = torch_linear_init(d_input, d_output, &mut self.rng);
        let mut weight = vec![0.0f32; d_input * d_output];
        for o in 0..d_output {
            for i in 0..d_input {
                weight[i * d_output + o] = torch[o * d_input + i];
            }
        }
        Linear {
            weight: Param::from_tensor(Tensor::from_data(
                TensorData::new(weight, [d_input, d_output]),
                self.device,
            )),
            bias: Some(Param::from_tensor(Tensor::from_data(
                TensorData::new(bias, [d_output]),
                self.device,
            ))),
        }
    }

    /// The device tensors are created on.
    pub(crate) fn device(&self) -> &'a Device {
        self.device
    }
}
