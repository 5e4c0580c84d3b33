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

const QUICK: [&str; 2] = ["--max-windows", "16"];

/// `<dir>/some/mine.csv`, its H = 24 stores extracted and a one-epoch student trained on
/// them, all at the default locations; returns the run directory.
fn extract_and_train(dir: &Path) -> PathBuf {
    write_custom_csv(dir);
    let model = repo().join("models/tiny-gpt2");
    let data = ["--data", "some/mine.csv", "--output-len", "24"];
    let model_flag = ["--model", model.to_str().unwrap()];
    timekd(
        dir,
        &[&["extract"][..], &data, &QUICK, &model_flag].concat(),
    );
    assert!(dir.join("runs/embeddings/mine/24/train.h5").is_file());

    timekd(
        dir,
        &[&["train"][..], &data, &QUICK, &["--epochs", "1"]].concat(),
    );
    let run = dir.join("runs/student/mine/24/seed-2024");
    assert!(run.join("summary.json").is_file(), "{}", run.display());
    run
}

#[test]
fn a_custom_csv_goes_through_extract_train_and_eval() {
    let dir = tempfile::tempdir().unwrap();
    let run = extract_and_train(dir.path());
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

#[test]
fn training_several_lengths_skips_missing_stores_and_reuses_finished_runs() {
    let dir = tempfile::tempdir().unwrap();
    let run = extract_and_train(dir.path());
    let before = std::fs::read(run.join("summary.json")).unwrap();
    // The settings of the finished run (a run of other settings is refused, see results.rs).
    let data = [
        "--data",
        "some/mine.csv",
        "--output-len",
        "24,36",
        "--epochs",
        "1",
    ];
    let out = timekd(dir.path(), &[&["train"][..], &data, &QUICK].concat());
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(stderr.contains("H = 24: finished run in"), "{stderr}");
    assert!(stderr.contains("H = 36: skipped"), "{stderr}");
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with(char::is_numeric))
        .collect();
    assert_eq!(rows.len(), 1, "one row, for H = 24:\n{stdout}");
    assert!(rows[0].trim_start().starts_with("24 "), "{stdout}");
    assert_eq!(std::fs::read(run.join("summary.json")).unwrap(), before);
}
