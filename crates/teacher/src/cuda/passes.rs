//! The engine's passes: a group's prefixes (their keys and values kept in the cache), then
//! its suffixes against that cache, tokens packed back to back.

use super::CudaError;
use super::attention::Keys;
use super::engine::{Arg, CudaEngine, ROW_THREADS};
use super::layers::{ELEMENT_THREADS, element_blocks, warp_blocks};
use super::limits::longest_prompt;
use super::plan::Group;
use super::profile::Stage;
use super::workspace::Workspace;
use crate::family::PromptFamily;

impl CudaEngine {
    /// A group's prefix passes, then its suffix passes; appends each output row's prompt
    /// index to `order`.
    pub(super) fn run_group(
        &self,
        work: &mut Workspace,
        families: &[PromptFamily<'_>],
        group: &Group,
        first_row: &[usize],
        order: &mut Vec<usize>,
    ) -> Result<(), CudaError> {
        let cached: usize = group
            .families
            .clone()
            .map(|f| families[f].prefix_len())
            .sum();
        let mut cache_types = Vec::with_capacity(cached);
        for f in group.families.clone() {
            cache_types.extend(families[f].prefix().1.iter().map(|t| t.code()));
        }
        work.cache_types.upload(&self.stream, &cache_types)?;
        for pass in &group.prefix_passes {
            let base = group.cache_rows[pass.start - group.families.start];
            let members: Vec<&PromptFamily> = pass.clone().map(|f| &families[f]).collect();
            self.prefix_pass(work, &members, base)?;
        }
        for pass in &group.suffix_passes {
            let seqs: Vec<SuffixSeq> = pass
                .iter()
                .map(|&(f, k)| {
                    let (ids, types) = families[f].suffix(k);
                    SuffixSeq {
                        ids,
                        types: types.iter().map(|t| t.code()).collect(),
                        cache_row: group.cache_rows[f - group.families.start],
                        prefix_len: families[f].prefix_len(),
                    }
                })
                .collect();
            let out_row = order.len();
            self.suffix_pass(work, &seqs, out_row)?;
            order.extend(pass.iter().map(|&(f, k)| first_row[f] + k));
        }
        Ok(())
    }

    /// The keys and values of `families`' prefixes, into cache rows from `base` on (each
    /// block's projections in the pass buffer, their `k | v` copied to the block's cache).
    pub(super) fn prefix_pass(
        &self,
        work: &mut Workspace,
        families: &[&PromptFamily<'_>],
        base: usize,
    ) -> Result<(), CudaError> {
        let mut ids = Vec::new();
        let mut seqs = Vec::with_capacity(families.len());
        for family in families {
            let (prefix_ids, _) = family.prefix();
            seqs.push(SeqInfo {
                pre_start: 0,
                pre_len: 0,
                own_start: ids.len() as i32,
                own_len: prefix_ids.len() as i32,
            });
            ids.extend_from_slice(prefix_ids);
        }
        let rows = ids.len();
        let positions: Vec<u32> = families
            .iter()
            .flat_map(|f| 0..f.prefix_len() as u32)
            .collect();
        work.ids.upload(&self.stream, &ids)?;
        work.positions.upload(&self.stream, &positions)?;
        let lists = self.attention_lists(work, &seqs)?;
        self.pass_uploaded()?;
        self.embed(work, rows)?;
        for (l, block) in self.weights.blocks.iter().enumerate() {
            self.project_qkv(work, block, work.qkv.ptr(), rows)?;
            self.cache_keys_values(work, l, base, rows)?;
            if l + 1 == self.layers {
                break;
            }
            let source = Keys {
                pre: 0,
                pre_types: 0,
                own: work.qkv.ptr(),
                own_types: work.cache_types.at(base),
            };
            self.attention_all(work, &source, &lists)?;
            self.mlp_and_next_norm(work, block, l, rows)?;
        }
        Ok(())
    }

    /// Last-token states of `seqs` (suffixes against cached prefixes, or whole prompts),
    /// into rows `out_row..` of the call's output.
    pub(super) fn suffix_pass(
        &self,
        work: &mut Workspace,
        seqs: &[SuffixSeq<'_>],
        out_row: usize,
    ) -> Result<(), CudaError> {
        let last_position = longest_prompt(&self.arch.shape) as u32 - 1;
        let mut ids = Vec::new();
        let mut positions = Vec::new();
        let mut types = Vec::new();
        let mut info = Vec::with_capacity(seqs.len());
        let mut last_rows = Vec::with_capacity(seqs.len());
        for seq in seqs {
            let start = ids.len();
            info.push(SeqInfo {
                pre_start: seq.cache_row as i32,
                pre_len: seq.prefix_len as i32,
                own_start: start as i32,
                own_len: seq.ids.len() as i32,
            });
            ids.extend_from_slice(seq.ids);
            positions.extend(
                (seq.prefix_len..seq.prefix_len + seq.ids.len())
                    .map(|p| (p as u32).min(last_position)),
            );
            types.extend_from_slice(&seq.types);
            last_rows.push((start + seq.ids.len() - 1) as u32);
        }
        let rows = ids.len();
        let n = seqs.len();
        work.ids.upload(&self.stream, &ids)?;
        work.positions.upload(&self.stream, &positions)?;
        work.types.upload(&self.stream, &types)?;
        work.last_rows.upload(&self.stream, &last_rows)?;
        let lists = self.attention_lists(work, &info)?;
        self.pass_uploaded()?;
        let d = self.arch.shape.d_model;
        self.embed(work, rows)?;
        for (l, block) in self.weights.blocks.iter().enumerate() {
            self.project_qkv(work, block, work.qkv.ptr(), rows)?;
            let source = Keys {
                pre: work.cache[l].ptr(),
                pre_types: work.cache_types.ptr(),
                own: work.qkv.ptr(),
                own_types: work.types.ptr(),
            };
            if l + 1 < self.layers {
                self.attention_all(work, &source, &lists)?;
                self.mlp_and_next_norm(work, block, l, rows)?;
                continue;
            }
            // The final block: only each sequence's last row goes on.
            self.attention_last_rows(work, &source, &info)?;
            self.launch(
                &self.kernels.gather_rows,
                (warp_blocks(n), 1),
                ROW_THREADS,
                0,
                &[
                    Arg::Ptr(work.h.ptr()),
                    Arg::Ptr(work.last_rows.ptr()),
                    Arg::Ptr(work.h_last.ptr()),
                    Arg::Int(n as i32),
                    Arg::Int((d * self.elem_bytes() / 4) as i32),
                ],
            )?;
            self.mark(Stage::LastRows)?;
            let out = work
                .out
                .as_ref()
                .expect("allocated by the call")
                .at(out_row * d * 4);
            self.block_tail(
                work,
                block,
                work.h_last.ptr(),
                n,
                (&self.weights.final_norm, out, true),
            )?;
        }
        Ok(())
    }

    /// Copies the `k | v` columns of the pass's first `rows` projections into block `l`'s
    /// cache from row `base` on.
    fn cache_keys_values(
        &self,
        work: &Workspace,
        l: usize,
        base: usize,
        rows: usize,
    ) -> Result<(), CudaError> {
        let e = self.elem_bytes();
        let (ld, skip) = (self.arch.qkv_width() * e / 4, self.arch.q_width() * e / 4);
        let row_words = 2 * self.arch.kv_width() * e / 4;
        self.launch(
            &self.kernels.copy_keys_values,
            (element_blocks(rows * row_words), 1),
            ELEMENT_THREADS,
            0,
            &[
                Arg::Ptr(work.qkv.ptr()),
                Arg::Ptr(work.cache[l].at(base * row_words * 4)),
                Arg::Int(rows as i32),
                Arg::Int(ld as i32),
                Arg::Int(skip as i32),
                Arg::Int(row_words as i32),
            ],
        )?;
        self.mark(Stage::Qkv)
    }
}

/// One sequence of a suffix pass.
pub(super) struct SuffixSeq<'p> {
    ids: &'p [u32],
    types: Vec<u8>,
    /// Cache row of its prefix's first token.
    cache_row: usize,
    /// Tokens of its prefix (0: a whole prompt).
    prefix_len: usize,
}

/// `attention.cu`'s `SeqInfo`.
#[derive(Debug, Clone, Copy)]
pub(super) struct SeqInfo {
    pub(super) pre_start: i32,
    pub(super) pre_len: i32,
    pub(super) own_start: i32,
    pub(super) own_len: i32,
}
