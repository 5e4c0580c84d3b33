//! Batched last-token forward: many prompts per pass, grouped by padded length.
//!
//! Prompts are sorted by length, padded on the right to a multiple of
//! [`BatchOptions::length_bucket`] (so a whole extraction uses few tensor shapes, which
//! matters for GPU kernel compilation and autotuning) and cut into passes bounded by prompt
//! count and padded-token count. Padding sits after the real tokens, so the causal mask
//! hides it from every real query: results do not depend on how prompts are grouped.
//! Only each prompt's last real position is gathered before the final LayerNorm.

use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::TeacherError;
use crate::gpt2::Gpt2;
use crate::tokenizer::{EncodedPrompt, TokenType};

/// How prompts are grouped into forward passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchOptions {
    /// Most prompts in one pass.
    pub max_prompts: usize,
    /// Most padded tokens (prompts × padded length) in one pass. Activation memory grows
    /// with this (attention scores with this × heads × padded length).
    pub max_tokens: usize,
    /// Padded lengths are rounded up to a multiple of this (capped at the model's
    /// positions).
    pub length_bucket: usize,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            max_prompts: 64,
            max_tokens: 64 * 384,
            length_bucket: 32,
        }
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
    let bucket = options.length_bucket.max(1);
    let padded = |len: usize| len.div_ceil(bucket).saturating_mul(bucket).min(max_len);
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| (padded(lengths[i]), lengths[i], i));
    let mut batches: Vec<PlannedBatch> = Vec::new();
    for i in order {
        let len = padded(lengths[i]);
        let cap = (options.max_tokens / len).min(options.max_prompts).max(1);
        match batches.last_mut() {
            Some(b) if b.padded_len == len && b.prompts.len() < cap => b.prompts.push(i),
            _ => batches.push(PlannedBatch {
                prompts: vec![i],
                padded_len: len,
            }),
        }
    }
    batches
}

impl Gpt2 {
    /// The calibrated final state (after `ln_f`) of the LAST token of every prompt:
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
        let mut position_of = vec![0i64; prompts.len()];
        let mut next = 0i64;
        for batch in &plan {
            for &i in &batch.prompts {
                position_of[i] = next;
                next += 1;
            }
            states.push(self.forward_batch(prompts, batch));
        }
        let stacked = Tensor::cat(states, 0); // [prompts, d] in plan order
        let back = Tensor::<1, Int>::from_data(
            TensorData::new(position_of, [prompts.len()]),
            self.device(),
        );
        Ok(stacked.select(0, back))
    }

    /// One pass: [batch prompts, d] last-token states, in `batch.prompts` order.
    fn forward_batch(&self, prompts: &[&EncodedPrompt], batch: &PlannedBatch) -> Tensor<2> {
        let (b, t, d) = (batch.prompts.len(), batch.padded_len, self.d_model());
        let mut ids = Vec::with_capacity(b * t);
        let mut types = Vec::with_capacity(b * t);
        let mut last = Vec::with_capacity(b * d);
        for &i in &batch.prompts {
            let p = prompts[i];
            let pad = t - p.len();
            ids.extend_from_slice(&p.ids);
            ids.extend(std::iter::repeat_n(0, pad));
            types.extend(p.types.iter().copied());
            types.extend(std::iter::repeat_n(TokenType::Language, pad));
            last.extend(std::iter::repeat_n(p.len() as i64 - 1, d));
        }
        let ids = self.ids_tensor(&ids, [b, t]);
        let types = self.types_tensor(types.into_iter(), [b, t]);
        let hidden = self.module.blocks_forward(ids, Some(types)); // [b, t, d]
        let last = Tensor::<3, Int>::from_data(TensorData::new(last, [b, 1, d]), self.device());
        let picked = hidden.gather(1, last).reshape([b, d]);
        self.module.final_norm(picked)
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
