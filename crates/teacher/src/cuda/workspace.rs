//! The engine's device memory: the weights of each block, the buffers of one pass and the
//! prefix cache (sized by [`EngineLimits`]), and the upload of a checkpoint's tensors.

use std::sync::Arc;

use cudarc::driver::CudaStream;
use half::f16;

use super::CudaError;
use super::attention::ATTENTION_TILE;
use super::blas::GemmType;
use super::buffer::DeviceBuffer;
use super::limits::EngineLimits;
use crate::error::TeacherError;
use crate::gpt2::Gpt2Config;
use crate::weights::NamedTensors;

/// One block's weights on the device.
pub(super) struct BlockWeights {
    pub(super) ln_1: (DeviceBuffer, DeviceBuffer),
    pub(super) attn: (DeviceBuffer, DeviceBuffer),
    pub(super) attn_proj: (DeviceBuffer, DeviceBuffer),
    pub(super) ln_2: (DeviceBuffer, DeviceBuffer),
    pub(super) fc: (DeviceBuffer, DeviceBuffer),
    pub(super) mlp_proj: (DeviceBuffer, DeviceBuffer),
}

/// Buffers of one pass and the cache, sized by the limits.
pub(super) struct Workspace {
    pub(super) h: DeviceBuffer,
    pub(super) a: DeviceBuffer,
    pub(super) qkv: DeviceBuffer,
    pub(super) ctx: DeviceBuffer,
    pub(super) o: DeviceBuffer,
    pub(super) mlp: DeviceBuffer,
    pub(super) h_last: DeviceBuffer,
    pub(super) cache: Vec<DeviceBuffer>,
    pub(super) cache_types: DeviceBuffer,
    pub(super) ids: DeviceBuffer,
    pub(super) positions: DeviceBuffer,
    pub(super) types: DeviceBuffer,
    pub(super) seqs: DeviceBuffer,
    pub(super) items: DeviceBuffer,
    pub(super) tiles: DeviceBuffer,
    pub(super) last_rows: DeviceBuffer,
    /// The output of a call: [prompts, d] f32, grown on demand.
    pub(super) out: Option<DeviceBuffer>,
}

impl Workspace {
    pub(super) fn new(
        stream: &Arc<CudaStream>,
        config: &Gpt2Config,
        layers: usize,
        gemm: GemmType,
        limits: EngineLimits,
    ) -> Result<Self, CudaError> {
        let e = if gemm == GemmType::F16 { 2 } else { 4 };
        let (d, inner) = (config.n_embd, config.n_inner);
        let (p, s, c) = (
            limits.pass_tokens,
            limits.pass_sequences,
            limits.cache_tokens,
        );
        let alloc = |bytes: usize| DeviceBuffer::new(stream, bytes);
        Ok(Workspace {
            h: alloc(p * d * 4)?,
            a: alloc(p * d * e)?,
            qkv: alloc(p * 3 * d * e)?,
            ctx: alloc(p * d * e)?,
            o: alloc(p * d * e)?,
            mlp: alloc(p * inner * e)?,
            h_last: alloc(s * d * 4)?,
            cache: (0..layers)
                .map(|_| alloc(c * 3 * d * e))
                .collect::<Result<_, _>>()?,
            cache_types: alloc(c)?,
            ids: alloc(p * 4)?,
            positions: alloc(p * 4)?,
            types: alloc(p)?,
            seqs: alloc(s * 20)?,
            items: alloc(p.max(s) * 12)?,
            tiles: alloc((p.div_ceil(ATTENTION_TILE) + s) * 8)?,
            last_rows: alloc(s * 4)?,
            out: None,
        })
    }
}

/// Reads tensors from the checkpoint and puts them on the device.
pub(super) struct Uploader<'a> {
    pub(super) stream: &'a Arc<CudaStream>,
    pub(super) tensors: &'a NamedTensors<'a>,
    /// Matrix weights in f16 (else f32).
    pub(super) half: bool,
}

impl Uploader<'_> {
    pub(super) fn f32(&self, name: &str, shape: &[usize]) -> Result<DeviceBuffer, TeacherError> {
        let values = self.tensors.values(name, shape)?;
        Ok(DeviceBuffer::from_slice(self.stream, &values)?)
    }

    /// A tensor in the compute type.
    pub(super) fn compute(
        &self,
        name: &str,
        shape: &[usize],
    ) -> Result<DeviceBuffer, TeacherError> {
        if !self.half {
            return self.f32(name, shape);
        }
        let values: Vec<f16> = self
            .tensors
            .values(name, shape)?
            .into_iter()
            .map(f16::from_f32)
            .collect();
        Ok(DeviceBuffer::from_slice(self.stream, &values)?)
    }

    /// A Conv1D weight [d_in, d_out] (row-major, as the engine's products take it) and bias.
    pub(super) fn linear(
        &self,
        name: &str,
        d_in: usize,
        d_out: usize,
    ) -> Result<(DeviceBuffer, DeviceBuffer), TeacherError> {
        Ok((
            self.compute(&format!("{name}.weight"), &[d_in, d_out])?,
            self.compute(&format!("{name}.bias"), &[d_out])?,
        ))
    }

    /// A LayerNorm's weight and bias, f32.
    pub(super) fn norm(
        &self,
        name: &str,
        d: usize,
    ) -> Result<(DeviceBuffer, DeviceBuffer), TeacherError> {
        Ok((
            self.f32(&format!("{name}.weight"), &[d])?,
            self.f32(&format!("{name}.bias"), &[d])?,
        ))
    }
}
