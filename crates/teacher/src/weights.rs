//! Reading named tensors from a safetensors file into Burn tensors, with the shape checks
//! and error messages both the GPT-2 and the SCA loaders need.

use std::path::{Path, PathBuf};

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

/// The tensors of one file, looked up by name (after an optional prefix).
pub(crate) struct NamedTensors<'a> {
    st: SafeTensors<'a>,
    path: &'a Path,
    prefix: String,
}

impl NamedTensors<'_> {
    /// Looks every later name up as `prefix + name`.
    pub(crate) fn set_prefix(&mut self, prefix: &str) {
        self.prefix = prefix.to_string();
    }

    /// Whether `name` (without prefix) exists.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.st.tensor(&format!("{}{name}", self.prefix)).is_ok()
    }

    /// Shape of tensor `name`.
    pub(crate) fn shape(&self, name: &str) -> Result<Vec<usize>, TeacherError> {
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
    pub(crate) fn values(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>, TeacherError> {
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
    pub(crate) fn tensor<const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
        device: &Device,
    ) -> Result<Tensor<D>, TeacherError> {
        let values = self.values(name, &shape)?;
        Ok(Tensor::from_data(TensorData::new(values, shape), device))
    }
}
