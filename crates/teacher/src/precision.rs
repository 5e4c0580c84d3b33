//! How the language model computes: the float type of its matrix products.
//!
//! The residual stream and LayerNorms always run in f32; the matrix products and the
//! activations between them change type, and so do the attention softmax in f16 (bf16 and
//! the f32 modes take it in f32). Keeping the residual stream in f32 keeps half precision
//! safe from GPT-2's large residual activations, which overflow f16.
//!
//! On GPUs with tensor cores, Burn's CUDA backend (cubecl) computes f32 matrix products
//! with TF32 inputs (10-bit mantissa): about 5e-4 relative error per product.
//! [`Precision::F32Split`] restores f32 accuracy there by writing each operand as
//! `hi + lo`, where `hi` has a bfloat16 mantissa (exact in TF32), and summing
//! `hi·lo + lo·hi + hi·hi`: three tensor-core products instead of one; the dropped `lo·lo`
//! is below 2^-18 of each term (adding it changed nothing measurable on an H100).

use std::fmt;
use std::str::FromStr;

use burn::nn::Linear;
use burn::tensor::{FloatDType, Tensor};
use serde::{Deserialize, Serialize};

/// The float type of the language model's matrix products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Plain f32 products: exact f32 on the CPU; TF32 inputs on tensor-core GPUs.
    F32,
    /// f32 products as three products of TF32-exact parts: f32 accuracy on tensor cores.
    F32Split,
    /// bfloat16 products (f32 range, 8-bit mantissa). Measured 1.6e-2 (CPU) and 1.8e-2
    /// (H100) relative L2 from f32 on stored embeddings: over a 1e-2 bar, which f16 meets.
    Bf16,
    /// IEEE half products (5-bit exponent: values beyond 65504 overflow).
    F16,
}

impl Precision {
    /// The float type of the products' inputs and outputs.
    pub fn compute_dtype(self) -> FloatDType {
        match self {
            Precision::F32 | Precision::F32Split => FloatDType::F32,
            Precision::Bf16 => FloatDType::BF16,
            Precision::F16 => FloatDType::F16,
        }
    }

    /// Bytes per value of the products' inputs and outputs (and of cached keys/values).
    pub fn bytes(self) -> u64 {
        match self {
            Precision::F32 | Precision::F32Split => 4,
            Precision::Bf16 | Precision::F16 => 2,
        }
    }

    /// `x` in the products' float type.
    pub(crate) fn to_compute<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        x.cast(self.compute_dtype())
    }

    /// The additive attention mask in the type the scores are added in: f16 for
    /// [`Precision::F16`] (whose softmax runs in f16), f32 otherwise. Cast once per forward
    /// pass, not once per block.
    pub(crate) fn score_mask(self, mask: &Tensor<4>) -> Tensor<4> {
        match self {
            Precision::F16 => mask.clone().cast(FloatDType::F16),
            _ => mask.clone(),
        }
    }

    /// `a · b` (batched over leading axes, broadcasting like [`Tensor::matmul`]), in this
    /// precision. Inputs are cast to the compute type; the result has that type.
    pub(crate) fn matmul<const D: usize>(self, a: Tensor<D>, b: Tensor<D>) -> Tensor<D> {
        let (a, b) = (self.to_compute(a), self.to_compute(b));
        match self {
            Precision::F32Split => {
                let (a_hi, a_lo) = split_tf32(a);
                let (b_hi, b_lo) = split_tf32(b);
                // Small terms first, so they are not lost against the large one.
                let small = a_hi.clone().matmul(b_lo) + a_lo.matmul(b_hi.clone());
                small + a_hi.matmul(b_hi)
            }
            _ => a.matmul(b),
        }
    }

    /// `x · W + b` for a Linear layer whose weights are already in the compute type
    /// (see [`Precision::prepare_linear`]); the result has the compute type.
    pub(crate) fn linear<const D: usize>(self, layer: &Linear, x: Tensor<D>) -> Tensor<D> {
        self.affine(x, layer.weight.val(), layer.bias.as_ref().map(|b| b.val()))
    }

    /// `x · weight + bias` with `weight` [in, out] and `bias` [out] in the compute type (a
    /// Linear layer's, or some of its output columns); the result has the compute type.
    pub(crate) fn affine<const D: usize>(
        self,
        x: Tensor<D>,
        weight: Tensor<2>,
        bias: Option<Tensor<1>>,
    ) -> Tensor<D> {
        let out = self.matmul(x, weight.unsqueeze());
        match bias {
            Some(bias) => out + bias.unsqueeze(),
            None => out,
        }
    }

    /// `layer` with its weight and bias in the compute type.
    pub(crate) fn prepare_linear(self, layer: Linear) -> Linear {
        let dtype = self.compute_dtype();
        Linear {
            weight: layer.weight.map(|w| w.cast(dtype)),
            bias: layer.bias.map(|b| b.map(|b| b.cast(dtype))),
        }
    }
}

/// `x = hi + lo` with `hi` rounded to a bfloat16 mantissa (so TF32 holds it exactly) and `lo`
/// the exact f32 remainder.
fn split_tf32<const D: usize>(x: Tensor<D>) -> (Tensor<D>, Tensor<D>) {
    let hi = x.clone().cast(FloatDType::BF16).cast(FloatDType::F32);
    let lo = x - hi.clone();
    (hi, lo)
}

impl FromStr for Precision {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "f32" => Ok(Precision::F32),
            "f32split" | "f32-split" => Ok(Precision::F32Split),
            "bf16" => Ok(Precision::Bf16),
            "f16" => Ok(Precision::F16),
            _ => Err(format!(
                "unknown precision `{text}`: expected f32, f32-split, bf16 or f16"
            )),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::F32Split => "f32-split",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
        let num: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
        let den: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum();
        (num / den).sqrt()
    }

    #[test]
    fn split_parts_add_back_exactly_and_hi_fits_bf16() {
        let device = Device::flex();
        let x = Tensor::<2>::random([16, 16], Distribution::Normal(0.0, 3.0), &device);
        let (hi, lo) = split_tf32(x.clone());
        let back = (hi.clone() + lo.clone()).try_into_vec_as::<f32>().unwrap();
        assert_eq!(back, x.try_into_vec_as::<f32>().unwrap());
        for h in hi.try_into_vec_as::<f32>().unwrap() {
            assert_eq!(h.to_bits() & 0xFFFF, 0, "{h} has more than a bf16 mantissa");
        }
    }

    #[test]
    fn every_precision_multiplies_close_to_f32() {
        let device = Device::flex();
        let a = Tensor::<3>::random([2, 8, 32], Distribution::Normal(0.0, 1.0), &device);
        let b = Tensor::<3>::random([2, 32, 8], Distribution::Normal(0.0, 1.0), &device);
        let exact = Precision::F32
            .matmul(a.clone(), b.clone())
            .try_into_vec_as::<f32>()
            .unwrap();
        for (precision, tolerance) in [
            (Precision::F32Split, 1e-5),
            (Precision::Bf16, 2e-2),
            (Precision::F16, 2e-3),
        ] {
            let got = precision.matmul(a.clone(), b.clone());
            assert_eq!(got.dtype(), precision.compute_dtype().into());
            let got = got.try_into_vec_as::<f32>().unwrap();
            let err = rel_l2(&got, &exact);
            assert!(err <= tolerance, "{precision}: {err}");
        }
    }

    #[test]
    fn precisions_parse_and_display() {
        for p in [
            Precision::F32,
            Precision::F32Split,
            Precision::Bf16,
            Precision::F16,
        ] {
            assert_eq!(p.to_string().parse::<Precision>(), Ok(p));
        }
        assert_eq!(" BF16".parse::<Precision>(), Ok(Precision::Bf16));
        assert!(
            "fp8"
                .parse::<Precision>()
                .unwrap_err()
                .contains("expected f32")
        );
    }
}
