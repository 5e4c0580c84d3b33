//! `timekd prompts --model DIR --states`: every prompt's last-token state, against the parity
//! fixture's (the release's calibrated GPT-2 forward, PyTorch + transformers, tiny model).

mod common;

use std::path::PathBuf;

use common::{numpy_check, ok, refused, repo, timekd};

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

#[test]
fn prompts_show_the_tokens_of_a_checkpoints_tokenizer_json() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("llama-like");
    std::fs::create_dir(&model).unwrap();
    std::fs::write(model.join("config.json"), r#"{"model_type": "llama"}"#).unwrap();
    let fixtures = repo().join("crates/teacher/tests/fixtures/tokenizers/wordpiece");
    std::fs::copy(
        fixtures.join("tokenizer.json"),
        model.join("tokenizer.json"),
    )
    .unwrap();
    // The fixture holds Hugging Face's ids, tokens and types; windows, column and H from it.
    let expected: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(fixtures.join("expected.json")).unwrap()).unwrap();
    let column = expected[0]["column"].as_str().unwrap().to_string();
    let output_len = expected[0]["output_len"].to_string();
    let cases: Vec<&serde_json::Value> = expected
        .iter()
        .filter(|e| e["column"] == column.as_str())
        .collect();
    let windows: Vec<String> = cases.iter().map(|e| e["window"].to_string()).collect();
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
    let out = ok(timekd(dir.path(), &args(false)), "timekd prompts --model");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), cases.len());
    for (line, reference) in lines.iter().zip(&cases) {
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
        }
    }
    // States need the family's model: refused with the reason, not a GPT-2 fallback.
    let err = refused(timekd(dir.path(), &args(true)), "--states of a llama");
    assert!(err.contains("GPT-2 checkpoints only"), "{err}");
}
