//! Checkpoint tokenizers (`tokenizer.json`) against Hugging Face's `tokenizers`: ids, token
//! strings and token types of real prompts (the committed set: ETTh1 windows 0, 300 and 2000;
//! OT, HUFL, LULL; H = 24; any set the script writes passes) for a byte-level BPE (LLaMA-3's layout), a SentencePiece-style BPE (LLaMA-1/2's)
//! and a WordPiece (BERT's). Fixtures: `scripts/make-tokenizer-fixtures.py`.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use timekd_teacher::{HfTokenizer, PromptPair, PromptTokenizer, TeacherError, Tokenizer};

const KINDS: [&str; 3] = ["byte-level-bpe", "metaspace-bpe", "wordpiece"];

fn fixture(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tokenizers")
        .join(kind)
}

#[derive(Deserialize)]
struct Expected {
    gt_prompt: String,
    hd_prompt: String,
    gt_ids: Vec<u32>,
    hd_ids: Vec<u32>,
    gt_tokens: Vec<String>,
    hd_tokens: Vec<String>,
    gt_token_types: Vec<u8>,
    hd_token_types: Vec<u8>,
}

fn expected(kind: &str) -> Vec<Expected> {
    let text = std::fs::read_to_string(fixture(kind).join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn ids_tokens_and_types_equal_hugging_face() {
    for kind in KINDS {
        let tokenizer = HfTokenizer::from_file(&fixture(kind).join("tokenizer.json")).unwrap();
        let cases = expected(kind);
        assert!(!cases.is_empty(), "{kind}: no prompts in the fixture");
        for case in &cases {
            // Both types occur in every prompt: the comparison below cannot pass on
            // all-language (or all-time-series) prompts.
            for types in [&case.gt_token_types, &case.hd_token_types] {
                assert!(
                    types.contains(&0) && types.contains(&1),
                    "{kind}: {types:?}"
                );
            }
            let pair = PromptPair {
                gt: case.gt_prompt.clone(),
                hd: case.hd_prompt.clone(),
            };
            let (gt, hd) = tokenizer.encode_pair(&pair).unwrap();
            assert_eq!(
                gt.ids, case.gt_ids,
                "{kind}: GT ids of {:?}",
                case.gt_prompt
            );
            assert_eq!(hd.ids, case.hd_ids, "{kind}: HD ids");
            let texts = |ids: &[u32]| -> Vec<String> {
                ids.iter()
                    .map(|&id| tokenizer.token_text(id).unwrap())
                    .collect()
            };
            assert_eq!(texts(&gt.ids), case.gt_tokens, "{kind}: GT tokens");
            assert_eq!(texts(&hd.ids), case.hd_tokens, "{kind}: HD tokens");
            let codes = |p: &timekd_teacher::EncodedPrompt| -> Vec<u8> {
                p.types.iter().map(|t| t.code()).collect()
            };
            assert_eq!(codes(&gt), case.gt_token_types, "{kind}: GT types");
            assert_eq!(codes(&hd), case.hd_token_types, "{kind}: HD types");
        }
        // Encoding the history once gives the whole prompts' ids (the trait's default).
        let case = &cases[0];
        let head_len = case.gt_prompt.find(" The ").unwrap();
        let (head, gt_rest) = case.gt_prompt.split_at(head_len);
        let hd_rest = &case.hd_prompt[head_len..];
        let pairs = tokenizer
            .encode_pairs_after(head, &[(gt_rest.to_string(), hd_rest.to_string())])
            .unwrap();
        assert_eq!(pairs[0].0.ids, case.gt_ids, "{kind}: head + continuation");
    }
}

#[test]
fn a_model_directory_picks_its_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let config = |model_type: &str| {
        std::fs::write(
            dir.path().join("config.json"),
            format!(r#"{{"model_type": "{model_type}"}}"#),
        )
        .unwrap()
    };
    config("llama");
    let err = Tokenizer::for_model_dir(dir.path())
        .err()
        .expect("no tokenizer.json");
    assert!(
        matches!(&err, TeacherError::TokenizerFile { path, .. } if path.ends_with("tokenizer.json")),
        "{err}"
    );
    std::fs::copy(
        fixture("byte-level-bpe").join("tokenizer.json"),
        dir.path().join("tokenizer.json"),
    )
    .unwrap();
    let llama = Tokenizer::for_model_dir(dir.path()).unwrap();
    assert!(matches!(llama, Tokenizer::HuggingFace(_)));
    assert_eq!(llama.token_text(llama.span_rule().open).unwrap(), "Ġ<");
    // GPT-2 keeps its own tokenizer (the same ids as its tokenizer.json) whatever the file.
    config("gpt2");
    let gpt2 = Tokenizer::for_model_dir(dir.path()).unwrap();
    assert!(matches!(gpt2, Tokenizer::Gpt2(_)));
    assert_eq!(gpt2.span_rule().open, 1279);
}

#[test]
fn a_tokenizer_without_span_tokens_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("wordpiece").join("tokenizer.json")).unwrap(),
    )
    .unwrap();
    json["model"]["vocab"]
        .as_object_mut()
        .unwrap()
        .remove(">")
        .expect("the fixture has `>`");
    let path = dir.path().join("tokenizer.json");
    std::fs::write(&path, json.to_string()).unwrap();
    let err = HfTokenizer::from_file(&path).err().expect("no `>`");
    assert!(err.to_string().contains("no token `>`"), "{err}");
    std::fs::write(&path, "{ not json").unwrap();
    let err = HfTokenizer::from_file(&path)
        .err()
        .expect("not a tokenizer");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}
