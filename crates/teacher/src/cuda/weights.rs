//! The engine's weights on the device, in its own layout, from a checkpoint of a family it
//! runs: every product's matrix `[in, out]` row-major in the compute type (LLaMA's `[out,
//! in]` matrices transposed, its q, k and v side by side, gate and up side by side), biases
//! in the compute type (zeros where the layer has none: the epilogue adds them for free),
//! embeddings, norms and rotary tables in f32. Blocks are converted on the host by several
//! threads at once (a few blocks at a time), then uploaded in order.

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
use crate::parallel::map_in_threads;
use crate::weights::NamedTensors;

/// A product's matrix `[in, out]` and bias `[out]`, in the compute type: on the device
/// (`B` = [`DeviceBuffer`]) or converted on the host.
pub(super) struct LinearWeights<B = DeviceBuffer> {
    pub(super) weight: B,
    pub(super) bias: B,
}

/// A norm's scale, and its shift (LayerNorm only), f32: on the device or on the host.
pub(super) struct NormWeights<B = DeviceBuffer> {
    pub(super) weight: B,
    pub(super) bias: Option<B>,
}

impl NormWeights {
    /// The shift's address, 0 for none.
    pub(super) fn bias_ptr(&self) -> u64 {
        self.bias.as_ref().map_or(0, DeviceBuffer::ptr)
    }
}

/// One block's weights, on the device or on the host.
pub(super) struct BlockWeights<B = DeviceBuffer> {
    /// The norm before attention.
    pub(super) attn_norm: NormWeights<B>,
    /// `x → q | k | v`.
    pub(super) qkv: LinearWeights<B>,
    /// The attention's output projection.
    pub(super) attn_out: LinearWeights<B>,
    /// The norm before the MLP.
    pub(super) mlp_norm: NormWeights<B>,
    /// The MLP's first product (`fc`, or `gate | up`).
    pub(super) mlp_in: LinearWeights<B>,
    /// The MLP's down projection.
    pub(super) mlp_out: LinearWeights<B>,
}

/// Values converted on the host, ready to upload.
enum HostValues {
    F16(Vec<f16>),
    F32(Vec<f32>),
}

impl HostValues {
    fn upload(&self, stream: &Arc<CudaStream>) -> Result<DeviceBuffer, TeacherError> {
        Ok(match self {
            HostValues::F16(v) => DeviceBuffer::from_slice(stream, v)?,
            HostValues::F32(v) => DeviceBuffer::from_slice(stream, v)?,
        })
    }
}

impl LinearWeights<HostValues> {
    fn upload(&self, stream: &Arc<CudaStream>) -> Result<LinearWeights, TeacherError> {
        Ok(LinearWeights {
            weight: self.weight.upload(stream)?,
            bias: self.bias.upload(stream)?,
        })
    }
}

impl NormWeights<HostValues> {
    fn upload(&self, stream: &Arc<CudaStream>) -> Result<NormWeights, TeacherError> {
        Ok(NormWeights {
            weight: self.weight.upload(stream)?,
            bias: self.bias.as_ref().map(|b| b.upload(stream)).transpose()?,
        })
    }
}

impl BlockWeights<HostValues> {
    fn upload(&self, stream: &Arc<CudaStream>) -> Result<BlockWeights, TeacherError> {
        Ok(BlockWeights {
            attn_norm: self.attn_norm.upload(stream)?,
            qkv: self.qkv.upload(stream)?,
            attn_out: self.attn_out.upload(stream)?,
            mlp_norm: self.mlp_norm.upload(stream)?,
            mlp_in: self.mlp_in.upload(stream)?,
            mlp_out: self.mlp_out.upload(stream)?,
        })
    }
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
        let reader = HostReader { tensors, half };
        let shape = &arch.shape;
        let d = shape.d_model;
        match config {
            ModelConfig::Gpt2(_) => Ok(DeviceWeights {
                token_embedding: reader
                    .f32(gpt2::TOKEN_EMBEDDING, &[shape.vocab, d])?
                    .upload(stream)?,
                position_embedding: Some(
                    reader
                        .f32(gpt2::POSITION_EMBEDDING, &[shape.position_rows, d])?
                        .upload(stream)?,
                ),
                rotary: None,
                blocks: upload_blocks(stream, layers, |i| reader.gpt2_block(arch, i))?,
                final_norm: reader.layer_norm(gpt2::FINAL_NORM, d)?.upload(stream)?,
            }),
            ModelConfig::Llama(c) => Ok(DeviceWeights {
                token_embedding: reader
                    .f32(llama::TOKEN_EMBEDDING, &[shape.vocab, d])?
                    .upload(stream)?,
                position_embedding: None,
                rotary: Some(RotaryTables::upload(
                    stream,
                    &c.inverse_frequencies(),
                    longest_prompt(shape),
                )?),
                blocks: upload_blocks(stream, layers, |i| reader.llama_block(arch, c, i))?,
                final_norm: reader.rms_norm(llama::FINAL_NORM, d)?.upload(stream)?,
            }),
            ModelConfig::Bert(_) => Err(TeacherError::Cuda(
                "the CUDA engine has no BERT weights layout".into(),
            )),
        }
    }
}

/// Blocks converted on the host at once, at most (each holds its f32 values and their
/// transpose while it converts: ≈ 0.5 GB for a Llama-3.2-1B block).
const CONVERSION_THREADS: usize = 8;

/// Blocks `0..layers`, each converted by `convert` on the host (several at once), then
/// uploaded in order.
fn upload_blocks(
    stream: &Arc<CudaStream>,
    layers: usize,
    convert: impl Fn(usize) -> Result<BlockWeights<HostValues>, TeacherError> + Sync,
) -> Result<Vec<BlockWeights>, TeacherError> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(CONVERSION_THREADS);
    let indices: Vec<usize> = (0..layers).collect();
    let mut blocks = Vec::with_capacity(layers);
    for chunk in indices.chunks(threads) {
        for block in map_in_threads(chunk, threads, |&i| convert(i))? {
            blocks.push(block.upload(stream)?);
        }
    }
    Ok(blocks)
}

impl RotaryTables {
    /// Cos and sin of `position · inverse_frequencies[i]` for positions below `positions`:
    /// the angle is an f32 product as in the Burn model (and transformers), its cos and sin
    /// in f64.
    fn upload(
        stream: &Arc<CudaStream>,
        inverse_frequencies: &[f32],
        positions: usize,
    ) -> Result<Self, TeacherError> {
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
            cos: DeviceBuffer::from_slice(stream, &cos)?,
            sin: DeviceBuffer::from_slice(stream, &sin)?,
        })
    }
}

/// Reads tensors from the checkpoint and converts them to the engine's layout on the host.
struct HostReader<'a> {
    tensors: &'a NamedTensors<'a>,
    /// Matrix weights in f16 (else f32).
    half: bool,
}

impl HostReader<'_> {
    fn gpt2_block(
        &self,
        arch: &EngineArch,
        i: usize,
    ) -> Result<BlockWeights<HostValues>, TeacherError> {
        let (d, inner) = (arch.shape.d_model, arch.shape.mlp_width);
        let n = gpt2::BlockNames(i);
        Ok(BlockWeights {
            attn_norm: self.layer_norm(&n.ln_1(), d)?,
            qkv: self.conv1d(&n.attn(), d, 3 * d)?,
            attn_out: self.conv1d(&n.attn_proj(), d, d)?,
            mlp_norm: self.layer_norm(&n.ln_2(), d)?,
            mlp_in: self.conv1d(&n.fc(), d, inner)?,
            mlp_out: self.conv1d(&n.mlp_proj(), inner, d)?,
        })
    }

    fn llama_block(
        &self,
        arch: &EngineArch,
        config: &LlamaConfig,
        i: usize,
    ) -> Result<BlockWeights<HostValues>, TeacherError> {
        let (attn_bias, mlp_bias) = (config.attention_bias, config.mlp_bias);
        let (d, inner) = (arch.shape.d_model, arch.shape.mlp_width);
        let (q, kv) = (arch.q_width(), arch.kv_width());
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
    }

    fn f32(&self, name: &str, shape: &[usize]) -> Result<HostValues, TeacherError> {
        Ok(HostValues::F32(self.tensors.values(name, shape)?))
    }

    /// Values in the compute type.
    fn compute(&self, values: Vec<f32>) -> HostValues {
        if self.half {
            HostValues::F16(values.into_iter().map(f16::from_f32).collect())
        } else {
            HostValues::F32(values)
        }
    }

    /// A Conv1D (GPT-2): weight `[d_in, d_out]`, the engine's layout already, and bias.
    fn conv1d(
        &self,
        name: &str,
        d_in: usize,
        d_out: usize,
    ) -> Result<LinearWeights<HostValues>, TeacherError> {
        let weight = self
            .tensors
            .values(&format!("{name}.weight"), &[d_in, d_out])?;
        let bias = self.tensors.values(&format!("{name}.bias"), &[d_out])?;
        Ok(LinearWeights {
            weight: self.compute(weight),
            bias: self.compute(bias),
        })
    }

    /// `nn.Linear` layers `[out, d_in]` over the same input as one product: their outputs
    /// side by side, in `parts`' order; zero biases when the layers have none.
    fn stacked_linear(
        &self,
        parts: &[(String, usize)],
        d_in: usize,
        bias: bool,
    ) -> Result<LinearWeights<HostValues>, TeacherError> {
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
            weight: self.compute(transpose(&stacked, d_out, d_in)),
            bias: self.compute(biases),
        })
    }

    fn layer_norm(&self, name: &str, d: usize) -> Result<NormWeights<HostValues>, TeacherError> {
        Ok(NormWeights {
            weight: self.f32(&format!("{name}.weight"), &[d])?,
            bias: Some(self.f32(&format!("{name}.bias"), &[d])?),
        })
    }

    fn rms_norm(&self, name: &str, d: usize) -> Result<NormWeights<HostValues>, TeacherError> {
        Ok(NormWeights {
            weight: self.f32(&format!("{name}.weight"), &[d])?,
            bias: None,
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
