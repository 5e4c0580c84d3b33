//! A custom CSV (`--data some/mine.csv`) goes through `timekd extract`, `train` and `eval`
//! with the default store and run locations: training finds the stores extraction wrote.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The first 1500 rows of ETTh1 with two columns, as `<dir>/some/mine.csv`.
fn write_custom_csv(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("datasets/ETTh1.csv")).unwrap();
    let csv: String = text
        .lines()
        .take(1501)
        .map(|line| {
            let cells: Vec<&str> = line.split(',').collect();
            format!("{},{},{}\n", cells[0], cells[1], cells[cells.len() - 1])
        })
        .collect();
    let path = dir.join("some").join("mine.csv");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, csv).unwrap();
    path
}

/// Runs `timekd` in `dir` to success.
fn timekd(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_timekd"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "timekd {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn a_custom_csv_goes_through_extract_train_and_eval() {
    let dir = tempfile::tempdir().unwrap();
    write_custom_csv(dir.path());
    let model = repo().join("models/tiny-gpt2");
    let data = ["--data", "some/mine.csv", "--output-len", "24"];
    let quick = ["--max-windows", "16"];
    let model_flag = ["--model", model.to_str().unwrap()];
    timekd(
        dir.path(),
        &[&["extract"][..], &data, &quick, &model_flag].concat(),
    );
    assert!(
        dir.path()
            .join("runs/embeddings/mine/24/train.h5")
            .is_file()
    );

    timekd(
        dir.path(),
        &[&["train"][..], &data, &quick, &["--epochs", "1"]].concat(),
    );
    let run = dir.path().join("runs/student/mine/24/seed-2024");
    assert!(run.join("summary.json").is_file(), "{}", run.display());

    let best = run.join("checkpoints/best");
    let out = timekd(
        dir.path(),
        &[
            "eval",
            "--checkpoint",
            best.to_str().unwrap(),
            "--data",
            "some/mine.csv",
        ],
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["mse"].as_f64().unwrap().is_finite(), "{report}");
}
