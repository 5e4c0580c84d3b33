//! The engine's working memory: the buffers of one pass and the prefix cache, sized by
//! [`EngineLimits`] (the weights are in `weights`).

use std::sync::Arc;

use cudarc::driver::CudaStream;

use super::CudaError;
use super::arch::{EngineArch, Mlp};
use super::attention::{ATTENTION_TILE, TILE_BYTES};
use super::blas::GemmType;
use super::buffer::DeviceBuffer;
use super::limits::EngineLimits;

/// Buffers of one pass and the cache, sized by the limits.
pub(super) struct Workspace {
    /// The residual stream, in the products' element type.
    pub(super) h: DeviceBuffer,
    pub(super) a: DeviceBuffer,
    pub(super) qkv: DeviceBuffer,
    pub(super) ctx: DeviceBuffer,
    /// The MLP's first product.
    pub(super) mlp: DeviceBuffer,
    /// SwiGLU's product of the gate and up halves.
    pub(super) mlp_act: Option<DeviceBuffer>,
    pub(super) h_last: DeviceBuffer,
    /// Per block, the cached prefixes' rows `k | v` (2 `kv_width` each).
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
        arch: &EngineArch,
        layers: usize,
        gemm: GemmType,
        limits: EngineLimits,
    ) -> Result<Self, CudaError> {
        let e = if gemm == GemmType::F16 { 2 } else { 4 };
        let d = arch.shape.d_model;
        let (q, qkv) = (arch.q_width(), arch.qkv_width());
        let (p, s, c) = (
            limits.pass_tokens,
            limits.pass_sequences,
            limits.cache_tokens,
        );
        let alloc = |bytes: usize| DeviceBuffer::new(stream, bytes);
        Ok(Workspace {
            h: alloc(p * d * e)?,
            a: alloc(p * d * e)?,
            qkv: alloc(p * qkv * e)?,
            ctx: alloc(p * q * e)?,
            mlp: alloc(p * arch.mlp_in_width() * e)?,
            mlp_act: match arch.mlp {
                Mlp::SwiGlu => Some(alloc(p * arch.shape.mlp_width * e)?),
                Mlp::Gelu { .. } => None,
            },
            h_last: alloc(s * d * e)?,
            cache: (0..layers)
                .map(|_| alloc(c * 2 * arch.kv_width() * e))
                .collect::<Result<_, _>>()?,
            cache_types: alloc(c)?,
            ids: alloc(p * 4)?,
            positions: alloc(p * 4)?,
            types: alloc(p)?,
            seqs: alloc(s * 20)?,
            items: alloc(p.max(s) * 12)?,
            tiles: alloc((p.div_ceil(ATTENTION_TILE) + s) * TILE_BYTES)?,
            last_rows: alloc(s * 4)?,
            out: None,
        })
    }
}
