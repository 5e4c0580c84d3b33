//! Reading named tensors from a safetensors file (or a checkpoint split over several) into
//! Burn tensors and layers, with the shape checks and error messages every family's loader
//! and the SCA's need.
//!
//! A checkpoint directory holds its weights as `model.safetensors`, or, for larger models
//! (Llama-3.2-3B), as shards listed by `model.safetensors.index.json` (its `weight_map`:
//! tensor name → shard file). [`checkpoint_files`] is the one reader of that layout. Its
//! digest ([`combined_sha256`]) is the sha256 of `model.safetensors` itself, or for shards the
//! sha256 of their sha256 digests (lowercase hex, one per line, in file-name order).

use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::nn::{Embedding, LayerNorm, LayerNormConfig, Linear, RmsNorm, RmsNormConfig};
use burn::tensor::{Device, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};

use crate::error::TeacherError;

/// The single-file weights of a checkpoint.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The index of a checkpoint split into shards.
pub const SHARD_INDEX_FILE: &str = "model.safetensors.index.json";

/// The weight files of the checkpoint in `dir`: `model.safetensors`, else the shards its
/// index lists (sorted, each once). Neither present is [`TeacherError::MissingFile`]
/// (`model.safetensors`); a listed shard that is missing names the index.
pub fn checkpoint_files(dir: &Path) -> Result<Vec<PathBuf>, TeacherError> {
    let single = dir.join(WEIGHTS_FILE);
    let index = dir.join(SHARD_INDEX_FILE);
    if single.is_file() || !index.is_file() {
        return Ok(vec![single]);
    }
    let bad = |reason: String| TeacherError::BadSafetensors {
        path: index.clone(),
        reason,
    };
    let text = std::fs::read_to_string(&index).map_err(|source| TeacherError::Io {
        path: index.clone(),
        source,
    })?;
    let shards = shard_names(&text).map_err(bad)?;
    shards
        .into_iter()
        .map(|name| {
            let path = dir.join(&name);
            if path.is_file() {
                Ok(path)
            } else {
                Err(bad(format!("its shard {name} is missing")))
            }
        })
        .collect()
}

/// The shard files an index's `weight_map` names, sorted, each once.
pub fn shard_names(index_text: &str) -> Result<Vec<String>, String> {
    let value: serde_json::Value =
        serde_json::from_str(index_text).map_err(|e| format!("not JSON: {e}"))?;
    let map = value
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or("no `weight_map` object")?;
    let mut names: Vec<String> = map
        .values()
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .ok_or("a shard name is not a string")
        })
        .collect::<Result<_, _>>()?;
    names.sort();
    names.dedup();
    if names.is_empty() || names.iter().any(|n| n.contains('/') || n.contains("..")) {
        return Err("no shards, or a shard outside the directory".into());
    }
    Ok(names)
}

/// The checkpoint digest of its files' sha256 digests (see the module docs).
pub fn combined_sha256(digests: &[String]) -> String {
    match digests {
        [one] => one.clone(),
        many => timekd_data::sha256_hex(many.join("\n").as_bytes()),
    }
}

/// A checkpoint's weights read into memory: one file or its shards.
pub(crate) struct Checkpoint {
    files: Vec<WeightFile>,
    /// What errors name: `model.safetensors` or the index.
    path: PathBuf,
}

impl Checkpoint {
    /// Reads every weight file of the checkpoint in `dir` ([`checkpoint_files`]).
    pub(crate) fn read(dir: &Path) -> Result<Self, TeacherError> {
        let paths = checkpoint_files(dir)?;
        let path = match paths.as_slice() {
            [one] => one.clone(),
            _ => dir.join(SHARD_INDEX_FILE),
        };
        let files = paths
            .iter()
            .map(|p| WeightFile::read(p, WEIGHTS_FILE))
            .collect::<Result<_, _>>()?;
        Ok(Checkpoint { files, path })
    }

    /// The checkpoint's digest ([`combined_sha256`]).
    pub(crate) fn sha256(&self) -> String {
        let digests: Vec<String> = self.files.iter().map(WeightFile::sha256).collect();
        combined_sha256(&digests)
    }

    /// The tensors of every file, looked up by name.
    pub(crate) fn tensors(&self) -> Result<NamedTensors<'_>, TeacherError> {
        let files = self
            .files
            .iter()
            .map(WeightFile::parse)
            .collect::<Result<_, _>>()?;
        Ok(NamedTensors {
            files,
            path: &self.path,
            prefix: String::new(),
        })
    }
}

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
    fn parse(&self) -> Result<SafeTensors<'_>, TeacherError> {
        SafeTensors::deserialize(&self.bytes).map_err(|e| TeacherError::BadSafetensors {
            path: self.path.clone(),
            reason: e.to_string(),
        })
    }

    /// The file's tensors, looked up by name.
    pub(crate) fn tensors(&self) -> Result<NamedTensors<'_>, TeacherError> {
        Ok(NamedTensors {
            files: vec![self.parse()?],
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

/// The tensors of a checkpoint (one file or its shards), looked up by name (after an
/// optional prefix).
pub struct NamedTensors<'a> {
    files: Vec<SafeTensors<'a>>,
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
        self.view(name).is_ok()
    }

    /// Tensor `name` (after the prefix) in whichever file holds it.
    fn view(&self, name: &str) -> Result<safetensors::tensor::TensorView<'_>, TeacherError> {
        let full = format!("{}{name}", self.prefix);
        self.files
            .iter()
            .find_map(|file| file.tensor(&full).ok())
            .ok_or_else(|| TeacherError::MissingTensor {
                name: full,
                path: self.path.to_path_buf(),
            })
    }

    /// Shape of tensor `name`.
    pub fn shape(&self, name: &str) -> Result<Vec<usize>, TeacherError> {
        Ok(self.view(name)?.shape().to_vec())
    }

    /// The values of tensor `name` as f32, row-major, after checking it has `expected` shape.
    pub fn values(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>, TeacherError> {
        let full = format!("{}{name}", self.prefix);
        let view = self.view(name)?;
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

    /// An embedding table `name` `[rows, d]`.
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
    /// `[d_out]`.
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

    /// A LayerNorm `{name}.weight` and `{name}.bias` `[d]` (or the older `gamma` and `beta`).
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

    /// An RMSNorm `{name}.weight` `[d]`.
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
