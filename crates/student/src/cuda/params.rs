//! Where each of the student's parameters sits in the flat vector (the `flat` module's
//! layout), as the engine's kernels address them.

use crate::config::DualConfig;
use crate::flat::FlatLayout;

use super::GpuError;

/// A Linear layer (both branches stacked, or one): offsets of its weight `[k, in, out]` and
/// bias `[k, out]`.
#[derive(Debug, Clone, Copy)]
pub(super) struct LinearAt {
    pub weight: usize,
    pub bias: usize,
}

/// A LayerNorm of both branches: offsets of gain and shift, each `[2, C]`.
#[derive(Debug, Clone, Copy)]
pub(super) struct NormAt {
    pub gamma: usize,
    pub beta: usize,
}

/// One encoder layer's parameters.
#[derive(Debug, Clone, Copy)]
pub(super) struct LayerAt {
    pub query: LinearAt,
    pub key: LinearAt,
    pub value: LinearAt,
    pub out: LinearAt,
    pub conv1: LinearAt,
    pub conv2: LinearAt,
    pub norm1: NormAt,
    pub norm2: NormAt,
}

/// Every parameter's offset in a run's row of the flat vector.
#[derive(Debug, Clone)]
pub(super) struct ParamOffsets {
    pub length_to_feature: LinearAt,
    pub token_to_feature: LinearAt,
    pub layers: Vec<LayerAt>,
    pub final_norm: NormAt,
    pub projection: LinearAt,
}

impl ParamOffsets {
    /// Reads the offsets from `layout`, checking each parameter's shape against `config`.
    pub fn new(layout: &FlatLayout, config: &DualConfig) -> Result<Self, GpuError> {
        let (c, f) = (config.channel, config.d_ff);
        let find = |name: &str, dims: &[usize]| -> Result<usize, GpuError> {
            let segment = layout.segment(name).ok_or_else(|| {
                GpuError::Unsupported(format!("the student has no parameter {name}"))
            })?;
            if segment.dims != dims {
                return Err(GpuError::Unsupported(format!(
                    "{name} is {:?}, the engine expects {dims:?}",
                    segment.dims
                )));
            }
            Ok(segment.offset)
        };
        let linear =
            |path: &str, k: usize, din: usize, dout: usize| -> Result<LinearAt, GpuError> {
                Ok(LinearAt {
                    weight: find(&format!("{path}.weight"), &[k, din, dout])?,
                    bias: find(&format!("{path}.bias"), &[k, dout])?,
                })
            };
        let norm = |path: &str| -> Result<NormAt, GpuError> {
            Ok(NormAt {
                gamma: find(&format!("{path}.gamma"), &[2, c])?,
                beta: find(&format!("{path}.beta"), &[2, c])?,
            })
        };
        let layers = (0..config.layers)
            .map(|i| {
                let at = format!("encoder.attn_layers.{i}");
                let attention = |name: &str| linear(&format!("{at}.attention.{name}"), 2, c, c);
                Ok(LayerAt {
                    query: attention("query_projection")?,
                    key: attention("key_projection")?,
                    value: attention("value_projection")?,
                    out: attention("out_projection")?,
                    conv1: linear(&format!("{at}.conv1"), 2, c, f)?,
                    conv2: linear(&format!("{at}.conv2"), 2, f, c)?,
                    norm1: norm(&format!("{at}.norm1"))?,
                    norm2: norm(&format!("{at}.norm2"))?,
                })
            })
            .collect::<Result<Vec<_>, GpuError>>()?;
        Ok(ParamOffsets {
            length_to_feature: linear("length_to_feature", 1, config.input_len, c)?,
            token_to_feature: linear("token_to_feature", 1, config.d_llm, c)?,
            layers,
            final_norm: norm("encoder.norm")?,
            projection: linear("projection", 2, c, config.output_len)?,
        })
    }
}
