//! `timekd forecast` on new data, end to end on ETTh1 H = 24 with tiny stores: a CSV of
//! the last test window's 96 history rows gives that window's test prediction; a backtest
//! over 100 test origins scores as the test does; bad files are refused with errors that
//! name the problem; a checkpoint older than format 3 says what it lacks.

mod common;

use std::path::Path;

use common::{numpy_check, ok, refused, repo, timekd};

/// Compares the forecast CSV (argv[1]) with the last window of pred_inverse.npy (argv[2]),
/// and the backtest metrics JSON (argv[3]) with MSE/MAE over the first 100 windows of
/// pred.npy / true.npy (argv[2]'s directory).
const CHECK: &str = r#"
import csv, json, os, sys
import numpy as np
forecast = np.array([[float(v) for v in row[1:]] for row in list(csv.reader(open(sys.argv[1])))[1:]])
run = os.path.dirname(sys.argv[2])
expected = np.load(sys.argv[2]).astype(np.float64)[-1]
assert forecast.shape == expected.shape, (forecast.shape, expected.shape)
worst = np.max(np.abs(forecast - expected) / np.maximum(1.0, np.abs(expected)))
assert worst <= 1e-6, worst
p = np.load(f"{run}/pred.npy").astype(np.float64)[:100]
t = np.load(f"{run}/true.npy").astype(np.float64)[:100]
m = json.load(open(sys.argv[3]))
assert m["scored_origins"] == 100, m["scored_origins"]
for ours, theirs in [(m["scaled"]["overall"]["mse"], np.mean((p - t) ** 2)),
                     (m["scaled"]["overall"]["mae"], np.mean(np.abs(p - t)))]:
    assert abs(ours - theirs) <= 1e-9 * theirs, (ours, theirs)
print("ok", worst)
"#;

/// ETTh1's lines (header first).
fn etth1_lines() -> Vec<String> {
    std::fs::read_to_string(repo().join("datasets/ETTh1.csv"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// A CSV of the header and data rows `rows` of ETTh1, with `edit` applied to each line.
fn write_rows(
    path: &Path,
    lines: &[String],
    rows: std::ops::Range<usize>,
    edit: impl Fn(&str) -> String,
) {
    let text: String = std::iter::once(edit(&lines[0]))
        .chain(rows.map(|row| edit(&lines[row + 1])))
        .flat_map(|l| [l, "\n".to_string()])
        .collect();
    std::fs::write(path, text).unwrap();
}

#[test]
fn forecasts_of_new_data_equal_the_test_predictions_and_bad_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let model = repo().join("models/tiny-gpt2");
    let data = [
        "--data",
        "ETTh1",
        "--output-len",
        "24",
        "--max-windows",
        "16",
    ];
    let extract = [&["extract", "--model", model.to_str().unwrap()][..], &data].concat();
    ok(timekd(dir, &extract), "timekd extract");
    let train = [&["train"][..], &data, &["--epochs", "1", "--inverse"]].concat();
    ok(timekd(dir, &train), "timekd train");
    let run = dir.join("runs/student/ETTh1/24/seed-2024");
    let best = run.join("checkpoints/best");
    let best = best.to_str().unwrap();
    // `timekd forecast --checkpoint <best> --data <data> <more>`.
    let forecast = |data: &str, more: &[&str]| {
        let args = [
            &["forecast", "--checkpoint", best, "--data", data][..],
            more,
        ]
        .concat();
        timekd(dir, &args)
    };

    // ETTh1's test split is rows 11424..14400 (L = 96): its last window's history is the
    // 96 rows before the last 24.
    let lines = etth1_lines();
    let (test_end, l, h) = (14_400, 96, 24);
    let history = test_end - h - l..test_end - h;
    let csv = dir.join("last_window.csv");
    write_rows(&csv, &lines, history.clone(), str::to_string);
    let csv = csv.to_str().unwrap();
    let out = ok(forecast(csv, &["--out", "forecast.csv"]), "timekd forecast");
    assert!(out.stdout.is_empty());
    let forecast_csv = std::fs::read_to_string(dir.join("forecast.csv")).unwrap();
    let first_date = lines[test_end - h + 1].split(',').next().unwrap();
    assert!(
        forecast_csv.lines().nth(1).unwrap().starts_with(first_date),
        "the forecast continues the data's dates:\n{forecast_csv}"
    );

    // 100 origins: the first 100 test windows' last history rows, as a date range.
    let origin = |window: usize| {
        let row = test_end - 2976 + window + l - 1;
        lines[row + 1].split(',').next().unwrap().to_string()
    };
    let range = format!("{}..{}", origin(0), origin(99));
    ok(
        forecast(
            "ETTh1",
            &[
                "--origins",
                &range,
                "--batch-size",
                "16",
                "--out",
                "backtest.csv",
                "--metrics",
                "backtest.json",
            ],
        ),
        "timekd forecast --origins",
    );
    let backtest = std::fs::read_to_string(dir.join("backtest.csv")).unwrap();
    assert_eq!(backtest.lines().count(), 1 + 100 * 24 * 7);
    assert!(backtest.starts_with("origin,date,variable,forecast,truth\n"));
    let paths = [
        dir.join("forecast.csv"),
        run.join("pred_inverse.npy"),
        dir.join("backtest.json"),
    ];
    numpy_check(
        CHECK,
        &paths.each_ref().map(|p| p.as_path()),
        "numpy disagrees",
    );

    // Bad files: each refused with what is wrong.
    let forecast_from = |name: &str| forecast(dir.join(name).to_str().unwrap(), &[]);
    let without_ot = |line: &str| line.rsplit_once(',').unwrap().0.to_string();
    write_rows(
        &dir.join("missing.csv"),
        &lines,
        history.clone(),
        without_ot,
    );
    let error = refused(forecast_from("missing.csv"), "a missing variable");
    assert!(error.contains("missing: OT"), "{error}");

    let with_extra = |line: &str| {
        format!(
            "{line},{}",
            if line.starts_with("date") {
                "rain"
            } else {
                "0"
            }
        )
    };
    write_rows(&dir.join("extra.csv"), &lines, history.clone(), with_extra);
    let error = refused(forecast_from("extra.csv"), "an extra column");
    assert!(error.contains("did not have: rain"), "{error}");

    let swapped = |line: &str| {
        let mut cells: Vec<&str> = line.split(',').collect();
        cells.swap(1, 2);
        cells.join(",")
    };
    write_rows(&dir.join("reordered.csv"), &lines, history.clone(), swapped);
    let error = refused(forecast_from("reordered.csv"), "reordered variables");
    assert!(error.contains("in the order HULL,HUFL"), "{error}");

    write_rows(
        &dir.join("short.csv"),
        &lines,
        history.start + 1..history.end,
        str::to_string,
    );
    let error = refused(forecast_from("short.csv"), "too few rows");
    assert!(
        error.contains("95 rows, fewer than the model's input length L = 96"),
        "{error}"
    );

    // 97 rows up to the history's end, less one in the middle: 96 rows with a gap.
    let mut gap = lines[history.start..history.end + 1].to_vec();
    gap.remove(50);
    gap.insert(0, lines[0].clone());
    std::fs::write(dir.join("gap.csv"), gap.join("\n") + "\n").unwrap();
    let error = refused(forecast_from("gap.csv"), "a gap");
    assert!(error.contains("3600 s apart"), "{error}");

    let nan = |line: &str| match line.starts_with("date") {
        true => line.to_string(),
        false => format!("{},NaN", line.rsplit_once(',').unwrap().0),
    };
    write_rows(&dir.join("nan.csv"), &lines, history.clone(), nan);
    let error = refused(forecast_from("nan.csv"), "a NaN");
    assert!(error.contains("not a finite number"), "{error}");

    // A checkpoint of format 2 (no contract): the error names what is missing and how to
    // supply it; with --train-data the forecast is the same.
    let state_path = Path::new(best).join("checkpoint.json");
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
    state["version"] = 2.into();
    state["data"].as_object_mut().unwrap().remove("contract");
    std::fs::write(&state_path, serde_json::to_vec(&state).unwrap()).unwrap();
    let error = refused(forecast(csv, &[]), "a format-2 checkpoint");
    assert!(
        error.contains("format version 2") && error.contains("--train-data"),
        "{error}"
    );
    let out = ok(
        forecast(csv, &["--train-data", "ETTh1"]),
        "timekd forecast --train-data",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), forecast_csv);
}
