//! Prompt families: prompts that start with the same tokens, run as one shared prefix and a
//! suffix each.
//!
//! The GT and HD prompts of a (window, variable), and those prompts for every output length
//! H of an all-lengths run, all start with the history sentence. With causal attention, and
//! a calibration mask that depends only on the two tokens' own types, the keys and values of
//! those first tokens are the same in every prompt, so a model computes them once (a KV
//! cache) and runs only each prompt's suffix against them. A family's prefix is the longest
//! run of (id, type) pairs all its prompts start with, stopped one token short of the
//! shortest prompt so that each keeps a last token of its own.

use crate::tokenizer::{EncodedPrompt, TokenType};

/// Prompts sharing their first tokens; see the module docs.
#[derive(Debug, Clone)]
pub struct PromptFamily<'p> {
    prompts: Vec<&'p EncodedPrompt>,
    prefix: usize,
}

impl<'p> PromptFamily<'p> {
    /// The family of `prompts` (each non-empty). With `share_prefix` false, or when the
    /// prompts share no first token (or there is only one), the prefix is empty and every
    /// prompt runs whole.
    pub fn new(prompts: Vec<&'p EncodedPrompt>, share_prefix: bool) -> Self {
        let prefix = if share_prefix && prompts.len() > 1 {
            common_prefix(&prompts)
        } else {
            0
        };
        PromptFamily { prompts, prefix }
    }

    /// The prompts, in the order their states are returned.
    pub fn prompts(&self) -> &[&'p EncodedPrompt] {
        &self.prompts
    }

    /// Tokens every prompt starts with (0: nothing is shared).
    pub fn prefix_len(&self) -> usize {
        self.prefix
    }

    /// The shared prefix's ids and types.
    pub fn prefix(&self) -> (&'p [u32], &'p [TokenType]) {
        match self.prompts.first() {
            Some(first) => (&first.ids[..self.prefix], &first.types[..self.prefix]),
            None => (&[], &[]),
        }
    }

    /// Prompt `k`'s tokens after the prefix (its whole tokens when nothing is shared).
    pub fn suffix(&self, k: usize) -> (&'p [u32], &'p [TokenType]) {
        let prompt = self.prompts[k];
        (&prompt.ids[self.prefix..], &prompt.types[self.prefix..])
    }

    /// Tokens the model runs for this family: the prefix once plus every suffix.
    pub fn tokens_run(&self) -> usize {
        self.prefix
            + self
                .prompts
                .iter()
                .map(|p| p.len() - self.prefix)
                .sum::<usize>()
    }
}

/// The longest common run of (id, type) pairs, capped one short of the shortest prompt.
fn common_prefix(prompts: &[&EncodedPrompt]) -> usize {
    let first = prompts[0];
    let mut common = first.len().saturating_sub(1);
    for prompt in &prompts[1..] {
        let same = first
            .ids
            .iter()
            .zip(&first.types)
            .zip(prompt.ids.iter().zip(&prompt.types))
            .take_while(|(a, b)| a == b)
            .count();
        common = common.min(same).min(prompt.len().saturating_sub(1));
    }
    common
}

#[cfg(test)]
mod tests {
    use super::*;
    use TokenType::{Language as L, TimeSeries as T};

    fn prompt(ids: &[u32], types: &[TokenType]) -> EncodedPrompt {
        EncodedPrompt {
            ids: ids.to_vec(),
            types: types.to_vec(),
        }
    }

    #[test]
    fn prefix_is_the_common_run_of_ids_and_types() {
        let a = prompt(&[1, 2, 3, 4, 5], &[L, T, T, L, L]);
        let b = prompt(&[1, 2, 3, 9], &[L, T, T, L]);
        let c = prompt(&[1, 2, 7, 4, 5, 6], &[L, T, T, L, L, L]);
        let family = PromptFamily::new(vec![&a, &b, &c], true);
        assert_eq!(family.prefix_len(), 2);
        assert_eq!(family.prefix(), (&[1u32, 2][..], &[L, T][..]));
        assert_eq!(family.suffix(1), (&[3u32, 9][..], &[T, L][..]));
        assert_eq!(family.tokens_run(), 2 + 3 + 2 + 4);
        // Same ids with another type walk share nothing past the first difference.
        let d = prompt(&[1, 2, 3, 9], &[L, L, T, L]);
        assert_eq!(PromptFamily::new(vec![&a, &d], true).prefix_len(), 1);
    }

    #[test]
    fn every_prompt_keeps_a_token_of_its_own() {
        let a = prompt(&[1, 2, 3], &[L, L, L]);
        let b = prompt(&[1, 2, 3, 4], &[L, L, L, L]);
        let family = PromptFamily::new(vec![&a, &b], true);
        assert_eq!(family.prefix_len(), 2);
        assert_eq!(family.suffix(0).0, &[3]);
    }

    #[test]
    fn no_sharing_when_off_single_or_disjoint() {
        let a = prompt(&[1, 2, 3], &[L, L, L]);
        let b = prompt(&[1, 2, 4], &[L, L, L]);
        let c = prompt(&[5, 2, 3], &[L, L, L]);
        assert_eq!(PromptFamily::new(vec![&a, &b], false).prefix_len(), 0);
        assert_eq!(PromptFamily::new(vec![&a], true).prefix_len(), 0);
        assert_eq!(PromptFamily::new(vec![&a, &c], true).prefix_len(), 0);
        assert_eq!(
            PromptFamily::new(vec![&a, &c], true).suffix(1).0,
            &[5, 2, 3]
        );
    }
}
