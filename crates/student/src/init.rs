//! PyTorch-default initialisation drawn from a seeded, portable generator.
//!
//! `nn.Linear` and `nn.Conv1d` initialise weight and bias uniformly in ±1/sqrt(fan_in)
//! (Kaiming-uniform with a = sqrt(5) reduces to that bound); LayerNorms start at 1 and 0.
//! Values are drawn on the host from ChaCha8 so a seed gives the same weights on every
//! platform and device.

use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::{Device, Tensor, TensorData};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Draws layer parameters in a fixed order from one seeded stream.
pub(crate) struct Initializer<'a> {
    rng: ChaCha8Rng,
    device: &'a Device,
}

impl<'a> Initializer<'a> {
    /// A stream seeded with `seed`, creating tensors on `device`.
    pub(crate) fn new(seed: u64, device: &'a Device) -> Self {
        use rand::SeedableRng;
        Initializer {
            rng: ChaCha8Rng::seed_from_u64(seed),
            device,
        }
    }

    /// A `d_input → d_output` linear layer (also a 1x1 convolution), weight stored `[in, out]`.
    pub(crate) fn linear(&mut self, d_input: usize, d_output: usize) -> Linear {
        let bound = 1.0 / (d_input as f64).sqrt();
        // Drawn in PyTorch's [out, in] order, then stored transposed for Burn.
        let torch: Vec<f32> = (0..d_input * d_output)
            .map(|_| self.uniform(bound))
            .collect();
        let mut weight = vec![0.0f32; d_input * d_output];
        for o in 0..d_output {
            for i in 0..d_input {
                weight[i * d_output + o] = torch[o * d_input + i];
            }
        }
        let bias: Vec<f32> = (0..d_output).map(|_| self.uniform(bound)).collect();
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

    fn uniform(&mut self, bound: f64) -> f32 {
        self.rng.random_range(-bound..bound) as f32
    }
}
