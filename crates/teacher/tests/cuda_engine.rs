//! The CUDA engine against Burn's GPT-2 on the CPU (feature `cuda`; the tests need an NVIDIA
//! GPU and are ignored otherwise: run them with `--ignored` on a GPU machine). States are the
//! last-token states of every prompt, each (window, variable)'s prompts of one or of every
//! output length sharing their history sentence as in extraction.

#![cfg(feature = "cuda")]

mod common;

use std::path::Path;

use common::{builder, dataset, device, host, model_dir, prompts_at_lengths, rel_l2};
use timekd_data::SplitKind;
use timekd_teacher::cuda::{CudaGpt2, EngineLimits};
use timekd_teacher::{
    BatchOptions, EncodedPrompt, Gpt2, Gpt2Config, Gpt2Tokenizer, LanguageModel, Precision,
    PromptFamily, write_random_gpt2,
};

const LENGTHS: [usize; 5] = [24, 36, 48, 96, 192];

/// GT and HD prompts of train `windows` (every variable) at `lengths`, one family each.
fn families(lengths: &[usize], windows: &[usize]) -> Vec<Vec<EncodedPrompt>> {
    let data = dataset(192);
    let builder = builder(&data);
    let tokenizer = Gpt2Tokenizer::new().unwrap();
    let train = data.split(SplitKind::Train);
    let mut out = Vec::new();
    for &i in windows {
        let window = train.window(i);
        for v in 0..data.n_vars() {
            let pairs = prompts_at_lengths(&builder, &tokenizer, &window, v, lengths);
            out.push(pairs.into_iter().flat_map(|(gt, hd)| [gt, hd]).collect());
        }
    }
    out
}

fn as_families(prompts: &[Vec<EncodedPrompt>]) -> Vec<PromptFamily<'_>> {
    prompts
        .iter()
        .map(|f| PromptFamily::new(f.iter().collect(), true))
        .collect()
}

/// Burn's states on the CPU, f32.
fn cpu_states(dir: &Path, prompts: &[Vec<EncodedPrompt>]) -> Vec<f64> {
    let gpt2 = LanguageModel::from(Gpt2::load_dir(dir, None, &device()).unwrap());
    let states = gpt2
        .family_last_token_states(&as_families(prompts), &BatchOptions::default())
        .unwrap();
    host(states)
}

/// The engine on GPU 0, planned for a 24 GiB budget.
fn engine(dir: &Path, precision: Precision) -> CudaGpt2 {
    let (config, layers) = Gpt2Config::for_model_dir(dir, None).unwrap();
    let limits = EngineLimits::for_budget(&config, layers, precision, 24 << 30);
    CudaGpt2::load(dir, (config, layers), 0, precision, limits).unwrap()
}

fn gpu_states(engine: &CudaGpt2, prompts: &[Vec<EncodedPrompt>]) -> Vec<f64> {
    let states = engine.family_last_states(&as_families(prompts)).unwrap();
    states.into_iter().map(f64::from).collect()
}

/// The largest relative L2 error of a prompt's state.
fn worst(a: &[f64], b: &[f64], d: usize) -> f64 {
    a.chunks(d)
        .zip(b.chunks(d))
        .map(|(x, y)| rel_l2(x, y))
        .fold(0.0, f64::max)
}

/// The engine against Burn on `windows` of ETTh1, one length and every length.
fn compare(dir: &Path, what: &str, windows: &[usize]) {
    let d = Gpt2Config::for_model_dir(dir, None).unwrap().0.n_embd;
    for lengths in [&LENGTHS[..1], &LENGTHS[..]] {
        let prompts = families(lengths, windows);
        let cpu = cpu_states(dir, &prompts);
        for (precision, tolerance) in [(Precision::F32Split, 1e-4), (Precision::F16, 1e-2)] {
            let gpu = gpu_states(&engine(dir, precision), &prompts);
            let err = worst(&gpu, &cpu, d);
            eprintln!(
                "{what}, {} length(s), {precision}: max rel L2 {err:.2e}",
                lengths.len()
            );
            assert!(err <= tolerance, "{what} {precision}: {err} > {tolerance}");
        }
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU"]
fn engine_equals_burn_on_the_tiny_gpt2() {
    compare(&model_dir(), "tiny-gpt2", &[0, 7, 30]);
}

#[test]
#[ignore = "needs an NVIDIA GPU"]
fn engine_equals_burn_on_a_gpt2_small_shaped_random_model() {
    let dir = tempfile::tempdir().unwrap();
    write_random_gpt2(dir.path(), &Gpt2Config::gpt2_small(), 7).unwrap();
    // One window: Burn's 12-layer CPU forward of every length is the slow part (over 100 s
    // for three windows on an H100 host's 16 cores).
    compare(dir.path(), "GPT-2-small-shaped random model", &[0]);
}

/// GPT-2 large's and xl's widths (1280 with 20 heads, 1600 with 25 heads; two blocks each).
#[test]
#[ignore = "needs an NVIDIA GPU"]
fn engine_equals_burn_at_gpt2_large_and_xl_widths() {
    for (n_embd, n_head, name) in [(1280, 20, "GPT-2-large"), (1600, 25, "GPT-2-xl")] {
        let dir = tempfile::tempdir().unwrap();
        let config = Gpt2Config {
            n_embd,
            n_head,
            n_layer: 2,
            n_inner: 4 * n_embd,
            ..Gpt2Config::gpt2_small()
        };
        write_random_gpt2(dir.path(), &config, 11).unwrap();
        compare(
            dir.path(),
            &format!("{name}-width random model, 2 blocks"),
            &[0],
        );
    }
}

/// An engine re-planned down to one prompt per pass (what out-of-memory retries do) gives
/// the states of its first plan.
#[test]
#[ignore = "needs an NVIDIA GPU"]
fn an_engine_replanned_to_its_smallest_passes_gives_the_same_states() {
    let dir = model_dir();
    let config = Gpt2Config::for_model_dir(&dir, None).unwrap().0;
    let prompts = families(&LENGTHS, &[0, 7, 30]);
    let mut engine = engine(&dir, Precision::F32Split);
    let first = gpu_states(&engine, &prompts);
    let mut plans = 0;
    while let Some(smaller) = engine.limits().halved(&config) {
        engine.set_limits(smaller).unwrap();
        plans += 1;
    }
    let limits = engine.limits();
    assert_eq!(limits.pass_tokens, config.n_positions);
    let last = gpu_states(&engine, &prompts);
    let err = worst(&last, &first, config.n_embd);
    eprintln!("{plans} halvings to {limits:?}: max rel L2 {err:.2e}");
    assert!(err <= 1e-5, "{err}");
}
