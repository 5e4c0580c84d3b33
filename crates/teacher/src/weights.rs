//! Reading named tensors from a safetensors file into Burn tensors and layers, with the shape
//! checks and error messages every family's loader and the SCA's need.

use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::nn::{Embedding, LayerNorm, LayerNormConfig, Linear, RmsNorm, RmsNormConfig};
use burn::tensor::{Device, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};

use crate::error::TeacherError;

/// A safetensors file read into memory.
pub(crate) struct WeightFile {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl WeightFile {
    /// Reads the whole file; a missing file is [`TeacherError::MissingFile`].
    pub(crate) fn read(path: &Path, what: &'static str) -> Result<Self, TeacherError> {
        if !path.is_file() {
            return Err(TeacherError::MissingFile {
                what,
                path: path.to_path_buf(),
            });
        }
        let bytes = std::fs::read(path).map_err(|source| TeacherError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(WeightFile {
            path: path.to_path_buf(),
            bytes,
        })
    }

    /// Lowercase hex sha256 of the file's bytes.
    pub(crate) fn sha256(&self) -> String {
        timekd_data::sha256_hex(&self.bytes)
    }

    /// Parses the header; a malformed file is [`TeacherError::BadSafetensors`].
    pub(crate) fn tensors(&self) -> Result<NamedTensors<'_>, TeacherError> {
        let st =
            SafeTensors::deserialize(&self.bytes).map_err(|e| TeacherError::BadSafetensors {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
        Ok(NamedTensors {
            st,
            path: &self.path,
            prefix: String::new(),
        })
    }
}

/// How a checkpoint stores a linear layer's weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `[in, out]` (GPT-2's Conv1D; Burn's own layout).
    InOut,
    /// `[out, in]` (PyTorch's `nn.Linear`: LLaMA, BERT).
    OutIn,
}

/// The tensors of one checkpoint file, looked up by name (after an optional prefix).
pub struct NamedTensors<'a> {
    st: SafeTensors<'a>,
    path: &'a Path,
    prefix: String,
}

impl NamedTensors<'_> {
    /// Looks every later name up as `prefix + name`.
    pub fn set_prefix(&mut self, prefix: &str) {
        self.prefix = prefix.to_string();
    }

    /// Reads through `prefix` (e.g. `model.` of `LlamaForCausalLM`) when `probe` is only found
    /// with it.
    pub fn use_prefix_if_needed(&mut self, prefix: &str, probe: &str) {
        if !self.contains(probe) && self.contains(&format!("{prefix}{probe}")) {
            self.set_prefix(prefix);
        }
    }

    /// Whether `name` (after the prefix) exists.
    pub fn contains(&self, name: &str) -> bool {
        self.st.tensor(&format!("{}{name}", self.prefix)).is_ok()
    }

    /// Shape of tensor `name`.
    pub fn shape(&self, name: &str) -> Result<Vec<usize>, TeacherError> {
        let full = format!("{}{name}", self.prefix);
        self.st
            .tensor(&full)
            .map(|v| v.shape().to_vec())
            .map_err(|_| TeacherError::MissingTensor {
                name: full,
                path: self.path.to_path_buf(),
            })
    }

    /// The values of tensor `name` as f32, row-major, after checking it has `expected` shape.
    pub fn values(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>, TeacherError> {
        let full = format!("{}{name}", self.prefix);
        let view = self
            .st
            .tensor(&full)
            .map_err(|_| TeacherError::MissingTensor {
                name: full.clone(),
                path: self.path.to_path_buf(),
            })?;
        if view.shape() != expected {
            return Err(TeacherError::TensorShape {
                name: full,
                path: self.path.to_path_buf(),
                expected: expected.to_vec(),
                found: view.shape().to_vec(),
            });
        }
        let data = view.data();
        let values = match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::F64 => data
                .chunks_exact(8)
                .map(|c| {
                    f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
                })
                .collect(),
            other => {
                return Err(TeacherError::TensorDtype {
                    name: full,
                    path: self.path.to_path_buf(),
                    dtype: format!("{other:?}"),
                });
            }
        };
        Ok(values)
    }

    /// Tensor `name` of `shape` on `device` (f32 values, the device's float dtype).
    pub fn tensor<const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
        device: &Device,
    ) -> Result<Tensor<D>, TeacherError> {
        let values = self.values(name, &shape)?;
        Ok(Tensor::from_data(TensorData::new(values, shape), device))
    }

    /// An embedding table `name` [rows, d].
    pub fn embedding(
        &self,
        name: &str,
        rows: usize,
        d: usize,
        device: &Device,
    ) -> Result<Embedding, TeacherError> {
        Ok(Embedding {
            weight: Param::from_tensor(self.tensor(name, [rows, d], device)?),
        })
    }

    /// A linear layer `{name}.weight` (stored in `layout`) and, with `bias`, `{name}.bias`
    /// [d_out].
    pub fn linear(
        &self,
        name: &str,
        [d_in, d_out]: [usize; 2],
        layout: Layout,
        bias: bool,
        device: &Device,
    ) -> Result<Linear, TeacherError> {
        let weight = format!("{name}.weight");
        let weight = match layout {
            Layout::InOut => self.tensor(&weight, [d_in, d_out], device)?,
            Layout::OutIn => self.tensor(&weight, [d_out, d_in], device)?.transpose(),
        };
        let bias = if bias {
            let b = self.tensor(&format!("{name}.bias"), [d_out], device)?;
            Some(Param::from_tensor(b))
        } else {
            None
        };
        Ok(Linear {
            weight: Param::from_tensor(weight),
            bias,
        })
    }

    /// A LayerNorm `{name}.weight` and `{name}.bias` [d] (or the older `gamma` and `beta`).
    pub fn layer_norm(
        &self,
        name: &str,
        d: usize,
        eps: f64,
        device: &Device,
    ) -> Result<LayerNorm, TeacherError> {
        let (scale, shift) = if self.contains(&format!("{name}.gamma")) {
            ("gamma", "beta")
        } else {
            ("weight", "bias")
        };
        let mut ln = LayerNormConfig::new(d).with_epsilon(eps).init(device);
        ln.gamma = Param::from_tensor(self.tensor(&format!("{name}.{scale}"), [d], device)?);
        ln.beta = Some(Param::from_tensor(self.tensor(
            &format!("{name}.{shift}"),
            [d],
            device,
        )?));
        Ok(ln)
    }

    /// An RMSNorm `{name}.weight` [d].
    pub fn rms_norm(
        &self,
        name: &str,
        d: usize,
        eps: f64,
        device: &Device,
    ) -> Result<RmsNorm, TeacherError> {
        let mut norm = RmsNormConfig::new(d).with_epsilon(eps).init(device);
        norm.gamma = Param::from_tensor(self.tensor(&format!("{name}.weight"), [d], device)?);
        Ok(norm)
    }
}
