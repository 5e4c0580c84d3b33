//! Reversible instance normalisation (RevIN without affine parameters).

use burn::tensor::Tensor;

/// Variance floor added before the square root, as in the release.
const EPS: f64 = 1e-5;

/// Per-sample, per-variable statistics of a history window, used to undo the normalisation.
#[derive(Debug, Clone)]
pub struct Revin {
    /// `[batch, 1, vars]`
    mean: Tensor<3>,
    /// `[batch, 1, vars]`: sqrt(population variance + 1e-5)
    std: Tensor<3>,
}

impl Revin {
    /// Normalises `x [batch, time, vars]` over time; returns the normalised tensor and the stats.
    pub fn normalize(x: Tensor<3>) -> (Tensor<3>, Revin) {
        let (var, mean) = x.clone().var_mean_bias(1);
        let std = var.add_scalar(EPS).sqrt();
        let normalized = (x - mean.clone()) / std.clone();
        (normalized, Revin { mean, std })
    }

    /// Restores the scale of `y [batch, time, vars]` from the stats of its history.
    pub fn denormalize(&self, y: Tensor<3>) -> Tensor<3> {
        y * self.std.clone() + self.mean.clone()
    }
}
