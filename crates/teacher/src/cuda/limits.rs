//! [`EngineLimits`]: what the CUDA engine plans its device memory for (tokens per pass,
//! sequences per pass, prefix tokens cached), derived from a memory budget, and the bytes
//! each part takes. The pass planner (`plan`) cuts work by the same limits.

use super::attention::TILE_BYTES;
use crate::precision::Precision;
use crate::shape::ModelShape;

/// The memory an engine plans for: tokens per pass and prefix tokens cached at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineLimits {
    /// Most packed tokens in one pass.
    pub pass_tokens: usize,
    /// Most sequences in one pass.
    pub pass_sequences: usize,
    /// Most prefix tokens whose keys and values are cached at once.
    pub cache_tokens: usize,
}

/// Tokens per pass the plan aims at: past this, the products gain nothing measurable.
const TARGET_PASS_TOKENS: usize = 65_536;

/// The share of the memory budget the engine plans for (measured on an H200 with a 24 GiB
/// budget: at 80%, nvidia-smi peaked at 37 GB while the SCA ran un-batched beside it).
const ENGINE_SHARE: f64 = 0.65;

/// The cache holds at most this many passes' worth of prefix tokens.
const MAX_CACHE_PASSES: usize = 8;

/// The longest prompt passes are planned for when the model takes longer ones (LLaMA-3:
/// 131,072 positions). TimeKD's prompts are a few hundred tokens.
const PROMPT_CEILING: usize = 8192;

/// The longest prompt the engine takes for a model of `shape`: its context, at most
/// 8,192 tokens. A pass always holds one such prompt.
pub fn longest_prompt(shape: &ModelShape) -> usize {
    shape.max_tokens.min(PROMPT_CEILING)
}

impl EngineLimits {
    /// Limits for `budget_bytes` of device memory: passes of up to 65,536 tokens (less where
    /// a quarter of the budget holds fewer, never under one [`longest_prompt`]) and a cache
    /// of what is left of 65% of the budget after weights and pass buffers, at most eight
    /// passes' worth. The rest is for the SCA (run through Burn on the same GPU), the two
    /// runtimes' contexts and their memory pools.
    pub fn for_budget(
        shape: &ModelShape,
        layers: usize,
        precision: Precision,
        budget_bytes: u64,
    ) -> Self {
        let floor = longest_prompt(shape);
        let per_token = Self::pass_bytes_per_token(shape, precision);
        let quarter = (budget_bytes / 4 / per_token) as usize;
        let pass_tokens = quarter.clamp(floor, TARGET_PASS_TOKENS.max(floor));
        let pass_sequences = (pass_tokens / 8).max(1);
        let fixed = weight_bytes(shape, layers, precision)
            + WORKSPACE_RESERVE
            + pass_tokens as u64 * per_token
            + pass_sequences as u64 * Self::pass_bytes_per_sequence(shape, precision);
        let usable = (budget_bytes as f64 * ENGINE_SHARE) as u64;
        let per_cached = Self::cache_bytes_per_token(shape, layers, precision);
        let cache_tokens = (usable.saturating_sub(fixed) / per_cached) as usize;
        EngineLimits {
            pass_tokens,
            pass_sequences,
            // More cache than a few passes' worth of prefixes buys nothing (groups only need
            // to keep passes full) and would hold most of a large GPU.
            cache_tokens: cache_tokens.clamp(floor, MAX_CACHE_PASSES * pass_tokens),
        }
    }

    /// Half the pass and cache sizes, never under one [`longest_prompt`]; `None` when they
    /// are there already.
    pub fn halved(&self, shape: &ModelShape) -> Option<Self> {
        let floor = longest_prompt(shape);
        let half = EngineLimits {
            pass_tokens: (self.pass_tokens / 2).max(floor),
            pass_sequences: (self.pass_sequences / 2).max(1),
            cache_tokens: (self.cache_tokens / 2).max(floor),
        };
        (half != *self).then_some(half)
    }

    /// Device bytes the engine holds with these limits (weights, pass buffers, cache),
    /// before the per-call output buffer.
    pub fn peak_bytes(&self, shape: &ModelShape, layers: usize, precision: Precision) -> u64 {
        weight_bytes(shape, layers, precision)
            + WORKSPACE_RESERVE
            + self.pass_tokens as u64 * Self::pass_bytes_per_token(shape, precision)
            + self.pass_sequences as u64 * Self::pass_bytes_per_sequence(shape, precision)
            + self.cache_tokens as u64 * Self::cache_bytes_per_token(shape, layers, precision)
    }

    /// Residual, norm output, q|k|v, attention output, the MLP's first product (and SwiGLU's product of its halves); ids, positions, types and the
    /// attention's work lists.
    fn pass_bytes_per_token(shape: &ModelShape, precision: Precision) -> u64 {
        let d = shape.d_model as u64;
        let q = (shape.heads * shape.head_dim) as u64;
        let qkv = q + shape.kv_width() as u64;
        let inner = shape.mlp_width as u64;
        let mlp = if shape.gated_mlp { 3 * inner } else { inner };
        precision.bytes() * (2 * d + qkv + q + mlp) + 4 + 4 + 1 + 12 + 8
    }

    /// The last rows' residual and the per-sequence tables.
    fn pass_bytes_per_sequence(shape: &ModelShape, precision: Precision) -> u64 {
        precision.bytes() * shape.d_model as u64 + 20 + 4 + 12 + TILE_BYTES as u64
    }

    /// k|v of every block, and the type.
    fn cache_bytes_per_token(shape: &ModelShape, layers: usize, precision: Precision) -> u64 {
        layers as u64 * shape.kv_width() as u64 * precision.bytes() + 1
    }
}

/// cuBLASLt's workspace plus slack for the driver's own allocations.
pub(crate) const WORKSPACE_RESERVE: u64 = 64 << 20;

/// f32 embeddings and norms, matrices (and biases) in the compute type, and the rotary
/// tables (cos and sin of every position a prompt may take) for rotary models.
fn weight_bytes(shape: &ModelShape, layers: usize, precision: Precision) -> u64 {
    let d = shape.d_model as u64;
    let per_block = shape.block_params() * precision.bytes() + 16 * d;
    let rotary = if shape.position_rows == 0 {
        longest_prompt(shape) as u64 * shape.head_dim as u64 * 4
    } else {
        0
    };
    shape.embedding_params() * 4 + per_block * layers as u64 + 8 * d + rotary
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Gpt2Config, LlamaConfig, ModelConfig};

    /// GPT-2 small and xl, Llama-3.2-1B and -3B.
    fn presets() -> Vec<ModelShape> {
        let gpt2_xl = Gpt2Config {
            n_embd: 1600,
            n_layer: 48,
            n_head: 25,
            n_inner: 6400,
            ..Gpt2Config::gpt2_small()
        };
        [
            ModelConfig::Gpt2(Gpt2Config::gpt2_small()),
            ModelConfig::Gpt2(gpt2_xl),
            ModelConfig::Llama(LlamaConfig::llama_3_2_1b()),
            ModelConfig::Llama(LlamaConfig::llama_3_2_3b()),
        ]
        .iter()
        .map(ModelConfig::shape)
        .collect()
    }

    #[test]
    fn the_plan_keeps_to_the_engines_share_of_the_budget_and_holds_one_longest_prompt() {
        for shape in presets() {
            for precision in [Precision::F16, Precision::F32] {
                let budget = 24u64 << 30;
                let limits = EngineLimits::for_budget(&shape, shape.layers, precision, budget);
                let peak = limits.peak_bytes(&shape, shape.layers, precision);
                let share = (budget as f64 * ENGINE_SHARE) as u64;
                let longest = longest_prompt(&shape);
                let case = format!(
                    "{} d={} {precision}: {limits:?}",
                    shape.family, shape.d_model
                );
                assert!(limits.pass_tokens >= longest, "{case}");
                assert!(limits.cache_tokens >= longest, "{case}");
                // Over the share only where the floors (one longest prompt) force it.
                if limits.cache_tokens > longest {
                    assert!(peak <= share, "{case}: {peak} > {share}");
                }
            }
        }
    }

    /// The cache keeps keys and values only: with grouped heads (Llama-3.2-3B: 24 query heads
    /// over 8) a cached token costs a third of its `q | k | v` row.
    #[test]
    fn a_cached_token_costs_its_keys_and_values() {
        let llama_3b = &presets()[3];
        let per_token = EngineLimits::cache_bytes_per_token(llama_3b, 28, Precision::F16);
        assert_eq!(per_token, 28 * 2 * 8 * 128 * 2 + 1);
    }

    #[test]
    fn halving_stops_at_one_longest_prompt() {
        let shape = &presets()[2];
        let mut limits = EngineLimits::for_budget(shape, 16, Precision::F16, 24 << 30);
        while let Some(half) = limits.halved(shape) {
            assert!(
                half.pass_tokens < limits.pass_tokens
                    || half.cache_tokens < limits.cache_tokens
                    || half.pass_sequences < limits.pass_sequences
            );
            limits = half;
        }
        assert_eq!(limits.pass_tokens, 8192);
        assert_eq!(limits.cache_tokens, 8192);
        assert_eq!(limits.pass_sequences, 1);
    }
}
