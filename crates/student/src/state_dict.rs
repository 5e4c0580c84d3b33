//! Weights in the release's PyTorch state-dict layout, as safetensors.
//!
//! Burn keeps a linear weight as `[in, out]` and calls LayerNorm's parameters gamma/beta;
//! PyTorch stores `[out, in]` (`[out, in, 1]` for the 1x1 convolutions `conv1`/`conv2`) and
//! calls them weight/bias. This module converts between the two, so a checkpoint written
//! here loads into the release's `Dual` and the release's `state_dict()` loads here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};

use crate::error::{Result, StudentError};

/// One f32 tensor in row-major order with its name and shape.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    /// Tensor name (a PyTorch state-dict name for model weights).
    pub name: String,
    /// Shape, outermost first.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
}

/// How a Burn parameter is laid out in the PyTorch state dict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Same shape and order (biases, LayerNorm parameters).
    Same,
    /// `nn.Linear` weight: Burn `[in, out]`, PyTorch `[out, in]`.
    Linear,
    /// 1x1 `nn.Conv1d` weight: Burn `[in, out]`, PyTorch `[out, in, 1]`.
    Conv1x1,
}

/// PyTorch name and layout of the parameter at Burn module path `path`.
fn torch_name(path: &str, rank: usize) -> (String, Layout) {
    let name = if let Some(stem) = path.strip_suffix(".gamma") {
        format!("{stem}.weight")
    } else if let Some(stem) = path.strip_suffix(".beta") {
        format!("{stem}.bias")
    } else {
        path.to_string()
    };
    let is_conv = path
        .split('.')
        .any(|part| part == "conv1" || part == "conv2");
    let layout = match (rank, is_conv) {
        (2, true) => Layout::Conv1x1,
        (2, false) => Layout::Linear,
        _ => Layout::Same,
    };
    (name, layout)
}

/// Shape in PyTorch's layout of a Burn tensor of shape `dims`.
fn torch_shape(dims: &[usize], layout: Layout) -> Vec<usize> {
    match layout {
        Layout::Same => dims.to_vec(),
        Layout::Linear => vec![dims[1], dims[0]],
        Layout::Conv1x1 => vec![dims[1], dims[0], 1],
    }
}

/// Transposes a row-major `[rows, cols]` matrix.
fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

/// Every Burn module's parameters have a leading stack axis (see the `paired` module): the
/// PyTorch modules its slices stand for, in order.
const STACKED: [(&str, &[&str]); 4] = [
    ("encoder.", &["ts_encoder.", "prompt_encoder."]),
    ("projection.", &["ts_proj.", "prompt_proj."]),
    ("length_to_feature.", &["length_to_feature."]),
    ("token_to_feature.", &["token_to_feature."]),
];

/// For a stacked parameter of one model (`dims[0]` slices), the path of each slice as if it
/// were its own module (`encoder.norm.gamma` → `ts_encoder.norm.gamma`, ...).
fn slice_paths(path: &str, dims: &[usize]) -> Option<Vec<String>> {
    STACKED.iter().find_map(|(prefix, torch)| {
        let rest = path.strip_prefix(prefix)?;
        (dims.first() == Some(&torch.len()))
            .then(|| torch.iter().map(|t| format!("{t}{rest}")).collect())
    })
}

/// One unstacked Burn-layout tensor → its PyTorch name, shape and order.
fn single_to_torch(path: &str, dims: &[usize], data: &[f32]) -> NamedTensor {
    let (name, layout) = torch_name(path, dims.len());
    let data = match layout {
        Layout::Same => data.to_vec(),
        Layout::Linear | Layout::Conv1x1 => transpose(data, dims[0], dims[1]),
    };
    NamedTensor {
        name,
        shape: torch_shape(dims, layout),
        data,
    }
}

/// Converts a Burn-layout tensor at module path `path` to PyTorch names, shapes and order:
/// one tensor per slice of a stacked parameter (time-series branch first).
pub fn to_torch(path: &str, dims: &[usize], data: &[f32]) -> Vec<NamedTensor> {
    match slice_paths(path, dims) {
        Some(paths) => {
            let len = data.len() / paths.len();
            paths
                .iter()
                .zip(data.chunks(len.max(1)))
                .map(|(p, part)| single_to_torch(p, &dims[1..], part))
                .collect()
        }
        None => vec![single_to_torch(path, dims, data)],
    }
}

/// Reads a float tensor back to the host as f32.
pub(crate) fn tensor_to_vec<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>> {
    tensor
        .try_into_vec_as::<f32>()
        .map_err(|e| StudentError::Tensor(format!("{e:?}")))
}

/// Collects every float parameter with its Burn module path.
#[derive(Default)]
struct Collector {
    path: Vec<String>,
    tensors: Vec<NamedTensor>,
    error: Option<StudentError>,
}

impl ModuleVisitor for Collector {
    crate::module_path::track_module_path!();

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        let dims = value.dims().to_vec();
        match tensor_to_vec(value) {
            Ok(data) => self
                .tensors
                .extend(to_torch(&self.path.join("."), &dims, &data)),
            Err(e) => self.error = Some(e),
        }
    }
}

/// Every parameter of `module` in PyTorch layout, in module order.
pub fn state_dict<M: Module>(module: &M) -> Result<Vec<NamedTensor>> {
    let mut collector = Collector::default();
    module.visit(&mut collector);
    match collector.error {
        Some(e) => Err(e),
        None => Ok(collector.tensors),
    }
}

/// Writes f32 tensors to a safetensors file, atomically (an interrupted save never leaves a
/// truncated checkpoint).
pub fn write_safetensors(path: &Path, tensors: &[NamedTensor]) -> Result<()> {
    let refs: Vec<_> = tensors
        .iter()
        .map(|t| (t.name.as_str(), t.shape.as_slice(), t.data.as_slice()))
        .collect();
    let bytes =
        timekd_data::files::safetensors_bytes(&refs).map_err(|e| StudentError::io(path, e))?;
    crate::output::write_file(path, &bytes)
}

/// Reads every tensor of a safetensors file as f32 (F32, F64 and BF16 are accepted).
pub fn read_safetensors(path: &Path) -> Result<BTreeMap<String, NamedTensor>> {
    let bytes = std::fs::read(path).map_err(|e| StudentError::io(path, e))?;
    let invalid = |message: String| StudentError::Safetensors {
        path: path.to_path_buf(),
        message,
    };
    let file = SafeTensors::deserialize(&bytes).map_err(|e| invalid(e.to_string()))?;
    let mut out = BTreeMap::new();
    for (name, view) in file.tensors() {
        let raw = view.data();
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F64 => raw
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().expect("8-byte chunk")) as f32)
                .collect(),
            Dtype::BF16 => raw
                .chunks_exact(2)
                .map(|b| f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16))
                .collect(),
            other => {
                return Err(invalid(format!(
                    "tensor {name} has dtype {other:?}; only F32, F64 and BF16 are supported"
                )));
            }
        };
        let shape = view.shape().to_vec();
        out.insert(name.clone(), NamedTensor { name, shape, data });
    }
    Ok(out)
}

/// Replaces every parameter with the tensor of the same PyTorch name.
struct Loader<'a> {
    path: Vec<String>,
    tensors: &'a BTreeMap<String, NamedTensor>,
    used: BTreeSet<String>,
    problems: Vec<String>,
}

impl ModuleMapper for Loader<'_> {
    crate::module_path::track_module_path!();

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let dims = param.lazy_shape().to_vec();
        let path = self.path.join(".");
        let data = match slice_paths(&path, &dims) {
            Some(slices) => {
                let parts: Vec<Option<Vec<f32>>> =
                    slices.iter().map(|p| self.take(p, &dims[1..])).collect();
                parts
                    .into_iter()
                    .collect::<Option<Vec<_>>>()
                    .map(|parts| parts.concat())
            }
            None => self.take(&path, &dims),
        };
        let Some(data) = data else {
            return param;
        };
        param.map(|old| {
            let require_grad = old.is_require_grad();
            let value = Tensor::<D>::from_data(TensorData::new(data, dims), &old.device());
            if require_grad {
                value.require_grad()
            } else {
                value
            }
        })
    }
}

impl Loader<'_> {
    /// The values for the unstacked parameter at `path` of shape `dims`, in Burn's layout;
    /// `None` (and a recorded problem) when missing or misshapen.
    fn take(&mut self, path: &str, dims: &[usize]) -> Option<Vec<f32>> {
        let (name, layout) = torch_name(path, dims.len());
        let expected = torch_shape(dims, layout);
        let Some(found) = self.tensors.get(&name) else {
            self.problems.push(format!("missing {name} {expected:?}"));
            return None;
        };
        self.used.insert(name.clone());
        if found.shape != expected {
            self.problems.push(format!(
                "{name}: file has shape {:?}, the model expects {expected:?}",
                found.shape
            ));
            return None;
        }
        Some(match layout {
            Layout::Same => found.data.clone(),
            // PyTorch [out, in(, 1)] → Burn [in, out].
            Layout::Linear | Layout::Conv1x1 => transpose(&found.data, dims[1], dims[0]),
        })
    }
}

/// Loads weights named as in the release's PyTorch state dict into `module`.
///
/// Every parameter must be present with its PyTorch shape and no extra tensor may be left
/// over; the error lists each mismatch.
pub fn load_state_dict<M: Module>(
    module: M,
    tensors: &BTreeMap<String, NamedTensor>,
    source: &Path,
) -> Result<M> {
    let mut loader = Loader {
        path: Vec::new(),
        tensors,
        used: BTreeSet::new(),
        problems: Vec::new(),
    };
    let module = module.map(&mut loader);
    let mut problems = loader.problems;
    problems.extend(
        tensors
            .keys()
            .filter(|name| !loader.used.contains(*name))
            .map(|name| format!("unexpected {name}")),
    );
    if problems.is_empty() {
        Ok(module)
    } else {
        Err(StudentError::WeightsMismatch {
            path: source.to_path_buf(),
            message: problems.join("; "),
        })
    }
}

/// Loads a safetensors file of PyTorch-named weights (e.g. the release's `state_dict()`).
pub fn load_safetensors<M: Module>(module: M, path: &Path) -> Result<M> {
    let tensors = read_safetensors(path)?;
    load_state_dict(module, &tensors, path)
}

/// Saves `module`'s parameters with PyTorch names and layouts.
pub fn save_safetensors<M: Module>(module: &M, path: &Path) -> Result<()> {
    write_safetensors(path, &state_dict(module)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_pytorch() {
        assert_eq!(
            torch_name("ts_encoder.norm.gamma", 1),
            ("ts_encoder.norm.weight".into(), Layout::Same)
        );
        assert_eq!(
            torch_name("ts_encoder.attn_layers.0.conv1.weight", 2),
            (
                "ts_encoder.attn_layers.0.conv1.weight".into(),
                Layout::Conv1x1
            )
        );
        assert_eq!(torch_name("ts_proj.weight", 2).1, Layout::Linear);
    }

    #[test]
    fn linear_weights_are_transposed() {
        // Burn [in=2, out=3] → PyTorch [3, 2].
        let [t] = <[NamedTensor; 1]>::try_from(to_torch(
            "ts_proj.weight",
            &[2, 3],
            &[1., 2., 3., 4., 5., 6.],
        ))
        .expect("one tensor");
        assert_eq!(t.shape, vec![3, 2]);
        assert_eq!(t.data, vec![1., 4., 2., 5., 3., 6.]);
        let c = &to_torch("x.conv2.weight", &[2, 3], &[1., 2., 3., 4., 5., 6.])[0];
        assert_eq!(c.shape, vec![3, 2, 1]);
    }

    #[test]
    fn paired_parameters_split_into_the_two_branches() {
        // Both branches' conv1 weights, Burn [2 branches, in=1, out=2].
        let parts = to_torch(
            "encoder.attn_layers.1.conv1.weight",
            &[2, 1, 2],
            &[1., 2., 3., 4.],
        );
        let names: Vec<&str> = parts.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "ts_encoder.attn_layers.1.conv1.weight",
                "prompt_encoder.attn_layers.1.conv1.weight"
            ]
        );
        assert_eq!(parts[0].shape, vec![2, 1, 1]);
        assert_eq!(parts[1].data, vec![3., 4.]);
        let norm = to_torch("projection.bias", &[2, 3], &[0.; 6]);
        assert_eq!(norm[1].name, "prompt_proj.bias");
    }
}
