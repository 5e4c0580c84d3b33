//! How many padded tokens one forward pass may hold under a memory budget.
//!
//! The estimate counts what a calibrated GPT-2 forward keeps alive at its peak, per padded
//! token of a pass whose prompts are padded to `padded_len`: the residual stream and its
//! LayerNorm/attention/MLP intermediates (≈ 16·d values), the attention scores, the
//! calibration mask added to them and the softmax output (3 · heads · padded_len values),
//! and the broadcast mask itself (2 · padded_len). Weights are counted once. The result is
//! then halved: allocator fragmentation and kernel workspaces are not in the formula.

use timekd_teacher::Gpt2Config;

/// Fraction of the budget the formula may plan for.
const SAFETY: f64 = 0.5;

/// Bytes of activations per padded token at `padded_len`.
pub fn bytes_per_token(config: &Gpt2Config, padded_len: usize, value_bytes: u64) -> u64 {
    let values = 16 * config.n_embd + 3 * config.n_head * padded_len + 2 * padded_len;
    values as u64 * value_bytes
}

/// Bytes of the weights of `layers` blocks plus embeddings.
pub fn weight_bytes(config: &Gpt2Config, layers: usize, value_bytes: u64) -> u64 {
    let d = config.n_embd as u64;
    let inner = config.n_inner as u64;
    let per_block = 4 * d * d + 2 * d * inner + 10 * d + inner;
    let embeddings = (config.vocab_size + config.n_positions) as u64 * d;
    (per_block * layers as u64 + embeddings) * value_bytes
}

/// The plan for one budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenPlan {
    /// Most padded tokens per pass.
    pub max_tokens: usize,
    /// Estimated peak bytes of one full pass at the longest padded length.
    pub peak_bytes: u64,
}

/// Most padded tokens per pass such that a pass at `longest_padded` stays within
/// `budget_bytes`; at least one prompt's worth.
pub fn plan(
    config: &Gpt2Config,
    layers: usize,
    longest_padded: usize,
    value_bytes: u64,
    budget_bytes: u64,
) -> TokenPlan {
    let per_token = bytes_per_token(config, longest_padded, value_bytes);
    let usable = (budget_bytes as f64 * SAFETY) as u64;
    let free = usable.saturating_sub(weight_bytes(config, layers, value_bytes));
    let max_tokens = ((free / per_token) as usize).max(longest_padded);
    TokenPlan {
        max_tokens,
        peak_bytes: weight_bytes(config, layers, value_bytes) + max_tokens as u64 * per_token,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpt2_small() -> Gpt2Config {
        Gpt2Config::from_json(
            r#"{"vocab_size":50257,"n_positions":1024,"n_embd":768,"n_layer":12,"n_head":12}"#,
        )
        .unwrap()
    }

    #[test]
    fn plan_stays_within_the_budget_and_shrinks_with_length() {
        let config = gpt2_small();
        let budget = 24u64 << 30;
        let short = plan(&config, 12, 320, 4, budget);
        let long = plan(&config, 12, 672, 4, budget);
        assert!(short.peak_bytes <= budget / 2, "{short:?}");
        assert!(long.peak_bytes <= budget / 2, "{long:?}");
        assert!(long.max_tokens < short.max_tokens);
        // Half precision doubles the tokens that fit, less the weights' share.
        let half = plan(&config, 12, 320, 2, budget);
        assert!(half.max_tokens > short.max_tokens * 19 / 10);
    }

    #[test]
    fn a_tiny_budget_still_allows_one_prompt() {
        let config = gpt2_small();
        let p = plan(&config, 12, 640, 4, 1 << 20);
        assert_eq!(p.max_tokens, 640);
    }
}
