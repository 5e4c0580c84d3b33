//! Pass planning: how long the prompts are ([`TokenSurvey`]), how many padded tokens a pass
//! may hold under the memory budget ([`PassPlan`]), and what a run will cost
//! ([`StorePlan`], for `--dry-run`).

use timekd_data::{Split, SplitKind};

use super::budget;
use crate::batch::{BatchOptions, PairLengths};
use crate::encode::{WindowInput, encode_windows};
use crate::error::TeacherError;
use crate::precision::Precision;
use crate::prompt::PromptBuilder;
use crate::shape::ModelShape;
use crate::tokenizer::Tokenizer;

/// Token counts of the prompts of a split's windows at one output length (a sample of at
/// most 256 windows, spread evenly).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenSurvey {
    /// Mean tokens of a GT prompt.
    pub mean_gt: f64,
    /// Mean tokens of an HD prompt.
    pub mean_hd: f64,
    /// Mean tokens a GT/HD pair shares at its start (0 where it shares none).
    pub mean_prefix: f64,
    /// The longest prompt, with room for longer numbers than were sampled.
    pub longest: usize,
}

impl TokenSurvey {
    /// Surveys the first `windows` windows of `split` at `output_len`, in the model's tokens.
    pub fn of(
        split: &Split<'_>,
        windows: usize,
        output_len: usize,
        prompts: &PromptBuilder,
        tokenizer: &Tokenizer,
    ) -> Result<Self, TeacherError> {
        let n_vars = split.dataset().n_vars();
        let sample = windows.min(256);
        let inputs: Vec<WindowInput> = (0..sample)
            .filter_map(|i| split.window_at(i * windows / sample, output_len))
            .map(|window| WindowInput::from_window(&window, n_vars))
            .collect();
        let encoded = encode_windows(tokenizer, prompts, &inputs)?;
        let n = encoded.len().max(1) as f64;
        let mean = |tokens: usize| tokens as f64 / n;
        Ok(TokenSurvey {
            mean_gt: mean(encoded.iter().map(|p| p.gt.len()).sum()),
            mean_hd: mean(encoded.iter().map(|p| p.hd.len()).sum()),
            mean_prefix: mean(
                encoded
                    .iter()
                    .filter_map(|p| PairLengths::of(&p.gt, &p.hd))
                    .map(|l| l.prefix)
                    .sum(),
            ),
            // Future values widen the GT prompt; leave room for longer numbers than sampled.
            longest: encoded
                .iter()
                .map(|p| p.gt.len().max(p.hd.len()))
                .max()
                .unwrap_or(1)
                + 16,
        })
    }

    /// Forward FLOPs of one (window, variable)'s shared prefix (0 without the cache).
    pub fn prefix_flops(&self, shape: &ModelShape, layers: usize, prefix_cache: bool) -> f64 {
        if prefix_cache {
            forward_flops(shape, layers, 0.0, self.mean_prefix)
        } else {
            0.0
        }
    }

    /// Forward FLOPs of one (window, variable): both prompts in full, or, with the prefix
    /// cache, the shared prefix once and the two suffixes after it.
    pub fn flops_per_pair(&self, shape: &ModelShape, layers: usize, prefix_cache: bool) -> f64 {
        let flops = |past, t| forward_flops(shape, layers, past, t);
        if prefix_cache {
            let p = self.mean_prefix;
            flops(0.0, p) + flops(p, self.mean_gt - p) + flops(p, self.mean_hd - p)
        } else {
            flops(0.0, self.mean_gt) + flops(0.0, self.mean_hd)
        }
    }
}

/// Forward FLOPs (matmuls only) of `t` query tokens that follow `past` cached tokens.
fn forward_flops(shape: &ModelShape, layers: usize, past: f64, t: f64) -> f64 {
    let per_token_linear = shape.linear_flops_per_token();
    // QKᵀ and AV over the keys each query sees: the past ones and the causal half of its own
    // (all of its own for an encoder).
    let own = if shape.causal { t / 2.0 } else { t };
    let attention = 2.0 * 2.0 * t * (past + own) * (shape.heads * shape.head_dim) as f64;
    layers as f64 * (per_token_linear * t + attention)
}

/// How a run's forward passes are sized.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PassPlan {
    /// The teacher's batching options.
    pub options: BatchOptions,
    /// Estimated peak bytes per device of a full pass at the longest padded length.
    pub peak_bytes: u64,
    /// The CUDA engine's plan for the budget, where GPU workers run it (CUDA builds).
    pub engine: Option<EnginePlan>,
}

/// How the CUDA engine sizes its passes and prefix cache for a budget (at load it plans for
/// less when the GPU has less free).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnginePlan {
    /// Most packed tokens in one pass.
    pub pass_tokens: usize,
    /// Most prefix tokens whose keys and values are cached at once.
    pub cache_tokens: usize,
    /// Device bytes the engine holds: weights, pass buffers, cache.
    pub peak_bytes: u64,
}

impl EnginePlan {
    /// The engine's plan for `request`, when its GPUs run the engine.
    #[cfg(feature = "cuda")]
    fn for_request(request: &PassRequest<'_>) -> Option<Self> {
        if !(request.gpu && request.cuda_engine) {
            return None;
        }
        let (shape, layers, precision) = (request.shape, request.layers, request.precision);
        let limits =
            crate::cuda::EngineLimits::for_budget(shape, layers, precision, request.budget_bytes);
        Some(EnginePlan {
            pass_tokens: limits.pass_tokens,
            cache_tokens: limits.cache_tokens,
            peak_bytes: limits.peak_bytes(shape, layers, precision),
        })
    }

    /// A build without CUDA runs no engine.
    #[cfg(not(feature = "cuda"))]
    fn for_request(_: &PassRequest<'_>) -> Option<Self> {
        None
    }
}

/// What sizes a run's passes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PassRequest<'a> {
    pub shape: &'a ModelShape,
    pub layers: usize,
    pub precision: Precision,
    pub budget_bytes: u64,
    /// `--batch-tokens`: overrides the budget's choice.
    pub batch_tokens: Option<usize>,
    /// Compute each family's shared prefix once.
    pub prefix_cache: bool,
    /// GPUs: few distinct tensor shapes (each new one compiles and autotunes kernels).
    pub gpu: bool,
    /// The GPU runs the CUDA engine (for the time estimate).
    pub cuda_engine: bool,
}

impl PassPlan {
    /// Windows in each chunk of work a worker takes when a window has `prompts_per_window`
    /// prompts (2 per variable and output length): enough prompts for several full passes,
    /// so passes are well filled, and at most 512 windows. Progress, resume and the steady
    /// rate advance by chunks.
    pub fn chunk_windows(&self, prompts_per_window: usize) -> usize {
        (self.options.max_prompts * 4 / prompts_per_window.max(1)).clamp(1, 512)
    }

    /// Passes for prompts of at most `longest` tokens under the request's budget.
    pub(crate) fn new(request: &PassRequest<'_>, longest: usize) -> Self {
        let defaults = BatchOptions::default();
        let padded = longest.div_ceil(defaults.length_bucket) * defaults.length_bucket;
        let padded = padded.min(request.shape.max_tokens);
        let (shape, layers, precision) = (request.shape, request.layers, request.precision);
        let planned = budget::plan(shape, layers, padded, precision, request.budget_bytes);
        let max_tokens = request.batch_tokens.unwrap_or(planned.max_tokens);
        PassPlan {
            options: BatchOptions {
                max_prompts: max_tokens.div_ceil(32).max(1),
                max_tokens,
                share_prefix: request.prefix_cache,
                batch_multiple: if request.gpu { 16 } else { 1 },
                ..defaults
            },
            peak_bytes: budget::peak_bytes(shape, layers, padded, precision, max_tokens),
            engine: EnginePlan::for_request(request),
        }
    }
}

/// A dry run's figures for one store.
#[derive(Debug, Clone, PartialEq)]
pub struct StorePlan {
    /// The split.
    pub split: SplitKind,
    /// The output length H.
    pub output_len: usize,
    /// Windows to extract.
    pub windows: usize,
    /// Prompts: 2 per (window, variable).
    pub prompts: usize,
    /// Prompt lengths.
    pub survey: TokenSurvey,
    /// Tokens of every prompt in full.
    pub tokens: f64,
    /// Forward FLOPs of every prompt in full.
    pub flops: f64,
    /// Forward FLOPs as run (with the prefix cache where it is on).
    pub flops_run: f64,
    /// The part of `flops_run` that is the windows' shared history prefixes.
    pub prefix_flops: f64,
    /// Estimated seconds on the run's devices (an estimate, not a promise).
    pub seconds: f64,
}

/// What a run will do, without loading weights or writing anything.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtractionPlan {
    /// The memory budget per device.
    pub budget: budget::MemoryBudget,
    /// How passes are sized.
    pub passes: PassPlan,
    /// Windows in each chunk of work ([`PassPlan::chunk_windows`]).
    pub chunk_windows: usize,
    /// One entry per (split, output length).
    pub stores: Vec<StorePlan>,
}

impl StorePlan {
    /// The figures of `windows` windows of `split` at `output_len`, with `survey` of them.
    pub(crate) fn new(
        split: &Split<'_>,
        output_len: usize,
        windows: usize,
        survey: TokenSurvey,
        request: &PassRequest<'_>,
    ) -> Self {
        let pairs = windows * split.dataset().n_vars();
        let flops =
            |cache| pairs as f64 * survey.flops_per_pair(request.shape, request.layers, cache);
        // Sustained rates measured with this tool: the CUDA engine ≈320–390 TFLOP/s in f16 on
        // an H200 over the bench cases (`cargo xtask bench extract`; 300 keeps some margin)
        // and, unmeasured, far less in f32;
        // Burn's CUDA backend ≈35 TFLOP/s on an H100; ≈10 GFLOP/s for small models on two
        // CPU cores.
        let rate = match (request.gpu, request.cuda_engine, request.precision) {
            (false, _, _) => 10e9,
            (true, true, Precision::F16) => 300e12,
            (true, true, _) => 40e12,
            (true, false, _) => 35e12,
        };
        let flops_run = flops(request.prefix_cache);
        let prefix_flops =
            pairs as f64 * survey.prefix_flops(request.shape, request.layers, request.prefix_cache);
        StorePlan {
            split: split.kind(),
            output_len,
            windows,
            prompts: 2 * pairs,
            survey,
            tokens: (survey.mean_gt + survey.mean_hd) * pairs as f64,
            flops: flops(false),
            flops_run,
            prefix_flops,
            seconds: flops_run / rate,
        }
    }
}

impl ExtractionPlan {
    /// Forward FLOPs and estimated seconds of the whole run as one pass over all lengths:
    /// each window's history prefix runs once for every H it is extracted at, so a split
    /// costs its stores' suffixes plus the prefixes of its most windowed store. Equals the
    /// stores' sum for one length.
    pub fn together(&self) -> (f64, f64) {
        let (mut flops, mut seconds) = (0.0, 0.0);
        for split in [SplitKind::Train, SplitKind::Val, SplitKind::Test] {
            let stores: Vec<&StorePlan> = self.stores.iter().filter(|s| s.split == split).collect();
            let Some(widest) = stores.iter().max_by_key(|s| s.windows) else {
                continue;
            };
            for store in &stores {
                let suffixes = store.flops_run - store.prefix_flops;
                flops += suffixes;
                seconds += store.seconds * suffixes / store.flops_run.max(1.0);
            }
            flops += widest.prefix_flops;
            seconds += widest.seconds * widest.prefix_flops / widest.flops_run.max(1.0);
        }
        (flops, seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_holds_four_passes_of_prompts_within_one_and_512_windows() {
        let passes = PassPlan {
            options: BatchOptions {
                max_prompts: 886,
                ..BatchOptions::default()
            },
            peak_bytes: 0,
            engine: None,
        };
        // ETTh1, one length: 7 variables x GT and HD = 14 prompts a window.
        assert_eq!(passes.chunk_windows(14), 253);
        // weather, one length (42 prompts) and all five (210).
        assert_eq!(passes.chunk_windows(42), 84);
        assert_eq!(passes.chunk_windows(210), 16);
        // One variable: capped; more prompts than four passes hold: one window.
        assert_eq!(passes.chunk_windows(2), 512);
        assert_eq!(passes.chunk_windows(10_000), 1);
    }
}

#[cfg(all(test, feature = "cuda"))]
mod engine_plan_tests {
    use super::*;
    use crate::{LlamaConfig, ModelConfig};

    #[test]
    fn gpu_workers_running_the_engine_get_its_plan_within_the_budget() {
        let llama_1b = ModelConfig::Llama(LlamaConfig::llama_3_2_1b()).shape();
        let request = |gpu, cuda_engine| PassRequest {
            shape: &llama_1b,
            layers: 16,
            precision: Precision::F16,
            budget_bytes: 24 << 30,
            batch_tokens: None,
            prefix_cache: true,
            gpu,
            cuda_engine,
        };
        let plan = PassPlan::new(&request(true, true), 1024).engine.unwrap();
        assert!(plan.peak_bytes < 24 << 30, "{plan:?}");
        assert!(
            plan.pass_tokens >= 8192 && plan.cache_tokens >= 8192,
            "{plan:?}"
        );
        assert_eq!(PassPlan::new(&request(true, false), 1024).engine, None);
        assert_eq!(PassPlan::new(&request(false, true), 1024).engine, None);
    }
}
