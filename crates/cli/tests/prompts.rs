//! `timekd prompts --model DIR --states`: every prompt's last-token state, against the parity
//! fixture's (the release's calibrated GPT-2 forward, PyTorch + transformers, tiny model).

mod common;

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

#[test]
fn prompt_states_match_the_release_forward() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = repo().join("tests/fixtures/parity");
    let model = fixture.join("tiny_gpt2");
    let out = ok(
        timekd(
            dir.path(),
            &[
                "prompts",
                "--output-len",
                "24",
                "--windows",
                "0,5538,6123",
                "--model",
                model.to_str().unwrap(),
                "--states",
            ],
        ),
        "timekd prompts --states",
    );
    let lines = dir.path().join("states.jsonl");
    std::fs::write(&lines, &out.stdout).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3 * 7);
    let stdout = numpy_check(
        CHECK,
        &[&lines, &fixture.join("teacher.safetensors")],
        "states disagree with the fixture",
    );
    eprintln!("{stdout}");
}
