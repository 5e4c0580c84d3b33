//! Subtractive cross attention (SCA): one pre-norm encoder layer over the LLM's embedding
//! dimensions, with the N variables as features.
//!
//! ```text
//! qn = LN_a(E_gt);  kn = vn = LN_a(E_hd)                  (one LayerNorm(N), shared)
//! A  = softmax((qn Wq + bq)(kn Wk + bk)ᵀ · scale)         (single head, scale = N^-1/2)
//! O  = (A (vn Wv + bv)) Wo + bo
//! S  = LN_f(qn − O)                                        (subtractive)
//! out = S + W2·GELU(W1·S + b1) + b2                        (N → d_ff → N, erf GELU)
//! ```
//!
//! No dropout. Weights come from a recorded seed ([`Sca::init`], PyTorch's default
//! distributions) or from a safetensors file with the release's state-dict names
//! ([`Sca::load`], [`Sca::save`]).

use std::path::Path;

use burn::module::{Module, Param};
use burn::nn::{LayerNorm, LayerNormConfig, Linear};
use burn::tensor::activation::{gelu, softmax};
use burn::tensor::{Device, Tensor, TensorData};
use timekd_data::files::write_safetensors;
use timekd_data::seeded::{SplitMix64, torch_linear_init};

use crate::error::{TeacherError, read_back};
use crate::precision::Precision;
use crate::weights::WeightFile;

/// Key prefix of the release's SCA state dict (`weight.layers.0.…`).
pub const SCA_PREFIX: &str = "weight.layers.0.";

const EPS: f64 = 1e-5;

/// The SCA layer. Inputs and output are [windows, d_llm, n_vars].
#[derive(Module, Debug)]
pub struct Sca {
    norm_attn: LayerNorm,
    w_q: Linear,
    w_k: Linear,
    w_v: Linear,
    to_out: Linear,
    norm_ffn: LayerNorm,
    ff_in: Linear,
    ff_out: Linear,
    scale: f64,
}

/// A Linear layer as PyTorch stores it: weight [out, in] row-major, bias [out].
struct TorchLinear {
    weight: Vec<f32>,
    bias: Vec<f32>,
    d_in: usize,
    d_out: usize,
}

impl TorchLinear {
    fn into_burn(self, device: &Device) -> Linear {
        // Burn's Linear is [in, out]: transpose.
        let mut w = vec![0f32; self.weight.len()];
        for o in 0..self.d_out {
            for i in 0..self.d_in {
                w[i * self.d_out + o] = self.weight[o * self.d_in + i];
            }
        }
        Linear {
            weight: Param::from_tensor(Tensor::from_data(
                TensorData::new(w, [self.d_in, self.d_out]),
                device,
            )),
            bias: Some(Param::from_tensor(Tensor::from_data(
                TensorData::new(self.bias, [self.d_out]),
                device,
            ))),
        }
    }

    fn from_burn(linear: &Linear) -> Result<Self, TeacherError> {
        let [d_in, d_out] = linear.weight.dims();
        let w = read_back(linear.weight.val())?;
        let mut weight = vec![0f32; w.len()];
        for i in 0..d_in {
            for o in 0..d_out {
                weight[o * d_in + i] = w[i * d_out + o];
            }
        }
        let bias = match &linear.bias {
            Some(b) => read_back(b.val())?,
            None => vec![0.0; d_out],
        };
        Ok(TorchLinear {
            weight,
            bias,
            d_in,
            d_out,
        })
    }

    /// PyTorch's default `nn.Linear` initialisation: weight and bias uniform in
    /// ±1/sqrt(d_in).
    fn random(d_in: usize, d_out: usize, rng: &mut SplitMix64) -> Self {
        let (weight, bias) = torch_linear_init(d_in, d_out, rng);
        TorchLinear {
            weight,
            bias,
            d_in,
            d_out,
        }
    }
}

/// A LayerNorm's γ and β on the host (β zeros when it has none).
fn norm_values(ln: &LayerNorm) -> Result<(Vec<f32>, Vec<f32>), TeacherError> {
    let gamma = read_back(ln.gamma.val())?;
    let beta = match &ln.beta {
        Some(b) => read_back(b.val())?,
        None => vec![0.0; gamma.len()],
    };
    Ok((gamma, beta))
}

fn layer_norm(gamma: Vec<f32>, beta: Vec<f32>, device: &Device) -> LayerNorm {
    let n = gamma.len();
    let mut ln = LayerNormConfig::new(n).with_epsilon(EPS).init(device);
    ln.gamma = Param::from_tensor(Tensor::from_data(TensorData::new(gamma, [n]), device));
    ln.beta = Some(Param::from_tensor(Tensor::from_data(
        TensorData::new(beta, [n]),
        device,
    )));
    ln
}

impl Sca {
    /// A fresh SCA for `n_vars` variables and FFN width `d_ff` (4·d_llm in the release),
    /// initialised from `seed`: Linear weights and biases uniform in ±1/sqrt(fan_in)
    /// (PyTorch's defaults), LayerNorms 1 and 0. The same seed gives the same weights.
    pub fn init(n_vars: usize, d_ff: usize, seed: u64, device: &Device) -> Self {
        let mut rng = SplitMix64::new(seed);
        let n = n_vars;
        let w_q = TorchLinear::random(n, n, &mut rng);
        let w_k = TorchLinear::random(n, n, &mut rng);
        let w_v = TorchLinear::random(n, n, &mut rng);
        let to_out = TorchLinear::random(n, n, &mut rng);
        let ff_in = TorchLinear::random(n, d_ff, &mut rng);
        let ff_out = TorchLinear::random(d_ff, n, &mut rng);
        let ones = || vec![1.0f32; n];
        let zeros = || vec![0.0f32; n];
        Sca {
            norm_attn: layer_norm(ones(), zeros(), device),
            w_q: w_q.into_burn(device),
            w_k: w_k.into_burn(device),
            w_v: w_v.into_burn(device),
            to_out: to_out.into_burn(device),
            norm_ffn: layer_norm(ones(), zeros(), device),
            ff_in: ff_in.into_burn(device),
            ff_out: ff_out.into_burn(device),
            scale: 1.0 / (n as f64).sqrt(),
        }
    }

    /// Loads an SCA from a safetensors file with the release's names
    /// (`weight.layers.0.self_attn.W_Q.weight`, …, see the parity fixture's README).
    /// N and d_ff are taken from the file; the attention scale from
    /// `self_attn.sdp_attn.scale` when present, else N^-1/2.
    pub fn load(path: &Path, device: &Device) -> Result<Self, TeacherError> {
        let file = WeightFile::read(path, "SCA weights file")?;
        let mut t = file.tensors()?;
        t.set_prefix(SCA_PREFIX);
        let n = match t.shape("norm_attn.weight")?.as_slice() {
            [n] => *n,
            other => {
                return Err(TeacherError::TensorShape {
                    name: format!("{SCA_PREFIX}norm_attn.weight"),
                    path: path.to_path_buf(),
                    expected: vec![0],
                    found: other.to_vec(),
                });
            }
        };
        let d_ff = t.shape("ff.0.weight")?.first().copied().unwrap_or(0);
        let lin = |name: &str, d_in: usize, d_out: usize| -> Result<Linear, TeacherError> {
            Ok(TorchLinear {
                weight: t.values(&format!("{name}.weight"), &[d_out, d_in])?,
                bias: t.values(&format!("{name}.bias"), &[d_out])?,
                d_in,
                d_out,
            }
            .into_burn(device))
        };
        let norm = |name: &str| -> Result<LayerNorm, TeacherError> {
            Ok(layer_norm(
                t.values(&format!("{name}.weight"), &[n])?,
                t.values(&format!("{name}.bias"), &[n])?,
                device,
            ))
        };
        let scale_name = "self_attn.sdp_attn.scale";
        let scale = if t.contains(scale_name) {
            let shape = t.shape(scale_name)?;
            f64::from(
                t.values(scale_name, &shape)?
                    .first()
                    .copied()
                    .unwrap_or(0.0),
            )
        } else {
            1.0 / (n as f64).sqrt()
        };
        Ok(Sca {
            norm_attn: norm("norm_attn")?,
            w_q: lin("self_attn.W_Q", n, n)?,
            w_k: lin("self_attn.W_K", n, n)?,
            w_v: lin("self_attn.W_V", n, n)?,
            to_out: lin("self_attn.to_out.0", n, n)?,
            norm_ffn: norm("norm_ffn")?,
            ff_in: lin("ff.0", n, d_ff)?,
            ff_out: lin("ff.3", d_ff, n)?,
            scale,
        })
    }

    /// Saves the weights in the format [`Sca::load`] reads (F32, the release's names, the
    /// scale as a 0-dimensional tensor).
    pub fn save(&self, path: &Path) -> Result<(), TeacherError> {
        let mut entries: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
        let mut linear = |name: &str, l: &Linear| -> Result<(), TeacherError> {
            let t = TorchLinear::from_burn(l)?;
            entries.push((format!("{name}.weight"), vec![t.d_out, t.d_in], t.weight));
            entries.push((format!("{name}.bias"), vec![t.d_out], t.bias));
            Ok(())
        };
        linear("self_attn.W_Q", &self.w_q)?;
        linear("self_attn.W_K", &self.w_k)?;
        linear("self_attn.W_V", &self.w_v)?;
        linear("self_attn.to_out.0", &self.to_out)?;
        linear("ff.0", &self.ff_in)?;
        linear("ff.3", &self.ff_out)?;
        for (name, ln) in [("norm_attn", &self.norm_attn), ("norm_ffn", &self.norm_ffn)] {
            let (gamma, beta) = norm_values(ln)?;
            let n = gamma.len();
            entries.push((format!("{name}.weight"), vec![n], gamma));
            entries.push((format!("{name}.bias"), vec![n], beta));
        }
        entries.push((
            "self_attn.sdp_attn.scale".to_string(),
            Vec::new(),
            vec![self.scale as f32],
        ));
        let names: Vec<String> = entries
            .iter()
            .map(|(name, _, _)| format!("{SCA_PREFIX}{name}"))
            .collect();
        let tensors: Vec<_> = names
            .iter()
            .zip(&entries)
            .map(|(name, (_, shape, values))| (name.as_str(), shape.as_slice(), values.as_slice()))
            .collect();
        write_safetensors(path, &tensors).map_err(|source| TeacherError::Write {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Every weight as one f32 buffer in the order the fused GPU SCA reads them
    /// (`cuda/sca.cu`'s `sca_weights`): the attention norm's γ and β, then W_Q, b_Q, W_K, b_K,
    /// W_V, b_V, W_O, b_O, the feed-forward norm's γ and β, W_1, b_1, W_2, b_2, each Linear's
    /// weight as PyTorch stores it ([out, in] row-major).
    #[cfg(feature = "cuda")]
    pub(crate) fn fused_layout(&self) -> Result<Vec<f32>, TeacherError> {
        let mut out = Vec::new();
        let norm = |ln: &LayerNorm, out: &mut Vec<f32>| -> Result<(), TeacherError> {
            let (gamma, beta) = norm_values(ln)?;
            out.extend(gamma);
            out.extend(beta);
            Ok(())
        };
        let linear = |l: &Linear, out: &mut Vec<f32>| -> Result<(), TeacherError> {
            let t = TorchLinear::from_burn(l)?;
            out.extend(t.weight);
            out.extend(t.bias);
            Ok(())
        };
        norm(&self.norm_attn, &mut out)?;
        for l in [&self.w_q, &self.w_k, &self.w_v, &self.to_out] {
            linear(l, &mut out)?;
        }
        norm(&self.norm_ffn, &mut out)?;
        linear(&self.ff_in, &mut out)?;
        linear(&self.ff_out, &mut out)?;
        Ok(out)
    }

    /// Number of variables N (the feature width).
    pub fn n_vars(&self) -> usize {
        self.w_q.weight.dims()[0]
    }

    /// The device its weights are on.
    pub fn device(&self) -> Device {
        self.w_q.weight.device()
    }

    /// Inner width of the feed-forward block.
    pub fn d_ff(&self) -> usize {
        self.ff_in.weight.dims()[1]
    }

    /// The attention scale (N^-1/2 unless a loaded file says otherwise).
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// `e_gt`, `e_hd`: [windows, d_llm, n_vars] (GT and HD last-token states with the
    /// last two axes swapped). Returns `out` [windows, d_llm, n_vars]; the stored embedding
    /// is `out` with its last two axes swapped.
    pub fn forward(&self, e_gt: Tensor<3>, e_hd: Tensor<3>) -> Tensor<3> {
        self.forward_in(e_gt, e_hd, Precision::F32)
    }

    /// [`forward`](Self::forward) with its matrix products in `precision` (f32 or
    /// f32-split: the SCA is tiny, so there is no reason to round it further).
    pub fn forward_in(&self, e_gt: Tensor<3>, e_hd: Tensor<3>, precision: Precision) -> Tensor<3> {
        let p = precision;
        let qn = self.norm_attn.forward(e_gt);
        let kvn = self.norm_attn.forward(e_hd);
        let q = p.linear(&self.w_q, qn.clone());
        let k = p.linear(&self.w_k, kvn.clone());
        let v = p.linear(&self.w_v, kvn);
        let a = softmax(p.matmul(q, k.swap_dims(1, 2)) * self.scale, 2); // [w, d_llm, d_llm]
        let o = p.linear(&self.to_out, p.matmul(a, v));
        let s = self.norm_ffn.forward(qn - o);
        s.clone() + p.linear(&self.ff_out, gelu(p.linear(&self.ff_in, s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weights(s: &Sca) -> Vec<f32> {
        let mut v = read_back(s.w_q.weight.val()).unwrap();
        v.extend(read_back(s.ff_out.bias.as_ref().unwrap().val()).unwrap());
        v
    }

    #[test]
    fn seeded_init_is_deterministic_and_bounded() {
        let device = Device::flex();
        let a = Sca::init(7, 128, 42, &device);
        let b = Sca::init(7, 128, 42, &device);
        let c = Sca::init(7, 128, 43, &device);
        assert_eq!(weights(&a), weights(&b));
        assert_ne!(weights(&a), weights(&c));
        let bound = 1.0 / 7f32.sqrt();
        let w = read_back(a.w_q.weight.val()).unwrap();
        assert!(w.iter().all(|x| x.abs() <= bound));
        assert!(
            w.iter().any(|x| x.abs() > bound / 2.0),
            "spread over the range"
        );
        let ff_bias = read_back(a.ff_out.bias.as_ref().unwrap().val()).unwrap();
        assert!(ff_bias.iter().all(|x| x.abs() <= 1.0 / 128f32.sqrt()));
        assert_eq!((a.n_vars(), a.d_ff()), (7, 128));
        assert!((a.scale() - 1.0 / 7f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn save_then_load_round_trips() {
        let device = Device::flex();
        let a = Sca::init(5, 16, 7, &device);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sca.safetensors");
        a.save(&path).unwrap();
        let file = WeightFile::read(&path, "SCA").unwrap();
        let mut t = file.tensors().unwrap();
        t.set_prefix(SCA_PREFIX);
        assert!(t.contains("self_attn.W_Q.weight") && t.contains("ff.3.bias"));
        assert_eq!(
            t.shape("self_attn.sdp_attn.scale").unwrap(),
            Vec::<usize>::new()
        );
        assert_eq!(t.shape("ff.0.weight").unwrap(), vec![16, 5]);
        let b = Sca::load(&path, &device).unwrap();
        assert_eq!(weights(&a), weights(&b));
        let x = Tensor::<3>::from_data(
            TensorData::new(
                (0..40).map(|i| (i as f32 * 0.37).sin()).collect(),
                [1, 8, 5],
            ),
            &device,
        );
        let y = Tensor::<3>::from_data(
            TensorData::new(
                (0..40).map(|i| (i as f32 * 0.11).cos()).collect(),
                [1, 8, 5],
            ),
            &device,
        );
        let oa = read_back(a.forward(x.clone(), y.clone())).unwrap();
        let ob = read_back(b.forward(x, y)).unwrap();
        assert_eq!(oa, ob);
    }

    #[test]
    fn load_names_a_missing_tensor() {
        let device = Device::flex();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sca.safetensors");
        Sca::init(3, 8, 1, &device).save(&path).unwrap();
        // Rewrite the file without W_V's bias.
        let bytes = std::fs::read(&path).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let kept: Vec<(String, safetensors::tensor::TensorView<'_>)> = st
            .tensors()
            .into_iter()
            .filter(|(n, _)| !n.ends_with("W_V.bias"))
            .collect();
        let out = safetensors::serialize(kept, None).unwrap();
        std::fs::write(&path, out).unwrap();
        let err = Sca::load(&path, &device).unwrap_err();
        assert!(
            err.to_string()
                .contains("weight.layers.0.self_attn.W_V.bias"),
            "{err}"
        );
    }
}
