//! `timekd inspect` against numbers computed outside this code base.
//!
//! `tests/expected/inspect_expected.json` was produced once by
//! `tests/expected/make_inspect_expected.py` (Python csv + numpy, written from the spec
//! alone) over the benchmark CSVs in `../shared/data`. Those CSVs are read here when present
//! (`TIMEKD_SHARED_DATA` overrides the directory); ETTh1 is also checked through the
//! built-in copy, which needs no shared data.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn shared_data() -> PathBuf {
    std::env::var_os("TIMEKD_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/data"))
}

fn inspect(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_timekd"))
        .arg("inspect")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "inspect {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn assert_close(got: f64, want: f64, what: &str) {
    let rel = (got - want).abs() / want.abs().max(1e-300);
    assert!(
        rel <= 1e-9,
        "{what}: got {got}, expected {want} (relative error {rel:e})"
    );
}

fn check(got: &Value, want: &Value) {
    assert_eq!(got["rows"], want["rows"]);
    assert_eq!(got["variables"], want["variables"]);
    for split in ["train", "val", "test"] {
        for key in ["start", "end", "windows"] {
            assert_eq!(
                got["splits"][split][key], want["splits"][split][key],
                "{split}.{key} of {}",
                want["file"]
            );
        }
    }
    for stat in ["mean", "std"] {
        let g = got["scaler"][stat].as_array().unwrap();
        let w = want["scaler"][stat].as_array().unwrap();
        assert_eq!(g.len(), w.len());
        for (i, (g, w)) in g.iter().zip(w).enumerate() {
            assert_close(
                g.as_f64().unwrap(),
                w.as_f64().unwrap(),
                &format!("{} {stat}[{i}]", want["file"]),
            );
        }
    }
}

fn expected_cases() -> Vec<Value> {
    let text =
        std::fs::read_to_string(repo_root().join("tests/expected/inspect_expected.json")).unwrap();
    serde_json::from_str::<Value>(&text)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn benchmark_files_match_the_numpy_reference() {
    let dir = shared_data();
    let mut checked = 0;
    for case in expected_cases() {
        let path = dir.join(case["file"].as_str().unwrap());
        if !path.is_file() {
            eprintln!("skipping {}: not present", path.display());
            continue;
        }
        let (l, h) = (
            case["input_len"].to_string(),
            case["output_len"].to_string(),
        );
        let got = inspect(&[
            "--data",
            path.to_str().unwrap(),
            "--input-len",
            &l,
            "--output-len",
            &h,
        ]);
        check(&got, &case);
        checked += 1;
    }
    eprintln!("checked {checked} benchmark cases against numpy");
}

#[test]
fn built_in_etth1_matches_the_numpy_reference() {
    let case = expected_cases()
        .into_iter()
        .find(|c| c["file"] == "ETTh1.csv")
        .unwrap();
    let (l, h) = (
        case["input_len"].to_string(),
        case["output_len"].to_string(),
    );
    let got = inspect(&["--input-len", &l, "--output-len", &h]);
    check(&got, &case);
    assert_eq!(got["interval_seconds"], 3600);
    assert_eq!(got["source"], "built-in ETTh1");
}

#[test]
fn hand_checked_small_custom_file() {
    // 20 daily rows, value v = row + 1. a = 14, b = 4, v = 2; L = 3:
    // train [0,14), val [11,16), test [13,20). Train mean 7.5, population variance
    // (14² − 1)/12 = 16.25.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.csv");
    let mut text = String::from("date,v\n");
    for i in 0..20 {
        text.push_str(&format!("2021-03-{:02} 00:00:00,{}\n", i + 1, i + 1));
    }
    std::fs::write(&path, text).unwrap();
    let got = inspect(&[
        "--data",
        path.to_str().unwrap(),
        "--input-len",
        "3",
        "--output-len",
        "1",
    ]);
    assert_eq!(got["interval_seconds"], 86400);
    let splits = &got["splits"];
    let ranges: Vec<(u64, u64, u64)> = ["train", "val", "test"]
        .iter()
        .map(|s| {
            let r = &splits[s];
            (
                r["start"].as_u64().unwrap(),
                r["end"].as_u64().unwrap(),
                r["windows"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ranges, vec![(0, 14, 11), (11, 16, 2), (13, 20, 4)]);
    assert_close(got["scaler"]["mean"][0].as_f64().unwrap(), 7.5, "mean");
    assert_close(
        got["scaler"]["std"][0].as_f64().unwrap(),
        16.25f64.sqrt(),
        "std",
    );
}

#[test]
fn bad_input_exits_non_zero_with_a_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_timekd"))
        .args(["inspect", "--data", "/no/such.csv", "--output-len", "24"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/no/such.csv"), "{stderr}");
}
