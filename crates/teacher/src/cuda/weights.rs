//! The engine's weights on the device, in its own layout, from a checkpoint of a family it
//! runs: every product's matrix `[in, out]` row-major in the compute type (LLaMA's `[out,
//! in]` matrices transposed, its q, k and v side by side, gate and up side by side), biases
//! in the compute type (zeros where the layer has none: the epilogue adds them for free),
//! embeddings, norms and rotary tables in f32.

use std::sync::Arc;

use cudarc::driver::CudaStream;
use half::f16;

use super::arch::EngineArch;
use super::buffer::DeviceBuffer;
use super::limits::longest_prompt;
use crate::error::TeacherError;
use crate::families::ModelConfig;
use crate::gpt2::names as gpt2;
use crate::llama::LlamaConfig;
use crate::llama::names as llama;
use crate::weights::NamedTensors;

/// A product's matrix `[in, out]` and bias `[out]`, in the compute type.
pub(super) struct LinearWeights {
    pub(super) weight: DeviceBuffer,
    pub(super) bias: DeviceBuffer,
}

/// A norm's scale, and its shift (LayerNorm only), f32.
pub(super) struct NormWeights {
    pub(super) weight: DeviceBuffer,
    pub(super) bias: Option<DeviceBuffer>,
}

impl NormWeights {
    /// The shift's address, 0 for none.
    pub(super) fn bias_ptr(&self) -> u64 {
        self.bias.as_ref().map_or(0, DeviceBuffer::ptr)
    }
}

/// One block's weights.
pub(super) struct BlockWeights {
    /// The norm before attention.
    pub(super) attn_norm: NormWeights,
    /// `x → q | k | v`.
    pub(super) qkv: LinearWeights,
    /// The attention's output projection.
    pub(super) attn_out: LinearWeights,
    /// The norm before the MLP.
    pub(super) mlp_norm: NormWeights,
    /// The MLP's first product (`fc`, or `gate | up`).
    pub(super) mlp_in: LinearWeights,
    /// The MLP's down projection.
    pub(super) mlp_out: LinearWeights,
}

/// Cos and sin of every (position, dimension pair) a prompt may take: `[positions, half]`
/// each, f32.
pub(super) struct RotaryTables {
    pub(super) cos: DeviceBuffer,
    pub(super) sin: DeviceBuffer,
}

/// Everything the engine reads of a checkpoint.
pub(super) struct DeviceWeights {
    pub(super) token_embedding: DeviceBuffer,
    /// Learned positions (GPT-2).
    pub(super) position_embedding: Option<DeviceBuffer>,
    /// Rotary positions (LLaMA).
    pub(super) rotary: Option<RotaryTables>,
    pub(super) blocks: Vec<BlockWeights>,
    pub(super) final_norm: NormWeights,
}

impl DeviceWeights {
    /// The first `layers` blocks of `tensors` (a checkpoint of `config`'s family) on the
    /// device, matrices in f16 when `half`.
    pub(super) fn upload(
        stream: &Arc<CudaStream>,
        config: &ModelConfig,
        arch: &EngineArch,
        tensors: &mut NamedTensors<'_>,
        layers: usize,
        half: bool,
    ) -> Result<Self, TeacherError> {
        match config {
            ModelConfig::Llama(_) => llama::use_checkpoint_prefix(tensors),
            _ => gpt2::use_checkpoint_prefix(tensors),
        }
        let up = Uploader {
            stream,
            tensors,
            half,
        };
        match config {
            ModelConfig::Gpt2(_) => up.gpt2(arch, layers),
            ModelConfig::Llama(c) => up.llama(arch, c, layers),
            ModelConfig::Bert(_) => Err(TeacherError::Cuda(
                "the CUDA engine has no BERT weights layout".into(),
            )),
        }
    }
}

/// Reads tensors from the checkpoint and puts them on the device.
struct Uploader<'a> {
    stream: &'a Arc<CudaStream>,
    tensors: &'a NamedTensors<'a>,
    /// Matrix weights in f16 (else f32).
    half: bool,
}

impl Uploader<'_> {
    fn gpt2(&self, arch: &EngineArch, layers: usize) -> Result<DeviceWeights, TeacherError> {
        let shape = &arch.shape;
        let (d, inner) = (shape.d_model, shape.mlp_width);
        let blocks = (0..layers)
            .map(|i| {
                let n = gpt2::BlockNames(i);
                Ok(BlockWeights {
                    attn_norm: self.layer_norm(&n.ln_1(), d)?,
                    qkv: self.conv1d(&n.attn(), d, 3 * d)?,
                    attn_out: self.conv1d(&n.attn_proj(), d, d)?,
                    mlp_norm: self.layer_norm(&n.ln_2(), d)?,
                    mlp_in: self.conv1d(&n.fc(), d, inner)?,
                    mlp_out: self.conv1d(&n.mlp_proj(), inner, d)?,
                })
            })
            .collect::<Result<Vec<_>, TeacherError>>()?;
        Ok(DeviceWeights {
            token_embedding: self.f32(gpt2::TOKEN_EMBEDDING, &[shape.vocab, d])?,
            position_embedding: Some(
                self.f32(gpt2::POSITION_EMBEDDING, &[shape.position_rows, d])?,
            ),
            rotary: None,
            blocks,
            final_norm: self.layer_norm(gpt2::FINAL_NORM, d)?,
        })
    }

    fn llama(
        &self,
        arch: &EngineArch,
        config: &LlamaConfig,
        layers: usize,
    ) -> Result<DeviceWeights, TeacherError> {
        let (attn_bias, mlp_bias) = (config.attention_bias, config.mlp_bias);
        let shape = &arch.shape;
        let (d, inner) = (shape.d_model, shape.mlp_width);
        let (q, kv) = (arch.q_width(), arch.kv_width());
        let blocks = (0..layers)
            .map(|i| {
                let n = llama::BlockNames(i);
                let qkv = [(n.q_proj(), q), (n.k_proj(), kv), (n.v_proj(), kv)];
                let gate_up = [(n.gate_proj(), inner), (n.up_proj(), inner)];
                Ok(BlockWeights {
                    attn_norm: self.rms_norm(&n.input_norm(), d)?,
                    qkv: self.stacked_linear(&qkv, d, attn_bias)?,
                    attn_out: self.stacked_linear(&[(n.o_proj(), d)], q, attn_bias)?,
                    mlp_norm: self.rms_norm(&n.post_attention_norm(), d)?,
                    mlp_in: self.stacked_linear(&gate_up, d, mlp_bias)?,
                    mlp_out: self.stacked_linear(&[(n.down_proj(), d)], inner, mlp_bias)?,
                })
            })
            .collect::<Result<Vec<_>, TeacherError>>()?;
        let inverse_frequencies = config.inverse_frequencies();
        Ok(DeviceWeights {
            token_embedding: self.f32(llama::TOKEN_EMBEDDING, &[shape.vocab, d])?,
            position_embedding: None,
            rotary: Some(self.rotary_tables(&inverse_frequencies, longest_prompt(shape))?),
            blocks,
            final_norm: self.rms_norm(llama::FINAL_NORM, d)?,
        })
    }

    fn f32(&self, name: &str, shape: &[usize]) -> Result<DeviceBuffer, TeacherError> {
        let values = self.tensors.values(name, shape)?;
        Ok(DeviceBuffer::from_slice(self.stream, &values)?)
    }

    /// Values in the compute type.
    fn compute(&self, values: Vec<f32>) -> Result<DeviceBuffer, TeacherError> {
        if !self.half {
            return Ok(DeviceBuffer::from_slice(self.stream, &values)?);
        }
        let values: Vec<f16> = values.into_iter().map(f16::from_f32).collect();
        Ok(DeviceBuffer::from_slice(self.stream, &values)?)
    }

    /// A Conv1D (GPT-2): weight `[d_in, d_out]`, the engine's layout already, and bias.
    fn conv1d(&self, name: &str, d_in: usize, d_out: usize) -> Result<LinearWeights, TeacherError> {
        let weight = self
            .tensors
            .values(&format!("{name}.weight"), &[d_in, d_out])?;
        let bias = self.tensors.values(&format!("{name}.bias"), &[d_out])?;
        Ok(LinearWeights {
            weight: self.compute(weight)?,
            bias: self.compute(bias)?,
        })
    }

    /// `nn.Linear` layers `[out, d_in]` over the same input as one product: their outputs
    /// side by side, in `parts`' order; zero biases when the layers have none.
    fn stacked_linear(
        &self,
        parts: &[(String, usize)],
        d_in: usize,
        bias: bool,
    ) -> Result<LinearWeights, TeacherError> {
        let d_out: usize = parts.iter().map(|(_, out)| out).sum();
        // Rows of `[d_out, d_in]` (the parts stacked), transposed to `[d_in, d_out]`.
        let mut stacked = Vec::with_capacity(d_out * d_in);
        let mut biases = Vec::with_capacity(d_out);
        for (name, out) in parts {
            stacked.extend(
                self.tensors
                    .values(&format!("{name}.weight"), &[*out, d_in])?,
            );
            if bias {
                biases.extend(self.tensors.values(&format!("{name}.bias"), &[*out])?);
            }
        }
        biases.resize(d_out, 0.0);
        Ok(LinearWeights {
            weight: self.compute(transpose(&stacked, d_out, d_in))?,
            bias: self.compute(biases)?,
        })
    }

    fn layer_norm(&self, name: &str, d: usize) -> Result<NormWeights, TeacherError> {
        Ok(NormWeights {
            weight: self.f32(&format!("{name}.weight"), &[d])?,
            bias: Some(self.f32(&format!("{name}.bias"), &[d])?),
        })
    }

    fn rms_norm(&self, name: &str, d: usize) -> Result<NormWeights, TeacherError> {
        Ok(NormWeights {
            weight: self.f32(&format!("{name}.weight"), &[d])?,
            bias: None,
        })
    }

    /// Cos and sin of `position · inverse_frequencies[i]` for positions below `positions`:
    /// the angle is an f32 product as in the Burn model (and transformers), its cos and sin
    /// in f64.
    fn rotary_tables(
        &self,
        inverse_frequencies: &[f32],
        positions: usize,
    ) -> Result<RotaryTables, TeacherError> {
        let angles: Vec<f64> = (0..positions)
            .flat_map(|p| {
                inverse_frequencies
                    .iter()
                    .map(move |&f| f64::from(p as f32 * f))
            })
            .collect();
        let cos: Vec<f32> = angles.iter().map(|a| a.cos() as f32).collect();
        let sin: Vec<f32> = angles.iter().map(|a| a.sin() as f32).collect();
        Ok(RotaryTables {
            cos: DeviceBuffer::from_slice(self.stream, &cos)?,
            sin: DeviceBuffer::from_slice(self.stream, &sin)?,
        })
    }
}

/// `[rows, cols]` row-major → `[cols, rows]` row-major, in blocks that stay in cache.
fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    const BLOCK: usize = 64;
    let mut out = vec![0.0; values.len()];
    for r0 in (0..rows).step_by(BLOCK) {
        for c0 in (0..cols).step_by(BLOCK) {
            for r in r0..(r0 + BLOCK).min(rows) {
                for c in c0..(c0 + BLOCK).min(cols) {
                    out[c * rows + r] = values[r * cols + c];
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::transpose;

    #[test]
    fn transpose_swaps_rows_and_columns() {
        // [[0, 1, 2], [3, 4, 5]] → [[0, 3], [1, 4], [2, 5]]
        let values: Vec<f32> = (0..6).map(|v| v as f32).collect();
        assert_eq!(transpose(&values, 2, 3), vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        let big: Vec<f32> = (0..130 * 70).map(|v| v as f32).collect();
        let back = transpose(&transpose(&big, 130, 70), 70, 130);
        assert_eq!(back, big);
    }
}
