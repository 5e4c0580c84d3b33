//! The memory budget per device ([`MemoryBudget`], sizes as [`MemSize`]) and how many
//! padded tokens one forward pass may hold under it ([`plan`]).
//!
//! The estimate counts what a calibrated forward keeps alive at its peak, per padded token of
//! a pass whose prompts are padded to `padded_len` (written for GPT-2; the same terms for
//! every family, from its [`ModelShape`]):
//! - in f32 whatever the precision: the residual stream and LayerNorm outputs (≈ 4·d
//!   values), the attention scores, their masked copy and the softmax's temporaries (max,
//!   shifted, exp, sum, quotient: 5 · heads · padded_len with un-fused kernels) and the mask
//!   (padded_len);
//! - in the compute type: the products' inputs and outputs (≈ 4·d for q, k, v and context,
//!   plus 2 · inner for the MLP hidden and its activation, 3 · inner for a gated MLP), the
//!   softmax cast for the value product (heads · padded_len), and the cached keys and values
//!   of every block (layers · 2 · kv_heads · head_dim) that a shared prefix keeps alive while
//!   its suffixes run;
//! - f32-split products hold the hi/lo parts of both operands: twice the compute-type share.
//!
//! Weights are counted once. The plan then uses only 35% of the budget: the GPU memory pool
//! holds about twice what the formula counts (measured on an H100, f16, budget 24 GiB, plan
//! at 50%: nvidia-smi peaks of 25.9 GiB for ETTh1 H = 24, 26.4 GiB for weather H = 24,
//! 23.3 GiB for ETTh1 H = 192).

use std::fmt;
use std::str::FromStr;

use crate::device::{DeviceSpec, gpu_free_memory};
use crate::precision::Precision;
use crate::shape::ModelShape;

/// Fraction of the budget the formula may plan for.
const SAFETY: f64 = 0.35;

/// Bytes of activations (and cached keys/values) per padded token at `padded_len`.
pub fn bytes_per_token(
    shape: &ModelShape,
    layers: usize,
    padded_len: usize,
    precision: Precision,
) -> u64 {
    let (d, heads) = (shape.d_model as u64, shape.heads as u64);
    let len = padded_len as u64;
    let f32_values = 4 * d + 5 * heads * len + len;
    let mlp_values = if shape.gated_mlp { 3 } else { 2 } * shape.mlp_width as u64;
    let products = 4 * d + mlp_values + heads * len;
    let products = if precision == Precision::F32Split {
        2 * products
    } else {
        products
    };
    let cache = (layers * shape.kv_width()) as u64;
    4 * f32_values + precision.bytes() * (products + cache)
}

/// Bytes of the weights of `layers` blocks (in the compute type) plus embeddings (f32).
pub fn weight_bytes(shape: &ModelShape, layers: usize, precision: Precision) -> u64 {
    shape.block_params() * layers as u64 * precision.bytes() + shape.embedding_params() * 4
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
    shape: &ModelShape,
    layers: usize,
    padded_len: usize,
    precision: Precision,
    max_tokens: usize,
) -> u64 {
    weight_bytes(shape, layers, precision)
        + max_tokens as u64 * bytes_per_token(shape, layers, padded_len, precision)
}

/// Most padded tokens per pass such that a pass at `longest_padded` stays within
/// `budget_bytes`; at least one prompt's worth.
pub fn plan(
    shape: &ModelShape,
    layers: usize,
    longest_padded: usize,
    precision: Precision,
    budget_bytes: u64,
) -> TokenPlan {
    let per_token = bytes_per_token(shape, layers, longest_padded, precision);
    let usable = (budget_bytes as f64 * SAFETY) as u64;
    let free = usable.saturating_sub(weight_bytes(shape, layers, precision));
    let max_tokens = ((free / per_token) as usize).max(longest_padded);
    TokenPlan {
        max_tokens,
        peak_bytes: peak_bytes(shape, layers, longest_padded, precision, max_tokens),
    }
}

/// A memory size such as `--max-gpu-mem 24GiB`, in bytes.
///
/// Binary units (`KiB`, `MiB`, `GiB`, `TiB`), decimal units (`KB`, `MB`, `GB`, `TB`) and `B`,
/// case-insensitive, with an optional fraction (`1.5GiB`) and space (`24 GiB`). A unit is
/// required: a bare number is too easy to get wrong by a factor of 2^30.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MemSize(u64);

impl MemSize {
    const UNITS: [(&'static str, u64); 9] = [
        ("b", 1),
        ("kib", 1 << 10),
        ("mib", 1 << 20),
        ("gib", 1 << 30),
        ("tib", 1 << 40),
        ("kb", 1_000),
        ("mb", 1_000_000),
        ("gb", 1_000_000_000),
        ("tb", 1_000_000_000_000),
    ];

    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for MemSize {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = |why: &str| format!("invalid memory size `{text}`: {why}");
        let trimmed = text.trim();
        let split = trimmed
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(trimmed.len());
        let (number, unit) = trimmed.split_at(split);
        let unit = unit.trim().to_ascii_lowercase();
        if number.is_empty() {
            return Err(invalid(
                "expected a number and a unit, e.g. 24GiB or 512MiB",
            ));
        }
        if unit.is_empty() {
            return Err(invalid("a unit is required, e.g. 24GiB or 512MiB"));
        }
        let Some(&(_, scale)) = Self::UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(invalid(
                "unknown unit: use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB",
            ));
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
            return Err(invalid("not a number"));
        }
        let too_large = || invalid("too large");
        let whole: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| too_large())?
        };
        // The fraction exactly, as an integer over a power of ten, so `1.25GiB` is 1.25 * 2^30
        // with no float rounding; anything below one byte is dropped.
        if fraction.len() > 18 {
            return Err(invalid("too many decimals"));
        }
        let fraction_bytes = if fraction.is_empty() {
            0
        } else {
            let numerator: u128 = fraction.parse().map_err(|_| invalid("not a number"))?;
            let denominator = 10u128.pow(fraction.len() as u32);
            // < scale, so it fits a u64.
            (numerator * u128::from(scale) / denominator) as u64
        };
        let bytes = whole
            .checked_mul(scale)
            .and_then(|bytes| bytes.checked_add(fraction_bytes))
            .ok_or_else(too_large)?;
        if bytes == 0 {
            return Err(invalid("must be more than zero"));
        }
        Ok(MemSize(bytes))
    }
}

impl fmt::Display for MemSize {
    /// In the largest binary unit that keeps at least one whole unit, with up to two decimals:
    /// `24 GiB`, `1.5 GiB`, `512 MiB`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, scale) = [
            ("TiB", 1u64 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ]
        .into_iter()
        .find(|&(_, scale)| self.0 >= scale)
        .unwrap_or(("B", 1));
        if self.0.is_multiple_of(scale) {
            write!(f, "{} {name}", self.0 / scale)
        } else {
            let value = format!("{:.2}", self.0 as f64 / scale as f64);
            let value = value.trim_end_matches('0').trim_end_matches('.');
            write!(f, "{value} {name}")
        }
    }
}

/// The memory budget per device that batch sizes are planned for, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryBudget {
    /// Bytes per device.
    pub bytes: u64,
    /// Where the number came from, for messages (`--max-gpu-mem`, the CUDA driver, ...).
    pub source: String,
}

impl MemoryBudget {
    /// `explicit` when given, else on a GPU its free memory (the smallest over the GPUs
    /// `device` names) less 10% and 1 GiB, else 4 GiB on the CPU. Take it once per run,
    /// before any model is loaded: a later reading would see the run's own memory pool.
    pub fn resolve(explicit: Option<MemSize>, device: DeviceSpec) -> MemoryBudget {
        let budget = |bytes, source: &str| MemoryBudget {
            bytes,
            source: source.to_string(),
        };
        match (explicit, device) {
            (Some(size), _) => budget(size.bytes(), "--max-gpu-mem"),
            (None, DeviceSpec::Cpu) => budget(4 << 30, "the CPU default"),
            (None, DeviceSpec::Cuda(gpus)) => match gpu_free_memory(gpus) {
                Some(free) => MemoryBudget {
                    bytes: (free as f64 * 0.9) as u64 - (1 << 30).min(free / 2),
                    source: format!(
                        "free GPU memory ({:.1} GiB, CUDA driver) less 10% and 1 GiB",
                        gib(free)
                    ),
                },
                None => budget(
                    24 << 30,
                    "24 GiB: the CUDA driver could not report free memory; set --max-gpu-mem",
                ),
            },
        }
    }
}

impl MemoryBudget {
    /// Refuses a model whose weights alone (`layers` blocks in `precision`, embeddings in
    /// f32) exceed the budget, with the arithmetic: no pass would fit on one device.
    pub fn check_weights(
        &self,
        shape: &ModelShape,
        layers: usize,
        precision: Precision,
    ) -> Result<(), super::error::ExtractError> {
        let need = weight_bytes(shape, layers, precision);
        if need <= self.bytes {
            return Ok(());
        }
        Err(super::error::ExtractError::Setting {
            setting: "--max-gpu-mem",
            reason: format!(
                "the {} model's weights need {:.2} GiB ({layers} blocks × {:.2} M weights × {} B \
                 ({precision}) + {:.2} M embedding weights × 4 B), more than the {:.2} GiB \
                 budget ({}): give a larger budget, fewer blocks (--gpt2-layers), f16, or a \
                 GPU with more memory",
                shape.family,
                gib(need),
                shape.block_params() as f64 / 1e6,
                precision.bytes(),
                shape.embedding_params() as f64 / 1e6,
                gib(self.bytes),
                self.source
            ),
        })
    }
}

/// Bytes in GiB, for messages.
pub fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Architecture;

    fn gpt2_small() -> ModelShape {
        crate::gpt2::Gpt2Module::shape(&crate::Gpt2Config::gpt2_small())
    }

    #[test]
    fn plan_stays_within_the_budget_and_shrinks_with_length() {
        let shape = gpt2_small();
        let budget = 24u64 << 30;
        let short = plan(&shape, 12, 320, Precision::F32, budget);
        let long = plan(&shape, 12, 672, Precision::F32, budget);
        assert!(short.peak_bytes <= budget / 2, "{short:?}");
        assert!(long.peak_bytes <= budget / 2, "{long:?}");
        assert!(long.max_tokens < short.max_tokens);
        // Half precision fits more tokens; the f32 parts keep it under twice as many.
        let half = plan(&shape, 12, 320, Precision::Bf16, budget);
        assert!(
            half.max_tokens > short.max_tokens * 13 / 10,
            "{half:?} {short:?}"
        );
        assert!(half.max_tokens < short.max_tokens * 2);
        // Split f32 holds hi/lo parts: fewer tokens than plain f32.
        let split = plan(&shape, 12, 320, Precision::F32Split, budget);
        assert!(split.max_tokens < short.max_tokens);
    }

    #[test]
    fn a_tiny_budget_still_allows_one_prompt() {
        let shape = gpt2_small();
        let p = plan(&shape, 12, 640, Precision::F32, 1 << 20);
        assert_eq!(p.max_tokens, 640);
    }

    #[test]
    fn memory_sizes_parse() {
        let cases = [
            ("24GiB", 24 << 30),
            ("512MiB", 512 << 20),
            ("512mib", 512 << 20),
            ("24 GiB", 24 << 30),
            (" 1.5GiB ", 3 << 29),
            (".5KiB", 512),
            ("2.KiB", 2048),
            ("1TiB", 1 << 40),
            ("64KiB", 64 << 10),
            ("24GB", 24_000_000_000),
            ("1.25MB", 1_250_000),
            ("1.25GiB", 5 << 28),
            ("0.333333333333333333KiB", 341),
            ("100B", 100),
            ("1.999B", 1),
        ];
        for (text, bytes) in cases {
            assert_eq!(
                text.parse::<MemSize>().map(MemSize::bytes),
                Ok(bytes),
                "{text}"
            );
        }
    }

    #[test]
    fn bad_memory_sizes_are_rejected() {
        let cases = [
            ("24", "a unit is required"),
            ("GiB", "expected a number"),
            ("", "expected a number"),
            ("24XB", "unknown unit"),
            ("24 G", "unknown unit"),
            ("-1GiB", "expected a number"),
            ("1.2.3GiB", "not a number"),
            (".GiB", "not a number"),
            ("0GiB", "more than zero"),
            ("0.1B", "more than zero"),
            ("1.0000000000000000001GiB", "too many decimals"),
            ("99999999999TiB", "too large"),
            ("99999999999999999999999B", "too large"),
        ];
        for (text, why) in cases {
            let err = text.parse::<MemSize>().unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
            assert!(err.contains(&format!("`{text}`")), "{text}: {err}");
        }
    }

    #[test]
    fn memory_sizes_display_in_binary_units() {
        let cases = [
            ("24GiB", "24 GiB"),
            ("1.5GiB", "1.5 GiB"),
            ("512MiB", "512 MiB"),
            ("24GB", "22.35 GiB"),
            ("1000B", "1000 B"),
            ("1024B", "1 KiB"),
            ("2TiB", "2 TiB"),
        ];
        for (text, shown) in cases {
            assert_eq!(
                text.parse::<MemSize>().unwrap().to_string(),
                shown,
                "{text}"
            );
        }
    }
}
