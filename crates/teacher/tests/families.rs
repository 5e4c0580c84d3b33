//! LLaMA and BERT against Hugging Face `transformers` (fixtures from
//! `scripts/make-teacher-fixtures.py`: small random checkpoints of each family's real
//! architecture, their calibrated last-token states computed by transformers in f64).
//!
//! - the checkpoint directory picks its family and tokenizer; the teacher's prompts encode
//!   to the ids and token types transformers ran;
//! - every prompt's calibrated last-token state, and every position's plain state of one
//!   prompt, within 1e-4 relative L2 of transformers' (f32 on the CPU);
//! - LLaMA's shared-prefix path (GT and HD prompts as one family, and several output lengths
//!   at once) equals whole prompts; BERT's results do not depend on the other (longer)
//!   prompts padded into the same pass.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor};
use serde::Deserialize;
use timekd_teacher::{
    BatchOptions, Bert, EncodedPrompt, Llama, ModelConfig, Precision, PromptFamily, PromptPair,
    PromptTokenizer, TokenType, Tokenizer,
};

fn family_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/families")
        .join(name)
}

#[derive(Deserialize)]
struct Expected {
    family: String,
    prompts: Vec<PromptCase>,
    plain: Plain,
}

#[derive(Deserialize)]
struct PromptCase {
    gt_ids: Vec<u32>,
    hd_ids: Vec<u32>,
    gt_types: Vec<u8>,
    hd_types: Vec<u8>,
    gt_state: Vec<f64>,
    hd_state: Vec<f64>,
}

#[derive(Deserialize)]
struct Plain {
    ids: Vec<u32>,
    states: Vec<Vec<f64>>,
}

/// The prompt texts transformers' ids came from (the tokenizer fixture the script read).
#[derive(Deserialize)]
struct PromptText {
    gt_prompt: String,
    hd_prompt: String,
}

fn expected(name: &str) -> Expected {
    let text = std::fs::read_to_string(family_dir(name).join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn prompt(ids: &[u32], types: &[u8]) -> EncodedPrompt {
    EncodedPrompt {
        ids: ids.to_vec(),
        types: types
            .iter()
            .map(|&t| {
                if t == 1 {
                    TokenType::TimeSeries
                } else {
                    TokenType::Language
                }
            })
            .collect(),
    }
}

fn values(t: Tensor<2>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// ‖ours − theirs‖ / ‖theirs‖.
fn relative_l2(ours: &[f32], theirs: &[f64]) -> f64 {
    assert_eq!(ours.len(), theirs.len());
    let diff: f64 = ours
        .iter()
        .zip(theirs)
        .map(|(&a, &b)| (a as f64 - b).powi(2))
        .sum();
    let norm: f64 = theirs.iter().map(|b| b * b).sum();
    (diff / norm).sqrt()
}

const FAMILIES: [(&str, &str); 2] = [("llama", "byte-level-bpe"), ("bert", "wordpiece")];

/// The built-in ETTh1, windowed at H = 24.
fn etth1() -> (timekd_data::DataSource, timekd_data::Dataset) {
    let source = timekd_data::DataSource::resolve("ETTh1").unwrap();
    let data = source
        .load(&timekd_data::DatasetOptions {
            output_len: 24,
            ..Default::default()
        })
        .unwrap();
    (source, data)
}

#[test]
fn prompts_encode_to_the_ids_and_types_transformers_ran() {
    for (name, tokenizer_kind) in FAMILIES {
        let dir = family_dir(name);
        let tokenizer = Tokenizer::for_model_dir(&dir).unwrap();
        assert!(matches!(tokenizer, Tokenizer::HuggingFace(_)), "{name}");
        let texts: Vec<PromptText> = serde_json::from_str(
            &std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/fixtures/tokenizers")
                    .join(tokenizer_kind)
                    .join("expected.json"),
            )
            .unwrap(),
        )
        .unwrap();
        let cases = expected(name).prompts;
        assert_eq!(texts.len(), cases.len());
        for (text, case) in texts.iter().zip(&cases) {
            let (gt, hd) = tokenizer
                .encode_pair(&PromptPair {
                    gt: text.gt_prompt.clone(),
                    hd: text.hd_prompt.clone(),
                })
                .unwrap();
            assert_eq!(gt, prompt(&case.gt_ids, &case.gt_types), "{name}: GT");
            assert_eq!(hd, prompt(&case.hd_ids, &case.hd_types), "{name}: HD");
        }
    }
}

#[test]
fn last_token_states_equal_transformers() {
    let device = Device::flex();
    for (name, _) in FAMILIES {
        let dir = family_dir(name);
        let expected = expected(name);
        let config = ModelConfig::for_model_dir(&dir).unwrap();
        let shape = config.shape();
        assert_eq!((shape.family, expected.family.as_str()), (name, name));
        let model = config
            .load_burn(&dir, shape.layers, &device, Precision::F32)
            .unwrap();
        let prompts: Vec<EncodedPrompt> = expected
            .prompts
            .iter()
            .flat_map(|c| {
                [
                    prompt(&c.gt_ids, &c.gt_types),
                    prompt(&c.hd_ids, &c.hd_types),
                ]
            })
            .collect();
        // Every prompt alone, then all together (GT and HD of a window as one family).
        let alone: Vec<PromptFamily> = prompts
            .iter()
            .map(|p| PromptFamily::new(vec![p], false))
            .collect();
        let paired: Vec<PromptFamily> = prompts
            .chunks(2)
            .map(|pair| PromptFamily::new(pair.iter().collect(), true))
            .collect();
        for (how, families) in [("alone", alone), ("paired", paired)] {
            let states = values(
                model
                    .family_last_token_states(&families, &BatchOptions::default())
                    .unwrap(),
            );
            let d = shape.d_model;
            let mut worst = 0.0f64;
            for (i, case) in expected.prompts.iter().enumerate() {
                for (k, theirs) in [&case.gt_state, &case.hd_state].into_iter().enumerate() {
                    let row = 2 * i + k;
                    let err = relative_l2(&states[row * d..(row + 1) * d], theirs);
                    assert!(
                        err <= 1e-4,
                        "{name} {how}: prompt {row}: relative L2 {err:.2e}"
                    );
                    worst = worst.max(err);
                }
            }
            eprintln!(
                "{name} ({how}): worst relative L2 {worst:.2e} over {} prompts",
                2 * expected.prompts.len()
            );
        }
    }
}

#[test]
fn plain_states_of_every_position_equal_transformers() {
    let device = Device::flex();
    let check = |name: &str, states: Tensor<2>, theirs: &[Vec<f64>]| {
        let flat: Vec<f64> = theirs.iter().flatten().copied().collect();
        let err = relative_l2(&values(states), &flat);
        assert!(err <= 1e-4, "{name}: relative L2 {err:.2e}");
    };
    let llama = Llama::load_dir(&family_dir("llama"), None, &device).unwrap();
    let plain = expected("llama").plain;
    let p = prompt(&plain.ids, &vec![0; plain.ids.len()]);
    check(
        "llama",
        llama.hidden_states(&p, false).unwrap(),
        &plain.states,
    );
    let bert = Bert::load_dir(&family_dir("bert"), None, &device).unwrap();
    let plain = expected("bert").plain;
    let p = prompt(&plain.ids, &vec![0; plain.ids.len()]);
    check(
        "bert",
        bert.hidden_states(&p, false).unwrap(),
        &plain.states,
    );
}

#[test]
fn shared_prefixes_and_padding_leave_states_unchanged() {
    let device = Device::flex();
    // LLaMA: the GT and HD prompts of three windows as one family each (a shared prefix
    // with its rotary positions), against every prompt whole.
    let llama = Llama::load_dir(&family_dir("llama"), None, &device).unwrap();
    let cases = expected("llama").prompts;
    let prompts: Vec<EncodedPrompt> = cases
        .iter()
        .take(3)
        .flat_map(|c| {
            [
                prompt(&c.gt_ids, &c.gt_types),
                prompt(&c.hd_ids, &c.hd_types),
            ]
        })
        .collect();
    let whole = values(
        llama
            .last_token_states(
                &prompts.iter().collect::<Vec<_>>(),
                &BatchOptions::default(),
            )
            .unwrap(),
    );
    let families: Vec<PromptFamily> = prompts
        .chunks(2)
        .map(|pair| PromptFamily::new(pair.iter().collect(), true))
        .collect();
    assert!(
        families.iter().all(|f| f.prefix_len() > 10),
        "prefixes are shared"
    );
    let cached = values(
        llama
            .family_last_token_states(&families, &BatchOptions::default())
            .unwrap(),
    );
    let max = whole
        .iter()
        .zip(&cached)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(max <= 1e-5, "llama: prefix cache moved a state by {max}");

    // BERT: a short prompt padded into a pass with a longer one, against the short one alone.
    let bert = Bert::load_dir(&family_dir("bert"), None, &device).unwrap();
    let cases = expected("bert").prompts;
    let long = prompt(&cases[0].gt_ids, &cases[0].gt_types);
    let short = prompt(&cases[0].hd_ids[..40], &cases[0].hd_types[..40]);
    let options = BatchOptions {
        length_bucket: 1,
        ..BatchOptions::default()
    };
    let alone = values(bert.last_token_states(&[&short], &options).unwrap());
    let options = BatchOptions {
        length_bucket: 512,
        ..BatchOptions::default()
    };
    let padded = values(bert.last_token_states(&[&short, &long], &options).unwrap());
    let max = alone
        .iter()
        .zip(&padded)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(max <= 1e-5, "bert: padding moved a state by {max}");
}

/// A checkpoint split into shards (`model.safetensors.index.json`, as Llama-3.2-3B ships)
/// loads to the same model as one file; a missing shard is named.
#[test]
fn sharded_checkpoints_load_like_one_file() {
    use safetensors::tensor::TensorView;
    let source = family_dir("llama");
    let dir = tempfile::tempdir().unwrap();
    for file in ["config.json", "tokenizer.json"] {
        std::fs::copy(source.join(file), dir.path().join(file)).unwrap();
    }
    let bytes = std::fs::read(source.join("model.safetensors")).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = tensors.names().into_iter().map(str::to_string).collect();
    names.sort();
    let half = names.len() / 2;
    let mut weight_map = serde_json::Map::new();
    for (shard, part) in [&names[..half], &names[half..]].into_iter().enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", shard + 1);
        let views: Vec<(String, TensorView)> = part
            .iter()
            .map(|n| (n.clone(), tensors.tensor(n).unwrap()))
            .collect();
        safetensors::serialize_to_file(views, None, &dir.path().join(&file)).unwrap();
        for n in part {
            weight_map.insert(n.clone(), file.clone().into());
        }
    }
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        serde_json::json!({ "metadata": {}, "weight_map": weight_map }).to_string(),
    )
    .unwrap();
    let device = Device::flex();
    let cases = expected("llama").prompts;
    let p = prompt(&cases[0].gt_ids, &cases[0].gt_types);
    let one = Llama::load_dir(&source, None, &device).unwrap();
    let sharded = Llama::load_dir(dir.path(), None, &device).unwrap();
    assert_eq!(
        values(one.hidden_states(&p, true).unwrap()),
        values(sharded.hidden_states(&p, true).unwrap())
    );
    assert_ne!(one.weights_sha256(), sharded.weights_sha256());
    std::fs::remove_file(dir.path().join("model-00002-of-00002.safetensors")).unwrap();
    let err = Llama::load_dir(dir.path(), None, &device)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model.safetensors.index.json") && err.contains("model-00002-of-00002"),
        "{err}"
    );
}

/// A model whose weights do not fit the memory budget is refused before anything runs,
/// with the arithmetic (never a silent fallback).
#[test]
fn a_model_over_the_budget_is_refused_with_the_arithmetic() {
    use timekd_teacher::extract::{Extraction, MemSize};
    let (source, data) = etth1();
    let dir = tempfile::tempdir().unwrap();
    let err = Extraction::builder(&source, &data, dir.path())
        .model(family_dir("llama").to_str().unwrap())
        .max_memory(Some("64KiB".parse::<MemSize>().unwrap()))
        .build()
        .unwrap_err()
        .to_string();
    // 2 blocks × 37,632 weights × 4 B + 21,888 embedding weights × 4 B = 0.37 MiB.
    assert!(
        err.contains("--max-gpu-mem")
            && err.contains("llama model's weights need")
            && err.contains("2 blocks × 0.04 M weights × 4 B (f32) + 0.02 M embedding"),
        "{err}"
    );
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing written"
    );
}

/// Half precision really computes in half precision for every family (its states move away
/// from f32's, a little): a model that ignored the precision would give f32's states.
#[test]
fn f16_products_move_states_a_little() {
    let device = Device::flex();
    for (name, _) in FAMILIES {
        let dir = family_dir(name);
        let case = &expected(name).prompts[0];
        let p = prompt(&case.gt_ids, &case.gt_types);
        let config = ModelConfig::for_model_dir(&dir).unwrap();
        let states = |precision| {
            let model = config.load_burn(&dir, 2, &device, precision).unwrap();
            let families = [PromptFamily::new(vec![&p], false)];
            values(
                model
                    .family_last_token_states(&families, &BatchOptions::default())
                    .unwrap(),
            )
        };
        let (full, half) = (states(Precision::F32), states(Precision::F16));
        let theirs: Vec<f64> = full.iter().map(|&v| v as f64).collect();
        let err = relative_l2(&half, &theirs);
        eprintln!("{name}: f16 vs f32 relative L2 {err:.2e}");
        assert!((1e-5..=1e-2).contains(&err), "{name}: f16 vs f32 {err:.2e}");
    }
}

/// The extraction plan (pass sizes, `--dry-run`, whether prompts fit the model) counts the
/// model's own tokens: BERT's WordPiece, not GPT-2's BPE.
#[test]
fn plans_count_the_models_own_tokens() {
    use timekd_data::SplitKind;
    use timekd_teacher::extract::Extraction;
    use timekd_teacher::{PromptBuilder, PromptTemplate, ValueFormat, WindowInput, encode_windows};
    let (source, data) = etth1();
    let dir = family_dir("bert");
    let plan = Extraction::builder(&source, &data, "unused")
        .model(dir.to_str().unwrap())
        .splits(&[SplitKind::Train])
        .max_windows(Some(4))
        .build()
        .unwrap()
        .plan()
        .unwrap();
    let builder = PromptBuilder::new(
        PromptTemplate::for_preset(data.preset(), data.interval_seconds()),
        ValueFormat::Int,
    );
    let train = data.split(SplitKind::Train);
    let windows: Vec<WindowInput> = (0..4)
        .map(|i| WindowInput::from_window(&train.window(i), data.n_vars()))
        .collect();
    let tokenizer = Tokenizer::for_model_dir(&dir).unwrap();
    let encoded = encode_windows(&tokenizer, &builder, &windows).unwrap();
    let mean_gt = encoded.iter().map(|p| p.gt.len()).sum::<usize>() as f64 / encoded.len() as f64;
    let survey = &plan.stores[0].survey;
    assert!(
        (survey.mean_gt - mean_gt).abs() < 1e-9,
        "{} vs {mean_gt}",
        survey.mean_gt
    );
}
