//! How many padded tokens one forward pass may hold under a memory budget.
//!
//! The estimate counts what a calibrated GPT-2 forward keeps alive at its peak, per padded
//! token of a pass whose prompts are padded to `padded_len`:
//! - in f32 whatever the precision: the residual stream and LayerNorm outputs (≈ 4·d
//!   values), the attention scores, their masked copy and the softmax's temporaries (max,
//!   shifted, exp, sum, quotient: 5 · heads · padded_len with un-fused kernels) and the mask
//!   (padded_len);
//! - in the compute type: the products' inputs and outputs (≈ 12·d: q, k, v, context, MLP
//!   hidden and its GELU), the softmax cast for the value product (heads · padded_len), and
//!   the cached keys and values of every block (2 · layers · d) that a shared prefix keeps
//!   alive while its suffixes run;
//! - f32-split products hold the hi/lo parts of both operands: twice the compute-type share.
//!
//! Weights are counted once. The plan then uses only 35% of the budget: the GPU memory pool
//! holds about twice what the formula counts (measured on an H100, f16, budget 24 GiB, plan
//! at 50%: nvidia-smi peaks of 25.9 GiB for ETTh1 H = 24, 26.4 GiB for weather H = 24,
//! 23.3 GiB for ETTh1 H = 192).

use timekd_teacher::{Gpt2Config, Precision};

/// Fraction of the budget the formula may plan for.
const SAFETY: f64 = 0.35;

/// Bytes of activations (and cached keys/values) per padded token at `padded_len`.
pub fn bytes_per_token(
    config: &Gpt2Config,
    layers: usize,
    padded_len: usize,
    precision: Precision,
) -> u64 {
    let (d, heads) = (config.n_embd as u64, config.n_head as u64);
    let len = padded_len as u64;
    let f32_values = 4 * d + 5 * heads * len + len;
    let products = 12 * d + heads * len;
    let products = if precision == Precision::F32Split {
        2 * products
    } else {
        products
    };
    let cache = 2 * layers as u64 * d;
    4 * f32_values + precision.bytes() * (products + cache)
}

/// Bytes of the weights of `layers` blocks (in the compute type) plus embeddings (f32).
pub fn weight_bytes(config: &Gpt2Config, layers: usize, precision: Precision) -> u64 {
    let d = config.n_embd as u64;
    let inner = config.n_inner as u64;
    let per_block = 4 * d * d + 2 * d * inner + 10 * d + inner;
    let embeddings = (config.vocab_size + config.n_positions) as u64 * d;
    per_block * layers as u64 * precision.bytes() + embeddings * 4
}

/// The plan for one budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenPlan {
    /// Most padded tokens per pass.
    pub max_tokens: usize,
    /// Estimated peak bytes of one full pass at the longest padded length.
    pub peak_bytes: u64,
}

/// The estimated peak bytes of passes of `max_tokens` padded tokens at `padded_len`.
pub fn peak_bytes(
    config: &Gpt2Config,
    layers: usize,
    padded_len: usize,
    precision: Precision,
    max_tokens: usize,
) -> u64 {
    weight_bytes(config, layers, precision)
        + max_tokens as u64 * bytes_per_token(config, layers, padded_len, precision)
}

/// Most padded tokens per pass such that a pass at `longest_padded` stays within
/// `budget_bytes`; at least one prompt's worth.
pub fn plan(
    config: &Gpt2Config,
    layers: usize,
    longest_padded: usize,
    precision: Precision,
    budget_bytes: u64,
) -> TokenPlan {
    let per_token = bytes_per_token(config, layers, longest_padded, precision);
    let usable = (budget_bytes as f64 * SAFETY) as u64;
    let free = usable.saturating_sub(weight_bytes(config, layers, precision));
    let max_tokens = ((free / per_token) as usize).max(longest_padded);
    TokenPlan {
        max_tokens,
        peak_bytes: peak_bytes(config, layers, longest_padded, precision, max_tokens),
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
        let short = plan(&config, 12, 320, Precision::F32, budget);
        let long = plan(&config, 12, 672, Precision::F32, budget);
        assert!(short.peak_bytes <= budget / 2, "{short:?}");
        assert!(long.peak_bytes <= budget / 2, "{long:?}");
        assert!(long.max_tokens < short.max_tokens);
        // Half precision fits more tokens; the f32 parts keep it under twice as many.
        let half = plan(&config, 12, 320, Precision::Bf16, budget);
        assert!(
            half.max_tokens > short.max_tokens * 13 / 10,
            "{half:?} {short:?}"
        );
        assert!(half.max_tokens < short.max_tokens * 2);
        // Split f32 holds hi/lo parts: fewer tokens than plain f32.
        let split = plan(&config, 12, 320, Precision::F32Split, budget);
        assert!(split.max_tokens < short.max_tokens);
    }

    #[test]
    fn a_tiny_budget_still_allows_one_prompt() {
        let config = gpt2_small();
        let p = plan(&config, 12, 640, Precision::F32, 1 << 20);
        assert_eq!(p.max_tokens, 640);
    }
}
