//! The engine's attention launches: work lists over the queries of a pass, the tensor-core
//! kernel (f16, heads 64 or 128 wide) and the simple one (any width, f32); grouped key/value
//! heads in both.

use cudarc::driver::CudaFunction;

use super::CudaError;
use super::engine::ROW_THREADS;
use super::engine::{Arg, CudaEngine};
use super::kernels::WGMMA_SHARED_BYTES;
use super::passes::SeqInfo;
use super::profile::Stage;
use super::workspace::Workspace;
use crate::mask::CALIBRATION_PENALTY;

/// Queries per block of the tensor-core attention.
pub(super) const ATTENTION_TILE: usize = 64;

/// Tiles of at most this many queries (short suffixes, the final block's last rows) go to
/// the split kernel where the model has one: its four warps share the tile's 16 queries and
/// split the keys, instead of three of them idling.
const SHORT_TILE: i32 = 16;

/// The tensor-core kernels of a model: for tiles of up to 64 queries (with the dynamic shared
/// memory it takes), and for short ones.
struct TensorCore<'k> {
    tiles: (&'k CudaFunction, u32),
    short: &'k CudaFunction,
}

impl CudaEngine {
    /// The tensor-core attention of this model, if there is one (f16, heads 64 or 128 wide;
    /// 64-wide heads have the split kernel for short tiles, and on Hopper the wgmma kernel
    /// for the others).
    fn tensor_core(&self) -> Option<TensorCore<'_>> {
        let kernels = &self.kernels;
        match (self.is_half(), self.arch.shape.head_dim) {
            (true, 64) => Some(TensorCore {
                tiles: match &kernels.attention_wgmma_f16_hd64 {
                    Some(wgmma) => (wgmma, WGMMA_SHARED_BYTES),
                    None => (&kernels.attention_mma_f16_hd64, 0),
                },
                short: &kernels.attention_mma_split_f16_hd64,
            }),
            (true, 128) => Some(TensorCore {
                tiles: (&kernels.attention_mma_f16_hd128, 0),
                short: &kernels.attention_mma_f16_hd128,
            }),
            _ => None,
        }
    }

    /// Uploads the work list of attention over every query of `seqs`: for the tensor-core
    /// kernels 64-query tiles (each with its sequence), the short ones last; else the sequence
    /// table (`attention.cu`'s `SeqInfo`) and one item per query (sequence, query, output row)
    /// for the simple kernel.
    pub(super) fn attention_lists(
        &self,
        work: &Workspace,
        seqs: &[SeqInfo],
    ) -> Result<AttentionLists, CudaError> {
        let max_keys = max_keys(seqs);
        if self.tensor_core().is_some() {
            let (tiles, count, short) = tile_list(seqs);
            work.tiles.upload(&self.stream, &tiles)?;
            Ok(AttentionLists {
                count,
                short,
                max_keys,
            })
        } else {
            let table: Vec<i32> = seqs
                .iter()
                .flat_map(|s| [s.pre_start, s.pre_len, s.own_start, s.own_len, 0])
                .collect();
            work.seqs.upload(&self.stream, &table)?;
            let mut items = Vec::new();
            for (s, seq) in seqs.iter().enumerate() {
                for q in 0..seq.own_len {
                    items.extend_from_slice(&[s as i32, q, seq.own_start + q]);
                }
            }
            work.items.upload(&self.stream, &items)?;
            Ok(AttentionLists {
                count: items.len() / 3,
                short: 0,
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
        match self.tensor_core() {
            Some(kernels) => {
                let list = (work.tiles.ptr(), lists.count);
                self.attention_tiles(kernels.tiles, work, keys, list)?;
                let short = work.tiles.at(lists.count * TILE_BYTES);
                self.attention_tiles((kernels.short, 0), work, keys, (short, lists.short))?;
            }
            None => {
                self.attention_simt(work, keys, work.items.ptr(), lists.count, lists.max_keys)?
            }
        }
        self.mark(Stage::Attention)
    }

    /// Attention of each sequence's last query alone (the final block), sequence s's into
    /// row s of `ctx`: one short tile per sequence for the tensor-core kernels, else one
    /// item.
    pub(super) fn attention_last_rows(
        &self,
        work: &Workspace,
        keys: &Keys,
        seqs: &[SeqInfo],
    ) -> Result<(), CudaError> {
        if let Some(kernels) = self.tensor_core() {
            let list: Vec<i32> = seqs
                .iter()
                .enumerate()
                .flat_map(|(s, seq)| tile_work(seq, seq.own_len - 1, seq.own_len, s as i32))
                .collect();
            work.tiles.upload(&self.stream, &list)?;
            let list = (work.tiles.ptr(), seqs.len());
            return self.attention_tiles((kernels.short, 0), work, keys, list);
        }
        let list: Vec<i32> = seqs
            .iter()
            .enumerate()
            .flat_map(|(s, seq)| [s as i32, seq.own_len - 1, s as i32])
            .collect();
        work.items.upload(&self.stream, &list)?;
        self.attention_simt(work, keys, work.items.ptr(), seqs.len(), max_keys(seqs))
    }

    /// A tensor-core kernel (with its bytes of dynamic shared memory) over `count` tiles
    /// uploaded at `tiles`.
    fn attention_tiles(
        &self,
        (kernel, shared): (&CudaFunction, u32),
        work: &Workspace,
        keys: &Keys,
        (tiles, count): (u64, usize),
    ) -> Result<(), CudaError> {
        self.launch(
            kernel,
            (count as u32, self.arch.shape.heads as u32),
            128,
            shared,
            &keys.args_then(&[
                Arg::Ptr(work.ctx.ptr()),
                Arg::Ptr(tiles),
                Arg::Int(self.arch.q_width() as i32),
                Arg::Int(self.arch.kv_width() as i32),
                Arg::Int(self.arch.group() as i32),
                Arg::Int(self.arch.qkv_width() as i32),
                Arg::Float(self.scale()),
                Arg::Float(CALIBRATION_PENALTY as f32),
            ]),
        )
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

/// The tensor-core work list of `seqs`: tiles of up to 64 queries ([`tile_work`] records),
/// then the short ones (at most [`SHORT_TILE`] queries); with how many of each.
fn tile_list(seqs: &[SeqInfo]) -> (Vec<i32>, usize, usize) {
    let (mut tiles, mut short) = (Vec::new(), Vec::new());
    for seq in seqs {
        let starts = tile_starts(seq.pre_len, seq.own_len);
        for (i, &q0) in starts.iter().enumerate() {
            let end = starts.get(i + 1).copied().unwrap_or(seq.own_len);
            let list = if end - q0 <= SHORT_TILE {
                &mut short
            } else {
                &mut tiles
            };
            list.extend_from_slice(&tile_work(seq, q0, end, seq.own_start + q0));
        }
    }
    let (count, short_count) = (tiles.len() / TILE_INTS, short.len() / TILE_INTS);
    tiles.append(&mut short);
    (tiles, count, short_count)
}

/// The first queries of the tiles of a sequence of `own_len` queries after `pre_len` cached
/// keys: as few tiles as 64-query tiles allow, all full but one. The one with the rest goes
/// first where that has the tiles read fewer 64-key tiles in all (a tile's queries see the
/// keys up to its last one's, and the first tile's see the fewest), else last (a prompt's
/// own causal attention, whose 64-query tiles then end on the diagonal of 64-key tiles).
fn tile_starts(pre_len: i32, own_len: i32) -> Vec<i32> {
    let rest = own_len % ATTENTION_TILE as i32;
    let last_first: Vec<i32> = (0..own_len).step_by(ATTENTION_TILE).collect();
    if rest == 0 {
        return last_first;
    }
    let rest_first: Vec<i32> = std::iter::once(0)
        .chain((rest..own_len).step_by(ATTENTION_TILE))
        .collect();
    let read = |starts: &[i32]| key_tiles_read(pre_len, own_len, starts);
    if read(&rest_first) < read(&last_first) {
        rest_first
    } else {
        last_first
    }
}

/// The 64-key tiles read by the tiles starting at `starts` of a sequence of `own_len` queries
/// after `pre_len` cached keys (a tile's queries see the keys up to its last one's).
fn key_tiles_read(pre_len: i32, own_len: i32, starts: &[i32]) -> i32 {
    let tile = ATTENTION_TILE as i32;
    let ends = starts.iter().skip(1).copied().chain([own_len]);
    ends.map(|end| (pre_len + end + tile - 1) / tile).sum()
}

/// The record of the tile of `seq`'s queries `q0..end` as the kernels read it
/// (`attention.cu`'s `TileWork`): the sequence as the tile sees it (its own tokens cut after
/// the tile's last query: no later one is a key of its queries, and the kernels write no
/// query past a sequence's end), the first query and that query's output row `row0`.
fn tile_work(seq: &SeqInfo, q0: i32, end: i32, row0: i32) -> [i32; TILE_INTS] {
    [
        seq.pre_start,
        seq.pre_len,
        seq.own_start,
        end,
        0,
        q0,
        row0,
        0,
    ]
}

/// The most keys a query of `seqs` sees (its prefix and its own tokens; at least 1).
fn max_keys(seqs: &[SeqInfo]) -> usize {
    seqs.iter()
        .map(|s| (s.pre_len + s.own_len) as usize)
        .max()
        .unwrap_or(1)
}

/// An uploaded attention work list: `count` tiles (or items), then `short` short tiles.
pub(super) struct AttentionLists {
    pub(super) count: usize,
    pub(super) short: usize,
    pub(super) max_keys: usize,
}

/// The i32s of one tile of the lists ([`tile_work`]).
const TILE_INTS: usize = 8;

/// Bytes of one tile of the lists (`attention.cu` checks its `TileWork` against it).
pub(super) const TILE_BYTES: usize = TILE_INTS * 4;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tiles_cover_every_query_once_and_short_ones_go_last() {
        // Suffixes as a pass packs them: GT suffixes of several H, HD suffixes, one token.
        let lengths = [450, 11, 59, 1, 64, 65, 80, 16, 17, 128, 300];
        let mut seqs = Vec::new();
        let mut start = 0;
        for len in lengths {
            seqs.push(SeqInfo {
                pre_start: 0,
                pre_len: 260,
                own_start: start,
                own_len: len,
            });
            start += len;
        }
        let (list, count, short) = tile_list(&seqs);
        assert_eq!(list.len(), TILE_INTS * (count + short));
        let mut seen = vec![0u32; start as usize];
        for (i, tile) in list.chunks(TILE_INTS).enumerate() {
            let [pre_start, pre_len, own_start, end, _, q0, row0, _] = tile.try_into().unwrap();
            let seq = seqs.iter().find(|s| s.own_start == own_start).unwrap();
            assert_eq!(
                (pre_start, pre_len),
                (seq.pre_start, seq.pre_len),
                "tile {i}"
            );
            assert!(end <= seq.own_len, "tile {i} ends past its sequence");
            assert_eq!(row0, seq.own_start + q0, "tile {i}: output row");
            let queries = (end - q0).min(ATTENTION_TILE as i32);
            assert!(queries > 0, "tile {i} has no query");
            // The short tiles, and only they, come after the first `count`.
            assert_eq!(
                i >= count,
                queries <= SHORT_TILE,
                "tile {i} in the wrong list"
            );
            for q in q0..q0 + queries {
                seen[(seq.own_start + q) as usize] += 1;
            }
        }
        assert!(
            seen.iter().all(|&n| n == 1),
            "every query exactly once: {seen:?}"
        );
        // Short: 450's first 2 queries, 11, 1, 65's first 1, 80's first 16, 16 (17 is a tile).
        assert_eq!(short, 6, "short tiles");
    }

    /// Whether each tile starting at `starts` holds 1 to 64 queries.
    fn sizes_ok(own_len: i32, starts: &[i32]) -> bool {
        let ends = starts.iter().skip(1).copied().chain([own_len]);
        starts
            .iter()
            .zip(ends)
            .all(|(q0, end)| (1..=64).contains(&(end - q0)))
    }

    #[test]
    fn a_tiling_puts_the_partial_tile_where_the_keys_read_are_fewest() {
        // A prompt's own causal attention: 64-query tiles on the diagonal, the rest last.
        assert_eq!(tile_starts(0, 200), [0, 64, 128, 192]);
        // A 212-token suffix after 200 cached keys: the 20 rest queries first read 4 key
        // tiles, not 7 (22 key tiles in all instead of 25).
        assert_eq!(tile_starts(200, 212), [0, 20, 84, 148]);
        assert_eq!(key_tiles_read(200, 212, &[0, 20, 84, 148]), 22);
        assert_eq!(key_tiles_read(200, 212, &[0, 64, 128, 192]), 25);
        for pre_len in [0, 1, 63, 64, 200, 216, 260, 700] {
            for own_len in 1..=300 {
                let starts = tile_starts(pre_len, own_len);
                let last_first: Vec<i32> = (0..own_len).step_by(64).collect();
                assert!(
                    sizes_ok(own_len, &starts),
                    "{pre_len}+{own_len}: {starts:?}"
                );
                assert_eq!(
                    starts.len(),
                    last_first.len(),
                    "{pre_len}+{own_len}: tile count"
                );
                assert!(
                    key_tiles_read(pre_len, own_len, &starts)
                        <= key_tiles_read(pre_len, own_len, &last_first)
                );
            }
        }
    }
}
