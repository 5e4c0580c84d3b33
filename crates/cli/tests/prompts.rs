//! `timekd prompts --model DIR --states`: every prompt's last-token state, against the parity
//! fixture's (the release's calibrated GPT-2 forward, PyTorch + transformers, tiny model).

mod common;

use std::path::PathBuf;

use common::{numpy_check, ok, repo, timekd};

/// Reads the JSON lines (argv[1]) and the fixture's `teacher.safetensors` (argv[2]) and
/// prints the worst relative L2 error of `gt_state` / `hd_state`.
const CHECK: &str = r#"
import json, struct, sys
import numpy as np
lines = [json.loads(l) for l in open(sys.argv[1])]
raw = open(sys.argv[2], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
def tensor(name):
    t = header[name]
    a, b = t["data_offsets"]
    return np.frombuffer(raw[8 + n + a:8 + n + b], dtype="<f4").reshape(t["shape"])
worst = 0.0
for field, key in [("gt_state", "gt_last_token_hidden"), ("hd_state", "hd_last_token_hidden")]:
    expected = tensor(key).reshape(len(lines), -1).astype(np.float64)
    for line, e in zip(lines, expected):
        ours = np.array(line[field], dtype=np.float64)
        worst = max(worst, np.linalg.norm(ours - e) / np.linalg.norm(e))
assert worst <= 1e-4, worst
print("ok", worst)
"#;

/// The parity fixture set: `$TIMEKD_PARITY_DIR`, else the committed copy.
fn fixture_dir() -> PathBuf {
    match std::env::var_os("TIMEKD_PARITY_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => repo().join("tests/fixtures/parity"),
    }
}

#[test]
fn prompt_states_match_the_release_forward() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = fixture_dir();
    let model = fixture.join("tiny_gpt2");
    // Every size from the fixture's meta.json, so another set of the same format passes too.
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture.join("meta.json")).unwrap()).unwrap();
    let text = |v: &serde_json::Value| v.to_string().trim_matches('"').to_string();
    let list = |key: &str| {
        let items: Vec<String> = meta[key].as_array().unwrap().iter().map(text).collect();
        items.join(",")
    };
    let (windows, columns) = (list("windows"), list("columns"));
    let (input_len, output_len) = (text(&meta["input_len"]), text(&meta["output_len"]));
    let data = meta["dataset"].as_str().unwrap_or("ETTh1");
    let out = ok(
        timekd(
            dir.path(),
            &[
                "prompts",
                "--data",
                data,
                "--columns",
                &columns,
                "--input-len",
                &input_len,
                "--output-len",
                &output_len,
                "--windows",
                &windows,
                "--model",
                model.to_str().unwrap(),
                "--states",
            ],
        ),
        "timekd prompts --states",
    );
    let lines = dir.path().join("states.jsonl");
    std::fs::write(&lines, &out.stdout).unwrap();
    let expected =
        meta["windows"].as_array().unwrap().len() * meta["columns"].as_array().unwrap().len();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        expected
    );
    let stdout = numpy_check(
        CHECK,
        &[&lines, &fixture.join("teacher.safetensors")],
        "states disagree with the fixture",
    );
    eprintln!("{stdout}");
}

/// `--model` of another family (the LLaMA fixture: a small random LLaMA-3-shaped checkpoint
/// with a byte-level BPE `tokenizer.json`): that tokenizer's ids, tokens and types, and with
/// `--states` that model's last-token states, both as Hugging Face computed them.
#[test]
fn prompts_show_the_tokens_and_states_of_another_family() {
    let dir = tempfile::tempdir().unwrap();
    let teacher_fixtures = repo().join("crates/teacher/tests/fixtures");
    let model = teacher_fixtures.join("families/llama");
    let tokens = teacher_fixtures.join("tokenizers/byte-level-bpe/expected.json");
    let states = model.join("expected.json");
    // The fixtures hold Hugging Face's ids, tokens and types (and transformers' states, in the
    // same order); windows, column and H from them.
    let expected: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(tokens).unwrap()).unwrap();
    let expected_states: serde_json::Value =
        serde_json::from_slice(&std::fs::read(states).unwrap()).unwrap();
    let column = expected[0]["column"].as_str().unwrap().to_string();
    let output_len = expected[0]["output_len"].to_string();
    let cases: Vec<usize> = (0..expected.len())
        .filter(|&i| expected[i]["column"] == column.as_str())
        .collect();
    let windows: Vec<String> = cases
        .iter()
        .map(|&i| expected[i]["window"].to_string())
        .collect();
    let windows = windows.join(",");
    let args = |states: bool| {
        let mut args = vec![
            "prompts",
            "--data",
            "ETTh1",
            "--output-len",
            &output_len,
            "--windows",
            &windows,
            "--columns",
            &column,
            "--model",
            model.to_str().unwrap(),
        ];
        if states {
            args.push("--states");
        }
        args
    };
    let lines = |out: std::process::Output| -> Vec<serde_json::Value> {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let plain = lines(ok(
        timekd(dir.path(), &args(false)),
        "timekd prompts --model",
    ));
    assert_eq!(plain.len(), cases.len());
    assert!(
        plain[0].get("gt_state").is_none(),
        "no states without --states"
    );
    let with_states = lines(ok(timekd(dir.path(), &args(true)), "--states of a llama"));
    for ((line, stated), &i) in plain.iter().zip(&with_states).zip(&cases) {
        let reference = &expected[i];
        assert_eq!(line["window"], reference["window"]);
        assert_eq!(
            line["gt_prompt"], reference["gt_prompt"],
            "the fixture's prompt"
        );
        for key in [
            "gt_ids",
            "hd_ids",
            "gt_tokens",
            "hd_tokens",
            "gt_token_types",
            "hd_token_types",
        ] {
            assert_eq!(line[key], reference[key], "{key}");
            assert_eq!(stated[key], reference[key], "{key} with --states");
        }
        for key in ["gt_state", "hd_state"] {
            let ours: Vec<f64> = serde_json::from_value(stated[key].clone()).unwrap();
            let theirs: Vec<f64> =
                serde_json::from_value(expected_states["prompts"][i][key].clone()).unwrap();
            assert_eq!(ours.len(), theirs.len(), "{key}: width");
            let diff: f64 = ours.iter().zip(&theirs).map(|(a, b)| (a - b).powi(2)).sum();
            let norm: f64 = theirs.iter().map(|b| b * b).sum();
            let err = (diff / norm).sqrt();
            assert!(
                err <= 1e-4,
                "window {}: {key} relative L2 {err:.2e}",
                line["window"]
            );
        }
    }
}
