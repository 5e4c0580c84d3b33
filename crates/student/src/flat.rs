//! All parameters of a model (or their gradients, or optimiser moments) as ONE flat tensor:
//! `[runs, len]`, row `r` holding run `r`'s parameters for a pack of runs (see the `pack`
//! module), so clipping can take each run's own norm with one reduction.
//!
//! Clipping and AdamW are element-wise, so over one flat tensor they run as a handful of
//! kernels instead of a dozen per parameter tensor (the student has 76): on a GPU the
//! optimiser step stops being a storm of tiny launches. Each parameter's segment starts at a
//! multiple of [`ALIGN`] elements. Burn's CUDA backend slices without copying when both ends
//! are aligned, so a parameter whose size is a multiple of [`ALIGN`] comes back out as a view
//! of the flat buffer; the others (biases, small matrices) cost one copy each. The padding
//! between segments is zero and stays zero under AdamW (zero gradient, moments and value).

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Device, Gradients, Tensor, TensorData};

use crate::model::Dual;

/// Segment alignment in elements: 128 f32 = 512 bytes, CUDA's allocation alignment, which
/// Burn's CUDA backend needs at both ends of a slice to make it a view.
pub(crate) const ALIGN: usize = 128;

/// One parameter's place in a run's row of the flat tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment {
    /// Burn module path (`encoder.attn_layers.0.conv1.weight`).
    pub name: String,
    /// The parameter's shape in a model of one run.
    pub dims: Vec<usize>,
    /// First element in the flat vector.
    pub offset: usize,
}

impl Segment {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.dims.iter().product()
    }

    fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.numel()
    }
}

/// Where every parameter of one run sits in its row of the flat tensor, in module visiting
/// order (the same for every run of a pack).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct FlatLayout {
    segments: Vec<Segment>,
    len: usize,
}

/// What [`flatten`] reads from each parameter.
#[derive(Clone, Copy)]
pub(crate) enum Source<'a> {
    /// The parameter values.
    Values,
    /// The parameters' gradients from a backward pass (zero where a parameter has none).
    Gradients(&'a Gradients),
}

struct Collector<'a> {
    path: Vec<String>,
    source: Source<'a>,
    runs: usize,
    layout: FlatLayout,
    parts: Vec<Option<Tensor<2>>>,
    device: Option<Device>,
}

impl ModuleVisitor for Collector<'_> {
    crate::module_path::track_module_path!();

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        let mut dims = value.dims().to_vec();
        let runs = self.runs;
        dims[0] /= runs;
        let n = dims.iter().product::<usize>();
        self.device
            .get_or_insert_with(|| value.device().without_autodiff());
        let part = match self.source {
            Source::Values => Some(value.inner().reshape([runs, n])),
            Source::Gradients(grads) => value.grad(grads).map(|g| g.reshape([runs, n])),
        };
        let offset = self.layout.len;
        self.layout.segments.push(Segment {
            name: self.path.join("."),
            dims,
            offset,
        });
        self.layout.len = (offset + n).div_ceil(ALIGN) * ALIGN;
        self.parts.push(part);
    }
}

/// The model's parameter values or gradients as one flat tensor `[runs, len]` (on the
/// model's device, without autodiff), with its layout; `None` for a model without
/// parameters.
pub(crate) fn flatten(model: &Dual, source: Source) -> Option<(FlatLayout, Tensor<2>)> {
    let runs = model.runs();
    let mut collector = Collector {
        path: Vec::new(),
        source,
        runs,
        layout: FlatLayout::default(),
        parts: Vec::new(),
        device: None,
    };
    model.visit(&mut collector);
    let device = collector.device?;
    let layout = collector.layout;
    let mut flat = Tensor::<2>::zeros([runs, layout.len], &device);
    for (segment, part) in layout.segments.iter().zip(collector.parts) {
        if let Some(part) = part {
            flat = flat.slice_assign([0..runs, segment.range()], part);
        }
    }
    Some((layout, flat))
}

impl FlatLayout {
    /// Elements of one run's row (padding included).
    #[cfg(feature = "cuda")]
    pub fn len(&self) -> usize {
        self.len
    }

    /// The segment of the parameter at module path `name`.
    #[cfg(feature = "cuda")]
    pub fn segment(&self, name: &str) -> Option<&Segment> {
        self.segments.iter().find(|s| s.name == name)
    }

    /// Each segment with its part of `flat`, a host copy of one run's row.
    pub fn split<'a>(&'a self, flat: &'a [f32]) -> impl Iterator<Item = (&'a Segment, &'a [f32])> {
        self.segments.iter().map(|s| (s, &flat[s.range()]))
    }

    /// One run's row `[1, len]` on `device` from named host parts (`part(name)`; zero where
    /// `None`). Fails, naming the parameter, when a part's length is not the parameter's.
    pub fn assemble<'a>(
        &self,
        part: impl Fn(&str) -> Option<&'a [f32]>,
        device: &Device,
    ) -> Result<Tensor<2>, String> {
        let flat = self.assemble_host(part)?;
        Ok(Tensor::from_data(
            TensorData::new(flat, [1, self.len]),
            device,
        ))
    }

    /// [`assemble`](Self::assemble) on the host: one run's row of `len` values.
    pub fn assemble_host<'a>(
        &self,
        part: impl Fn(&str) -> Option<&'a [f32]>,
    ) -> Result<Vec<f32>, String> {
        let mut flat = vec![0.0f32; self.len];
        for segment in &self.segments {
            if let Some(values) = part(&segment.name) {
                if values.len() != segment.numel() {
                    return Err(format!(
                        "{} has {} values, the parameter {:?} needs {}",
                        segment.name,
                        values.len(),
                        segment.dims,
                        segment.numel()
                    ));
                }
                flat[segment.range()].copy_from_slice(values);
            }
        }
        Ok(flat)
    }

    /// `model` with every parameter replaced by its segment of `flat` `[runs, len]` (a view
    /// where the backend allows, see the module docs), keeping each parameter's autodiff and
    /// require-grad flags.
    pub fn unflatten(&self, model: Dual, flat: &Tensor<2>) -> Dual {
        let by_name = self
            .segments
            .iter()
            .map(|s| (s.name.as_str(), s))
            .collect::<BTreeMap<_, _>>();
        model.map(&mut Assign {
            path: Vec::new(),
            by_name,
            flat,
        })
    }
}

struct Assign<'a> {
    path: Vec<String>,
    by_name: BTreeMap<&'a str, &'a Segment>,
    flat: &'a Tensor<2>,
}

impl ModuleMapper for Assign<'_> {
    crate::module_path::track_module_path!();

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(segment) = self.by_name.get(self.path.join(".").as_str()) else {
            return param;
        };
        let flat = self.flat;
        param.map(|value| {
            let autodiff = value.is_autodiff();
            let require_grad = value.is_require_grad();
            let [runs, len] = flat.dims();
            // One run's segment is a contiguous range (a view); a pack's is a column block.
            let p = if runs == 1 {
                flat.clone()
                    .reshape([len])
                    .slice([segment.range()])
                    .reshape(value.dims())
            } else {
                flat.clone()
                    .slice([0..runs, segment.range()])
                    .reshape(value.dims())
            };
            let p = if autodiff { p.autodiff() } else { p };
            p.set_require_grad(require_grad)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DualConfig;

    #[test]
    fn flatten_and_unflatten_round_trip_with_aligned_zero_padding() {
        let device = Device::flex();
        let model = Dual::init(&DualConfig::default(), 1, &device).expect("model");
        let (layout, flat) = flatten(&model, Source::Values).expect("parameters");
        assert_eq!(flat.dims()[0], 1);
        let host = flat.clone().try_into_vec_as::<f32>().expect("read");
        assert!(layout.split(&host).count() > 10);
        for (s, _) in layout.split(&host) {
            assert_eq!(s.offset % ALIGN, 0, "{} is not aligned", s.name);
        }
        let padding_sum: f32 = {
            let mut inside = vec![false; host.len()];
            for (s, _) in layout.split(&host) {
                inside[s.range()].iter_mut().for_each(|b| *b = true);
            }
            host.iter()
                .zip(inside)
                .filter(|(_, inside)| !inside)
                .map(|(v, _)| v.abs())
                .sum()
        };
        assert_eq!(padding_sum, 0.0);
        let doubled = layout.unflatten(model.clone(), &(flat * 2.0));
        let (_, again) = flatten(&doubled, Source::Values).expect("parameters");
        let again = again.try_into_vec_as::<f32>().expect("read");
        for (a, b) in again.iter().zip(&host) {
            assert_eq!(*a, 2.0 * b);
        }
    }
}
