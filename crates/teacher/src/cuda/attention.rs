//! The engine's attention launches: work lists over the queries of a pass, the tensor-core
//! kernel (f16, heads 64 or 128 wide) and the simple one (any width, f32); grouped key/value
//! heads in both.

use super::CudaError;
use super::engine::ROW_THREADS;
use super::engine::{Arg, CudaEngine};
use super::passes::SeqInfo;
use super::profile::Stage;
use super::workspace::Workspace;
use crate::mask::CALIBRATION_PENALTY;

/// Queries per block of the tensor-core attention.
pub(super) const ATTENTION_TILE: usize = 64;

impl CudaEngine {
    /// Uploads the work list of attention over every query of `seqs`: 64-query tiles for
    /// the tensor-core kernel, else one item per query for the simple one.
    pub(super) fn attention_lists(
        &self,
        work: &Workspace,
        seqs: &[SeqInfo],
    ) -> Result<AttentionLists, CudaError> {
        let max_keys = seqs
            .iter()
            .map(|s| (s.pre_len + s.own_len) as usize)
            .max()
            .unwrap_or(1);
        if self.tensor_core_attention().is_some() {
            let mut tiles = Vec::new();
            for (s, seq) in seqs.iter().enumerate() {
                for q0 in (0..seq.own_len).step_by(ATTENTION_TILE) {
                    tiles.extend_from_slice(&[s as i32, q0]);
                }
            }
            work.tiles.upload(&self.stream, &tiles)?;
            Ok(AttentionLists {
                count: tiles.len() / 2,
                max_keys,
            })
        } else {
            let mut items = Vec::new();
            for (s, seq) in seqs.iter().enumerate() {
                for q in 0..seq.own_len {
                    items.extend_from_slice(&[s as i32, q, seq.own_start + q]);
                }
            }
            work.items.upload(&self.stream, &items)?;
            Ok(AttentionLists {
                count: items.len() / 3,
                max_keys,
            })
        }
    }

    /// Attention of every query (the lists of [`attention_lists`](Self::attention_lists))
    /// into `ctx`, rows as the pass's.
    pub(super) fn attention_all(
        &self,
        work: &Workspace,
        keys: &Keys,
        lists: &AttentionLists,
    ) -> Result<(), CudaError> {
        let Some(kernel) = self.tensor_core_attention() else {
            self.attention_simt(work, keys, work.items.ptr(), lists.count, lists.max_keys)?;
            return self.mark(Stage::Attention);
        };
        self.launch(
            kernel,
            (lists.count as u32, self.arch.shape.heads as u32),
            128,
            0,
            &keys.args_then(&[
                Arg::Ptr(work.ctx.ptr()),
                Arg::Ptr(work.seqs.ptr()),
                Arg::Ptr(work.tiles.ptr()),
                Arg::Int(self.arch.q_width() as i32),
                Arg::Int(self.arch.kv_width() as i32),
                Arg::Int(self.arch.group() as i32),
                Arg::Int(self.arch.qkv_width() as i32),
                Arg::Float(self.scale()),
                Arg::Float(CALIBRATION_PENALTY as f32),
            ]),
        )?;
        self.mark(Stage::Attention)
    }

    /// The simple attention over `count` uploaded items (seq, query, output row) into `ctx`.
    pub(super) fn attention_simt(
        &self,
        work: &Workspace,
        keys: &Keys,
        items: u64,
        count: usize,
        max_keys: usize,
    ) -> Result<(), CudaError> {
        let head_dim = self.arch.shape.head_dim;
        let warps = (ROW_THREADS / 32) as usize;
        let kernel = if self.is_half() {
            &self.kernels.attention_simt_f16
        } else {
            &self.kernels.attention_simt_f32
        };
        let shared = (warps * (head_dim + max_keys) * 4) as u32;
        self.launch(
            kernel,
            (count.div_ceil(warps) as u32, self.arch.shape.heads as u32),
            ROW_THREADS,
            shared,
            &keys.args_then(&[
                Arg::Ptr(work.ctx.ptr()),
                Arg::Ptr(work.seqs.ptr()),
                Arg::Ptr(items),
                Arg::Int(count as i32),
                Arg::Int(self.arch.q_width() as i32),
                Arg::Int(self.arch.kv_width() as i32),
                Arg::Int(self.arch.group() as i32),
                Arg::Int(self.arch.qkv_width() as i32),
                Arg::Int(head_dim as i32),
                Arg::Float(self.scale()),
                Arg::Float(CALIBRATION_PENALTY as f32),
                Arg::Int(max_keys as i32),
            ]),
        )
    }
}

/// Where the attention kernels read keys: prefix projections and types (0 when none) and
/// the pass's own.
pub(super) struct Keys {
    pub(super) pre: u64,
    pub(super) pre_types: u64,
    pub(super) own: u64,
    pub(super) own_types: u64,
}

impl Keys {
    /// The kernel arguments every attention kernel starts with (prefix keys and types, own
    /// keys and types), followed by `rest`.
    fn args_then(&self, rest: &[Arg]) -> Vec<Arg> {
        let keys = [self.pre, self.pre_types, self.own, self.own_types].map(Arg::Ptr);
        keys.into_iter().chain(rest.iter().copied()).collect()
    }
}

/// An uploaded attention work list.
pub(super) struct AttentionLists {
    pub(super) count: usize,
    pub(super) max_keys: usize,
}
