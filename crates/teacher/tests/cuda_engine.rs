//! The CUDA engine against Burn's model of the same checkpoint on the CPU (feature `cuda`;
//! the tests need an NVIDIA GPU and are ignored otherwise: run them with `--ignored` on a
//! GPU machine). States are the last-token states of every prompt, each (window,
//! variable)'s prompts of one or of every output length sharing their history sentence as
//! in extraction. GPT-2 (tiny, small-shaped, large and xl widths) and LLaMA (the
//! transformers fixture, and a random one with 64-wide heads for the tensor-core attention).

#![cfg(feature = "cuda")]

mod common;

use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, TensorData};
use common::{builder, dataset, device, host, model_dir, prompts_at_lengths, rel_l2};
use timekd_data::SplitKind;
use timekd_data::files::{TensorRef, write_safetensors};
use timekd_data::seeded::SplitMix64;
use timekd_teacher::cuda::{CudaEngine, CudaSca, EngineLimits, FUSED_SCA_MAX_VARS};
use timekd_teacher::{
    BatchOptions, EncodedPrompt, Gpt2Config, ModelConfig, Precision, PromptFamily, Sca, Tokenizer,
    write_random_gpt2,
};

const LENGTHS: [usize; 5] = [24, 36, 48, 96, 192];

/// GT and HD prompts of train `windows` (every variable) at `lengths`, one family each,
/// tokenised by the checkpoint's tokenizer.
fn families(dir: &Path, lengths: &[usize], windows: &[usize]) -> Vec<Vec<EncodedPrompt>> {
    let data = dataset(192);
    let builder = builder(&data);
    let tokenizer = Tokenizer::for_model_dir(dir).unwrap();
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

fn config(dir: &Path) -> ModelConfig {
    ModelConfig::for_model_dir(dir).unwrap()
}

/// Burn's states on the CPU, f32.
fn cpu_states(dir: &Path, prompts: &[Vec<EncodedPrompt>]) -> Vec<f64> {
    let config = config(dir);
    let layers = config.shape().layers;
    let model = config
        .load_burn(dir, layers, &device(), Precision::F32)
        .unwrap();
    let states = model
        .family_last_token_states(&as_families(prompts), &BatchOptions::default())
        .unwrap();
    host(states)
}

/// The engine on GPU 0, planned for a 24 GiB budget.
fn engine(dir: &Path, precision: Precision) -> CudaEngine {
    let config = config(dir);
    let shape = config.shape();
    let limits = EngineLimits::for_budget(&shape, shape.layers, precision, 24 << 30);
    CudaEngine::load(dir, (&config, shape.layers), 0, precision, limits).unwrap()
}

fn gpu_states(engine: &CudaEngine, prompts: &[Vec<EncodedPrompt>]) -> Vec<f64> {
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
    let d = config(dir).shape().d_model;
    for lengths in [&LENGTHS[..1], &LENGTHS[..]] {
        let prompts = families(dir, lengths, windows);
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

fn llama_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/families/llama")
}

/// The LLaMA transformers fixture (head width 16, 4 query heads over 2 key/value heads,
/// `llama3` rotary scaling): the simple attention kernel.
#[test]
#[ignore = "needs an NVIDIA GPU"]
fn engine_equals_burn_on_the_llama_fixture() {
    compare(&llama_fixture(), "LLaMA fixture", &[0, 7, 30]);
}

/// Random LLaMAs with 64-wide heads (Llama-3.2-1B's) and 128-wide ones (Llama-3.2-3B's),
/// query heads over half as many key/value heads, two blocks each, the fixture's tokenizer
/// and rotary scaling: the tensor-core attention with grouped heads. Width 512 with either
/// head width tells the kernel's error from the width's.
#[test]
#[ignore = "needs an NVIDIA GPU"]
fn engine_equals_burn_on_llamas_with_64_and_128_wide_heads() {
    for (d, head_dim) in [(256, 64), (512, 64), (512, 128)] {
        let dir = tempfile::tempdir().unwrap();
        write_random_llama(dir.path(), d, head_dim, 13);
        let what = format!("LLaMA, width {d}, {head_dim}-wide heads, random");
        compare(dir.path(), &what, &[0, 7]);
    }
}

/// The fixture's config and tokenizer at width `d` with query heads of `head_dim` over half
/// as many key/value heads and an MLP of 2 `d`, weights normal(0, 0.1) from `seed` (norm
/// gains around 1).
fn write_random_llama(dir: &Path, d: usize, head_dim: usize, seed: u64) {
    let source = llama_fixture();
    std::fs::copy(source.join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    let text = std::fs::read_to_string(source.join("config.json")).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let (heads, inner) = (d / head_dim, 2 * d);
    let kv_heads = heads / 2;
    json["hidden_size"] = d.into();
    json["intermediate_size"] = inner.into();
    json["head_dim"] = head_dim.into();
    json["num_attention_heads"] = heads.into();
    json["num_key_value_heads"] = kv_heads.into();
    std::fs::write(dir.join("config.json"), json.to_string()).unwrap();
    let vocab = json["vocab_size"].as_u64().unwrap() as usize;
    let layers = json["num_hidden_layers"].as_u64().unwrap() as usize;
    let (q, kv) = (heads * head_dim, kv_heads * head_dim);
    let mut shapes = vec![("model.embed_tokens.weight".to_string(), vec![vocab, d])];
    for i in 0..layers {
        let layer = |part: &str| format!("model.layers.{i}.{part}.weight");
        shapes.extend([
            (layer("self_attn.q_proj"), vec![q, d]),
            (layer("self_attn.k_proj"), vec![kv, d]),
            (layer("self_attn.v_proj"), vec![kv, d]),
            (layer("self_attn.o_proj"), vec![d, q]),
            (layer("mlp.gate_proj"), vec![inner, d]),
            (layer("mlp.up_proj"), vec![inner, d]),
            (layer("mlp.down_proj"), vec![d, inner]),
            (layer("input_layernorm"), vec![d]),
            (layer("post_attention_layernorm"), vec![d]),
        ]);
    }
    shapes.push(("model.norm.weight".to_string(), vec![d]));
    let mut rng = SplitMix64::new(seed);
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = shapes
        .into_iter()
        .map(|(name, shape)| {
            let norm = shape.len() == 1;
            let values = (0..shape.iter().product::<usize>())
                .map(|_| {
                    let x = 0.1 * rng.standard_normal();
                    (if norm { 1.0 + x } else { x }) as f32
                })
                .collect();
            (name, shape, values)
        })
        .collect();
    let refs: Vec<TensorRef<'_>> = tensors
        .iter()
        .map(|(name, shape, values)| (name.as_str(), shape.as_slice(), values.as_slice()))
        .collect();
    write_safetensors(&dir.join("model.safetensors"), &refs).unwrap();
}

/// An engine re-planned down to one prompt per pass (what out-of-memory retries do) gives
/// the states of its first plan.
#[test]
#[ignore = "needs an NVIDIA GPU"]
fn an_engine_replanned_to_its_smallest_passes_gives_the_same_states() {
    let dir = model_dir();
    let shape = config(&dir).shape();
    let prompts = families(&dir, &LENGTHS, &[0, 7, 30]);
    let mut engine = engine(&dir, Precision::F32Split);
    let first = gpu_states(&engine, &prompts);
    let mut plans = 0;
    while let Some(smaller) = engine.limits().halved(&shape) {
        engine.set_limits(smaller).unwrap();
        plans += 1;
    }
    let limits = engine.limits();
    assert_eq!(limits.pass_tokens, shape.max_tokens);
    let last = gpu_states(&engine, &prompts);
    let err = worst(&last, &first, shape.d_model);
    eprintln!("{plans} halvings to {limits:?}: max rel L2 {err:.2e}");
    assert!(err <= 1e-5, "{err}");
}

/// Two calls queued back to back (what extraction does: the next chunk queued before the
/// one before is read) give each the states of a call alone; a third waits for a slot, and
/// a queued call dropped unread frees its own.
#[test]
#[ignore = "needs an NVIDIA GPU"]
fn queued_calls_give_the_states_of_calls_alone() {
    let dir = model_dir();
    let first_prompts = families(&dir, &LENGTHS, &[0, 7]);
    let second_prompts = families(&dir, &LENGTHS[..1], &[30, 31, 32]);
    let (first_families, second_families) =
        (as_families(&first_prompts), as_families(&second_prompts));
    let engine = engine(&dir, Precision::F32Split);
    let alone = (
        engine.family_last_states(&first_families).unwrap(),
        engine.family_last_states(&second_families).unwrap(),
    );

    let first = engine.queue(&first_families).unwrap();
    let second = engine.queue(&second_families).unwrap();
    let third = engine.queue(&first_families);
    assert!(
        third.is_err_and(|e| e.to_string().contains("two calls are queued")),
        "a third call found a download buffer"
    );
    assert_eq!(engine.collect(first).unwrap(), alone.0);
    let again = engine.queue(&first_families).unwrap();
    assert_eq!(engine.collect(second).unwrap(), alone.1);
    drop(again);
    let after_drop = engine.queue(&second_families).unwrap();
    assert_eq!(engine.collect(after_drop).unwrap(), alone.1);
}

/// The fused GPU SCA's embeddings of windows picked from a block of states, against Burn's
/// SCA in exact f32 on the CPU: N = 7 at GPT-2's width and FFN, and odd sizes (one variable,
/// the most the kernels take, widths that are no multiple of their tiles).
#[test]
#[ignore = "needs an NVIDIA GPU"]
fn the_fused_sca_equals_burns_sca() {
    for (n, d, d_ff, windows) in [
        (7, 768, 3072, 6),
        (1, 64, 16, 3),
        (32, 200, 40, 2),
        (21, 333, 96, 4),
    ] {
        let mut rng = SplitMix64::new((n * 1000 + d) as u64);
        let sca = Sca::init(n, d_ff, 20250501 + n as u64, &device());
        // Last-token states are O(10) with a few large dimensions, as GPT-2's are.
        let rows = 2 * n * windows + 5;
        let states: Vec<f32> = (0..rows * d)
            .map(|i| {
                let x = rng.standard_normal() as f32 * 3.0;
                if i % d == 17 { x * 40.0 } else { x }
            })
            .collect();
        // Each window's GT and HD rows, in a scrambled order that leaves some rows unused.
        let mut order: Vec<i64> = (0..rows as i64).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
        }
        let (gt, hd) = order[..2 * n * windows].split_at(n * windows);
        let mut fused = CudaSca::new(0, &sca).unwrap();
        let got = fused.embeddings(&states, d, &[(gt, hd)]).unwrap();

        let picked = |rows: &[i64]| {
            let mut values = vec![0f32; windows * d * n];
            for (i, &row) in rows.iter().enumerate() {
                let (w, v) = (i / n, i % n);
                for r in 0..d {
                    values[(w * d + r) * n + v] = states[row as usize * d + r];
                }
            }
            Tensor::<3>::from_data(TensorData::new(values, [windows, d, n]), &device())
        };
        let want = host(sca.forward(picked(gt), picked(hd)).swap_dims(1, 2));
        let got: Vec<f64> = got[0].iter().map(|&x| f64::from(x)).collect();
        let error = rel_l2(&got, &want);
        eprintln!("fused SCA N={n} d={d} d_ff={d_ff}: rel. L2 {error:.2e} over {windows} windows");
        assert!(error < 1e-5, "N={n} d={d}: rel. L2 {error:.3e}");
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU"]
fn the_fused_sca_refuses_rows_outside_the_states_and_too_many_variables() {
    let sca = Sca::init(3, 8, 1, &device());
    let mut fused = CudaSca::new(0, &sca).unwrap();
    let states = vec![0.5f32; 4 * 16];
    let err = fused
        .embeddings(&states, 16, &[(&[0, 1, 4], &[2, 3, 0])])
        .unwrap_err();
    assert!(err.to_string().contains("do not index 4 states"), "{err}");
    let wide = Sca::init(FUSED_SCA_MAX_VARS + 1, 8, 1, &device());
    let err = CudaSca::new(0, &wide).err().expect("refused");
    assert!(
        err.to_string().contains("1 to 32 variables, not 33"),
        "{err}"
    );
}
