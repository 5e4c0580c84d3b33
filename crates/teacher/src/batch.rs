//! Batched last-token forward: many prompts per pass, grouped by padded length.
//!
//! Prompts are sorted by length, padded on the right to a multiple of
//! [`BatchOptions::length_bucket`] (so a whole extraction uses few tensor shapes, which
//! matters for GPU kernel compilation and autotuning) and cut into passes bounded by prompt
//! count and padded-token count. Padding sits after the real tokens, so the causal mask
//! hides it from every real query: results do not depend on how prompts are grouped.
//! Only each prompt's last real position is gathered before the final LayerNorm.
//!
//! Prompts that start with the same tokens ([`PromptFamily`]: the GT and HD prompts of a
//! (window, variable), at one or several output lengths) run their shared prefix once (a KV
//! cache) and only their suffixes against it ([`BurnModel::family_last_token_states`]): about
//! 300 instead of 530 tokens per GT/HD pair at H = 24. Prefixes and suffixes are padded to
//! their own length buckets too, so a prompt's result does not depend on the other prompts of
//! its pass either. Encoders (BERT) see every token, so they run every prompt whole, their
//! padding blocked by the mask.

use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::arch::{self, Architecture};
use crate::burn_model::BurnModel;
use crate::error::TeacherError;
use crate::family::PromptFamily;
use crate::kv::LayerKv;
use crate::mask::{BLOCKED, calibrated_mask};
use crate::tokenizer::{EncodedPrompt, TokenType};

/// How prompts are grouped into forward passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchOptions {
    /// Most prompts (or GT/HD pairs) in one pass.
    pub max_prompts: usize,
    /// Most padded tokens (prompts × padded length) in one pass. Activation memory grows
    /// with this (attention scores with this × heads × padded length).
    pub max_tokens: usize,
    /// Padded lengths are rounded up to a multiple of this (capped at the model's
    /// positions).
    pub length_bucket: usize,
    /// Compute the shared prefix of a GT/HD pair once (KV cache) instead of twice.
    #[serde(default = "share_prefix_default")]
    pub share_prefix: bool,
    /// Passes hold a multiple of this many sequences, padded with repeats of their last one
    /// (results unchanged). On a GPU, 16 keeps the set of tensor shapes (and so kernel
    /// compilations and autotuning runs) small; 1 pads nothing.
    #[serde(default = "one")]
    pub batch_multiple: usize,
}

fn one() -> usize {
    1
}

fn share_prefix_default() -> bool {
    true
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            max_prompts: 64,
            max_tokens: 64 * 384,
            length_bucket: 16,
            share_prefix: true,
            batch_multiple: 1,
        }
    }
}

impl BatchOptions {
    /// `len` rounded up to the length bucket, capped at `max_len`.
    fn padded(&self, len: usize, max_len: usize) -> usize {
        let bucket = self.length_bucket.max(1);
        len.div_ceil(bucket).saturating_mul(bucket).min(max_len)
    }

    /// How many sequences of `len` padded tokens fit one pass (at least one; a multiple of
    /// `batch_multiple` when that many fit).
    fn capacity(&self, len: usize) -> usize {
        let fit = (self.max_tokens / len.max(1)).min(self.max_prompts).max(1);
        let multiple = self.batch_multiple.max(1);
        if fit >= multiple {
            fit / multiple * multiple
        } else {
            fit
        }
    }

    /// `members` padded to a multiple of `batch_multiple` by repeating the last one.
    fn pad_members<T: Copy>(&self, members: &[T]) -> Vec<T> {
        let multiple = self.batch_multiple.max(1);
        let mut out = members.to_vec();
        if let Some(&last) = members.last() {
            out.resize(members.len().div_ceil(multiple) * multiple, last);
        }
        out
    }
}

/// One planned forward pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedBatch {
    /// Indices of its prompts in the caller's list, shortest first.
    pub prompts: Vec<usize>,
    /// The length every prompt is padded to.
    pub padded_len: usize,
}

/// Groups prompts of `lengths` (each ≥ 1 and ≤ `max_len`) into passes: same padded length
/// within a pass, at most `max_prompts` prompts and `max_tokens` padded tokens (but at least
/// one prompt) each. Every index appears exactly once.
pub fn plan_batches(
    lengths: &[usize],
    max_len: usize,
    options: &BatchOptions,
) -> Vec<PlannedBatch> {
    let padded = |len: usize| options.padded(len, max_len);
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| (padded(lengths[i]), lengths[i], i));
    let mut batches: Vec<PlannedBatch> = Vec::new();
    for i in order {
        let len = padded(lengths[i]);
        match batches.last_mut() {
            Some(b) if b.padded_len == len && b.prompts.len() < options.capacity(len) => {
                b.prompts.push(i)
            }
            _ => batches.push(PlannedBatch {
                prompts: vec![i],
                padded_len: len,
            }),
        }
    }
    batches
}

/// The token counts of a GT/HD pair split at its shared prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairLengths {
    /// Tokens (ids and types) both prompts start with; ≥ 1.
    pub prefix: usize,
    /// GT tokens after the prefix; ≥ 1.
    pub gt_suffix: usize,
    /// HD tokens after the prefix; ≥ 1.
    pub hd_suffix: usize,
}

impl PairLengths {
    /// The split of `gt` and `hd`, or `None` when they share no first token. The prefix
    /// stops one token short of the shorter prompt so that each keeps a last token of its
    /// own.
    pub fn of(gt: &EncodedPrompt, hd: &EncodedPrompt) -> Option<Self> {
        let common = gt
            .ids
            .iter()
            .zip(&gt.types)
            .zip(hd.ids.iter().zip(&hd.types))
            .take_while(|(a, b)| a == b)
            .count();
        let prefix = common
            .min(gt.len().saturating_sub(1))
            .min(hd.len().saturating_sub(1));
        (prefix > 0).then(|| PairLengths {
            prefix,
            gt_suffix: gt.len() - prefix,
            hd_suffix: hd.len() - prefix,
        })
    }
}

/// One pass of the family path: families whose prefixes share a padded length, their
/// prefixes run once, then groups of their suffixes against that cache.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FamilyPass {
    /// Indices of its families in the caller's list.
    families: Vec<usize>,
    /// The length every prefix is padded to.
    prefix_len: usize,
    /// Suffix passes: (family position in `families`, prompt index) members, padded length.
    groups: Vec<(Vec<(usize, usize)>, usize)>,
}

/// Groups families (their prefix lengths and suffix lengths, prefixes ≥ 1) into passes of
/// one padded prefix length, and each pass's suffixes into groups of one padded suffix
/// length. A pass holds as many families, and a group as many suffixes, as fit a prompt of
/// the padded prefix plus the (longest) padded suffix under `options`. Every (family,
/// prompt) appears exactly once.
fn plan_family_passes(
    families: &[(usize, Vec<usize>)],
    max_len: usize,
    options: &BatchOptions,
) -> Vec<FamilyPass> {
    let padded = |len: usize| options.padded(len, max_len);
    let longest = |i: usize| families[i].1.iter().map(|&n| padded(n)).max().unwrap_or(1);
    let mut order: Vec<usize> = (0..families.len()).collect();
    order.sort_by_key(|&i| (padded(families[i].0), i));
    let mut passes: Vec<(Vec<usize>, usize, usize)> = Vec::new(); // families, prefix, longest
    for i in order {
        let (p, n) = (padded(families[i].0), longest(i));
        match passes.last_mut() {
            Some((members, prefix, widest))
                if *prefix == p && members.len() < options.capacity(p + n.max(*widest)) =>
            {
                members.push(i);
                *widest = n.max(*widest);
            }
            _ => passes.push((vec![i], p, n)),
        }
    }
    passes
        .into_iter()
        .map(|(members, prefix_len, _)| {
            let mut items: Vec<(usize, usize, usize)> = members
                .iter()
                .enumerate()
                .flat_map(|(pos, &f)| {
                    families[f]
                        .1
                        .iter()
                        .enumerate()
                        .map(move |(k, &n)| (padded(n), pos, k))
                })
                .collect();
            items.sort_unstable();
            let mut groups: Vec<(Vec<(usize, usize)>, usize)> = Vec::new();
            for (len, pos, k) in items {
                match groups.last_mut() {
                    Some((group, l))
                        if *l == len && group.len() < options.capacity(prefix_len + len) =>
                    {
                        group.push((pos, k))
                    }
                    _ => groups.push((vec![(pos, k)], len)),
                }
            }
            FamilyPass {
                families: members,
                prefix_len,
                groups,
            }
        })
        .collect()
}

/// Right-padded ids and types of token ranges of several prompts, for one pass.
struct PaddedTokens {
    ids: Vec<u32>,
    types: Vec<TokenType>,
}

impl PaddedTokens {
    /// `prompts[k].ids[ranges[k]]` (and types), each padded to `len`.
    fn new<'p>(
        parts: impl Iterator<Item = (&'p EncodedPrompt, std::ops::Range<usize>)>,
        len: usize,
    ) -> Self {
        let mut out = PaddedTokens {
            ids: Vec::new(),
            types: Vec::new(),
        };
        for (prompt, range) in parts {
            let pad = len - range.len();
            out.ids.extend_from_slice(&prompt.ids[range.clone()]);
            out.ids.extend(std::iter::repeat_n(0, pad));
            out.types.extend_from_slice(&prompt.types[range]);
            out.types
                .extend(std::iter::repeat_n(TokenType::Language, pad));
        }
        out
    }
}

impl<A: Architecture> BurnModel<A> {
    /// The calibrated final state (after the final norm) of the LAST token of every prompt:
    /// [prompts, d], in the order given. Prompts are batched per `options`.
    pub fn last_token_states(
        &self,
        prompts: &[&EncodedPrompt],
        options: &BatchOptions,
    ) -> Result<Tensor<2>, TeacherError> {
        for (i, p) in prompts.iter().enumerate() {
            self.check_length(p, || format!("prompt {i} of the batch"))?;
        }
        if prompts.is_empty() {
            return Ok(Tensor::zeros([0, self.d_model()], self.device()));
        }
        let lengths: Vec<usize> = prompts.iter().map(|p| p.len()).collect();
        let plan = plan_batches(&lengths, self.max_tokens(), options);
        let mut states = Vec::with_capacity(plan.len());
        let mut order = Vec::with_capacity(prompts.len());
        for batch in &plan {
            order.extend_from_slice(&batch.prompts);
            let members: Vec<&EncodedPrompt> = options
                .pad_members(&batch.prompts)
                .iter()
                .map(|&i| prompts[i])
                .collect();
            let states_padded = self.forward_batch(&members, batch.padded_len);
            states.push(states_padded.narrow(0, 0, batch.prompts.len()));
        }
        Ok(self.in_caller_order(states, &order))
    }

    /// The last-token states of GT/HD prompt pairs: ([pairs, d] of the GT prompts,
    /// [pairs, d] of the HD prompts), in the order given. With
    /// [`BatchOptions::share_prefix`], the tokens a pair starts with run once (see the
    /// module docs); the results equal [`last_token_states`](Self::last_token_states) up to
    /// float rounding.
    pub fn pair_last_token_states(
        &self,
        pairs: &[(&EncodedPrompt, &EncodedPrompt)],
        options: &BatchOptions,
    ) -> Result<(Tensor<2>, Tensor<2>), TeacherError> {
        let families: Vec<PromptFamily> = pairs
            .iter()
            .map(|&(gt, hd)| PromptFamily::new(vec![gt, hd], options.share_prefix))
            .collect();
        let states = self.family_last_token_states(&families, options)?; // [2·pairs, d]
        let n = pairs.len();
        if n == 0 {
            return Ok((states.clone(), states));
        }
        let rows = |first: i64| {
            let index: Vec<i64> = (0..n as i64).map(|i| 2 * i + first).collect();
            Tensor::<1, Int>::from_data(TensorData::new(index, [n]), self.device())
        };
        Ok((states.clone().select(0, rows(0)), states.select(0, rows(1))))
    }

    /// The last-token states of every prompt of `families`, family by family in the order
    /// given: [Σ prompts, d]. A family's shared prefix runs once (see the module docs); the
    /// results equal [`last_token_states`](Self::last_token_states) up to float rounding, and
    /// do not depend on how many families come together. Encoders run every prompt whole.
    pub fn family_last_token_states(
        &self,
        families: &[PromptFamily<'_>],
        options: &BatchOptions,
    ) -> Result<Tensor<2>, TeacherError> {
        let mut first_row = Vec::with_capacity(families.len());
        let mut rows = 0;
        for (f, family) in families.iter().enumerate() {
            first_row.push(rows);
            for (k, prompt) in family.prompts().iter().enumerate() {
                self.check_length(prompt, || format!("prompt {k} of family {f}"))?;
            }
            rows += family.prompts().len();
        }
        if rows == 0 {
            return Ok(Tensor::zeros([0, self.d_model()], self.device()));
        }
        let (shared, plain): (Vec<usize>, Vec<usize>) =
            (0..families.len()).partition(|&f| A::CAUSAL && families[f].prefix_len() > 0);
        let mut parts = Vec::new();
        let mut order = Vec::with_capacity(rows);
        let lengths: Vec<(usize, Vec<usize>)> = shared
            .iter()
            .map(|&f| {
                let family = &families[f];
                let suffixes = (0..family.prompts().len())
                    .map(|k| family.suffix(k).0.len())
                    .collect();
                (family.prefix_len(), suffixes)
            })
            .collect();
        for pass in plan_family_passes(&lengths, self.max_tokens(), options) {
            let members: Vec<&PromptFamily> = pass
                .families
                .iter()
                .map(|&i| &families[shared[i]])
                .collect();
            for (group, states) in self.forward_family_pass(&members, &pass) {
                parts.push(states);
                order.extend(
                    group
                        .iter()
                        .map(|&(pos, k)| first_row[shared[pass.families[pos]]] + k),
                );
            }
        }
        if !plain.is_empty() {
            let prompts: Vec<&EncodedPrompt> = plain
                .iter()
                .flat_map(|&f| families[f].prompts().iter().copied())
                .collect();
            parts.push(self.last_token_states(&prompts, options)?);
            order.extend(
                plain
                    .iter()
                    .flat_map(|&f| (0..families[f].prompts().len()).map(move |k| (f, k)))
                    .map(|(f, k)| first_row[f] + k),
            );
        }
        Ok(self.in_caller_order(parts, &order))
    }

    /// Concatenates per-pass rows (row r belongs to caller index `order[r]`) back into the
    /// caller's order.
    fn in_caller_order(&self, parts: Vec<Tensor<2>>, order: &[usize]) -> Tensor<2> {
        let mut position_of = vec![0i64; order.len()];
        for (row, &i) in order.iter().enumerate() {
            position_of[i] = row as i64;
        }
        let back =
            Tensor::<1, Int>::from_data(TensorData::new(position_of, [order.len()]), self.device());
        Tensor::cat(parts, 0).select(0, back)
    }

    /// One pass: [members, d] last-token states of `members`, padded to `t` tokens.
    fn forward_batch(&self, members: &[&EncodedPrompt], t: usize) -> Tensor<2> {
        let b = members.len();
        let members = members.iter().copied();
        let tokens = PaddedTokens::new(members.clone().map(|p| (p, 0..p.len())), t);
        let ids = self.ids_tensor(&tokens.ids, [b, t]);
        let types = self.types_tensor(tokens.types.into_iter(), [b, t]);
        let lengths: Vec<usize> = members.map(|p| p.len()).collect();
        let mask = self.prompt_mask(types, Some(&lengths));
        let last: Vec<usize> = lengths.iter().map(|len| len - 1).collect();
        let positions = self.positions(0..t);
        arch::last_states(
            &self.module,
            ids,
            &positions,
            &mask,
            None,
            self.precision(),
            &last,
        )
    }

    /// One family pass: the prefixes' keys and values, then each suffix group against them.
    /// Returns every group's members with their states [members, d].
    fn forward_family_pass(
        &self,
        families: &[&PromptFamily<'_>],
        pass: &FamilyPass,
    ) -> Vec<(Vec<(usize, usize)>, Tensor<2>)> {
        let (b, pp) = (families.len(), pass.prefix_len);
        let prefix = PaddedTokens::new(
            families.iter().map(|f| (f.prompts()[0], 0..f.prefix_len())),
            pp,
        );
        let prefix_types = self.types_tensor(prefix.types.into_iter(), [b, pp]);
        let mask = calibrated_mask(prefix_types.clone(), prefix_types.clone(), None);
        let cache = arch::prefix_kv(
            &self.module,
            self.ids_tensor(&prefix.ids, [b, pp]),
            &self.positions(0..pp),
            &mask,
            self.precision(),
        );
        pass.groups
            .iter()
            .map(|(group, len)| {
                let in_order = group.len() == b && group.iter().enumerate().all(|(i, m)| m.0 == i);
                let (group_cache, group_types) = if in_order {
                    (cache.clone(), prefix_types.clone())
                } else {
                    let index: Vec<i64> = group.iter().map(|&(pos, _)| pos as i64).collect();
                    let rows = Tensor::<1, Int>::from_data(
                        TensorData::new(index, [group.len()]),
                        self.device(),
                    );
                    (
                        cache.iter().map(|kv| kv.select(rows.clone())).collect(),
                        prefix_types.clone().select(0, rows),
                    )
                };
                let suffixes = group.iter().map(|&(pos, k)| {
                    let family = families[pos];
                    (
                        family.prompts()[k],
                        family.prefix_len()..family.prompts()[k].len(),
                    )
                });
                let prefixes: Vec<usize> = group
                    .iter()
                    .map(|&(pos, _)| families[pos].prefix_len())
                    .collect();
                let states =
                    self.suffix_states(suffixes, &prefixes, &group_types, &group_cache, *len);
                (group.clone(), states)
            })
            .collect()
    }

    /// Last-token states of prompt suffixes (`prompt`, token range after its prefix) run
    /// against the cached keys and values of their prefixes (`prefixes[k]` real tokens of
    /// `prefix_types`' padded width), suffixes padded to `len`.
    fn suffix_states<'p>(
        &self,
        suffixes: impl Iterator<Item = (&'p EncodedPrompt, std::ops::Range<usize>)> + Clone,
        prefixes: &[usize],
        prefix_types: &Tensor<2>,
        cache: &[LayerKv],
        len: usize,
    ) -> Tensor<2> {
        let [b, pp] = prefix_types.dims();
        let tokens = PaddedTokens::new(suffixes.clone(), len);
        let last_position = self.max_tokens() as i64 - 1;
        let mut positions = Vec::with_capacity(b * len);
        let mut penalty = vec![0.0f32; b * (pp + len)];
        for (k, &p) in prefixes.iter().enumerate() {
            positions.extend((p..p + len).map(|j| (j as i64).min(last_position)));
            penalty[k * (pp + len) + p..k * (pp + len) + pp].fill(BLOCKED as f32);
        }
        let types = self.types_tensor(tokens.types.into_iter(), [b, len]);
        let key_types = Tensor::cat(vec![prefix_types.clone(), types.clone()], 1);
        let penalty = Tensor::from_data(TensorData::new(penalty, [b, pp + len]), self.device());
        let mask = calibrated_mask(types, key_types, Some(penalty));
        let positions =
            Tensor::<2, Int>::from_data(TensorData::new(positions, [b, len]), self.device());
        let last: Vec<usize> = suffixes.map(|(_, range)| range.len() - 1).collect();
        let ids = self.ids_tensor(&tokens.ids, [b, len]);
        arch::last_states(
            &self.module,
            ids,
            &positions,
            &mask,
            Some(cache),
            self.precision(),
            &last,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_covers_every_prompt_once_with_bucketed_lengths() {
        let lengths = [280, 232, 300, 33, 1, 64, 65, 1000];
        let options = BatchOptions {
            max_prompts: 2,
            max_tokens: 10_000,
            length_bucket: 32,
            share_prefix: true,
            batch_multiple: 1,
        };
        let plan = plan_batches(&lengths, 1000, &options);
        let mut seen: Vec<usize> = plan.iter().flat_map(|b| b.prompts.clone()).collect();
        seen.sort();
        assert_eq!(seen, (0..lengths.len()).collect::<Vec<_>>());
        for b in &plan {
            assert!(b.prompts.len() <= 2);
            assert!(
                b.padded_len.is_multiple_of(32) || b.padded_len == 1000,
                "{b:?}"
            );
            for &i in &b.prompts {
                assert!(lengths[i] <= b.padded_len && b.padded_len - lengths[i] < 32);
            }
        }
        // 280 and 288 share the bucket 288; 1000 is capped at the model's positions.
        let plan = plan_batches(&[280, 288, 1000], 1000, &BatchOptions::default());
        assert_eq!(plan[0].prompts, vec![0, 1]);
        assert_eq!(plan[1].padded_len, 1000);
    }

    #[test]
    fn token_budget_limits_batch_size() {
        let options = BatchOptions {
            max_prompts: 100,
            max_tokens: 64,
            length_bucket: 32,
            share_prefix: true,
            batch_multiple: 1,
        };
        let plan = plan_batches(&[30; 5], 1024, &options);
        assert_eq!(
            plan.iter().map(|b| b.prompts.len()).collect::<Vec<_>>(),
            [2, 2, 1]
        );
        // A prompt longer than the budget still gets a pass of its own.
        let plan = plan_batches(&[100], 1024, &options);
        assert_eq!(plan[0].prompts, vec![0]);
    }
}
