//! The published-results path end to end on ETTh1 H = 24 with tiny stores: `timekd train
//! --seeds 2024,6666 --features MS --inverse` writes each seed's arrays and metrics, then
//! results.csv and the Markdown and LaTeX tables; numpy recomputes every metric from
//! pred.npy / true.npy and agrees with ours to 1e-6.

mod common;

use common::{numpy_check, ok, repo, timekd};

/// Recomputes results.json's metrics from the arrays with numpy; prints "ok" or fails.
const CHECK: &str = r#"
import json, sys
import numpy as np
run = sys.argv[1]
res = json.load(open(f"{run}/results.json"))
def metrics(p, t):
    d = p - t
    nz = t != 0
    r = d[nz] / t[nz]
    return {"mse": np.mean(d ** 2), "mae": np.mean(np.abs(d)), "rmse": np.sqrt(np.mean(d ** 2)),
            "mape": np.mean(np.abs(r)), "mspe": np.mean(r ** 2)}
def close(ours, theirs, where):
    for k, v in theirs.items():
        assert abs(ours[k] - v) <= 1e-6 * max(1.0, abs(v)), (where, k, ours[k], v)
for units, suffix in [("scaled", ""), ("data_units", "_inverse")]:
    p = np.load(f"{run}/pred{suffix}.npy").astype(np.float64)
    t = np.load(f"{run}/true{suffix}.npy").astype(np.float64)
    assert p.shape == t.shape == (res["windows"], res["output_len"], len(res["variables"])), p.shape
    ours = res[units]
    close(ours["overall"], metrics(p, t), units)
    for h, step in enumerate(ours["per_step"]):
        close(step, metrics(p[:, h], t[:, h]), f"{units} step {h}")
    for v, var in enumerate(ours["per_variable"]):
        close(var, metrics(p[:, :, v], t[:, :, v]), f"{units} {var['variable']}")
print("ok", p.shape)
"#;

/// The data flags of these tests: ETTh1, H = 24, the first `windows` windows of each split.
fn etth1_h24(windows: &'static str) -> [&'static str; 6] {
    [
        "--data",
        "ETTh1",
        "--output-len",
        "24",
        "--max-windows",
        windows,
    ]
}

#[test]
fn a_seed_sweep_writes_arrays_metrics_and_tables_numpy_agrees_with() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let model = repo().join("models/tiny-gpt2");
    let data = etth1_h24("16");
    let extract = [&["extract", "--model", model.to_str().unwrap()][..], &data].concat();
    ok(timekd(dir, &extract), "timekd extract");
    // The seed sweep of this test, over `epochs` epochs.
    let sweep_of = |epochs: &'static str| {
        let flags = [
            "--seeds",
            "2024,6666",
            "--features",
            "MS",
            "--inverse",
            "--epochs",
        ];
        [&["train"][..], &data, &flags, &[epochs]].concat()
    };
    let sweep = sweep_of("1");
    let out = ok(timekd(dir, &sweep), "timekd train --seeds");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Two seeds read the train and val stores twice; each is checked once.
    assert_eq!(stderr.matches("checksum verified").count(), 2, "{stderr}");

    let experiment = dir.join("runs/student/ETTh1-MS-OT");
    for seed in ["2024", "6666"] {
        let run = experiment.join("24").join(format!("seed-{seed}"));
        for file in [
            "pred.npy",
            "true.npy",
            "pred_inverse.npy",
            "true_inverse.npy",
            "forecast.png",
        ] {
            assert!(run.join(file).is_file(), "{}", run.join(file).display());
        }
        let results: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run.join("results.json")).unwrap()).unwrap();
        assert_eq!(
            results["variables"],
            serde_json::json!(["OT"]),
            "MS scores the target"
        );
        assert_eq!(results["features"], "MS");
        numpy_check(CHECK, &[&run], &format!("numpy disagrees for seed {seed}"));
    }
    let csv = std::fs::read_to_string(experiment.join("results.csv")).unwrap();
    // Header + 2 seeds × 2 units × 5 metrics.
    assert_eq!(csv.lines().count(), 21, "{csv}");
    assert!(csv.contains("ETTh1,MS,OT,val,24,6666,data,mape,"), "{csv}");
    let md = std::fs::read_to_string(experiment.join("results.md")).unwrap();
    assert!(md.contains("| ETTh1 | MS (OT) | val | 24 | "), "{md}");
    assert!(
        md.contains(" ± ") && md.contains("in the data's units"),
        "{md}"
    );
    assert!(stdout.contains(&md), "the table is printed:\n{stdout}");
    let tex = std::fs::read_to_string(experiment.join("results.tex")).unwrap();
    assert!(
        tex.contains("\\begin{tabular}") && tex.contains("\\pm"),
        "{tex}"
    );

    // S: the target alone, its row read from the same all-variable stores.
    let single = [&["train"][..], &data, &["--features", "S", "--epochs", "1"]].concat();
    ok(timekd(dir, &single), "timekd train --features S");
    let run = dir.join("runs/student/ETTh1-S-OT/24/seed-2024");
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["variables"], serde_json::json!(["OT"]));
    assert_eq!(results["features"], "S");

    // Both selection protocols, side by side; every output names its protocol.
    let both = [
        &["train"][..],
        &data,
        &["--selection", "val,paper", "--epochs", "1"],
    ]
    .concat();
    let out = ok(timekd(dir, &both), "timekd train --selection val,paper");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let side =
        std::fs::read_to_string(dir.join("runs/student/ETTh1/results-by-selection.md")).unwrap();
    for row in ["| ETTh1 | M | val | 24 | ", "| ETTh1 | M | paper | 24 | "] {
        assert!(side.contains(row), "{side}");
    }
    assert!(side.contains("paper = the release's rule"), "{side}");
    assert!(stdout.contains("     paper "), "{stdout}");
    let paper = dir.join("runs/student/ETTh1-paper/24/seed-2024");
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(paper.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["selection"], "paper");
    let metrics = std::fs::read_to_string(paper.join("metrics.jsonl")).unwrap();
    assert!(metrics.contains("\"selection\":\"paper\""), "{metrics}");

    // A finished run is not reused under other settings.
    let other = sweep_of("2");
    let out = timekd(dir, &other);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "reused a run of other settings");
    assert!(
        stderr.contains("trained with other settings (epochs = 1 (now 2))"),
        "{stderr}"
    );

    // Run again: both runs are reused, nothing retrains, the tables are the same.
    let again = ok(timekd(dir, &sweep), "timekd train --seeds (again)");
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(stderr.matches("; reused").count(), 2, "{stderr}");
    assert_eq!(
        std::fs::read_to_string(experiment.join("results.md")).unwrap(),
        md
    );
}

#[test]
fn a_store_without_the_target_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let model = repo().join("models/tiny-gpt2");
    let data = etth1_h24("4");
    let extract = [
        &[
            "extract",
            "--model",
            model.to_str().unwrap(),
            "--columns",
            "HUFL,HULL",
        ][..],
        &data,
    ]
    .concat();
    ok(timekd(dir.path(), &extract), "timekd extract --columns");
    let out = timekd(
        dir.path(),
        &[&["train", "--features", "S"][..], &data].concat(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("no embeddings of OT") && stderr.contains("HUFL, HULL"),
        "{stderr}"
    );
    assert!(stderr.contains("without --columns"), "{stderr}");
}

#[test]
fn bad_sweep_and_feature_flags_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let base = ["train", "--data", "ETTh1", "--output-len", "24"];
    let cases: [(&[&str], &str); 4] = [
        (&["--seeds", "1,1"], "a seed is given twice"),
        (&["--seeds", "1", "--seed", "2"], "cannot be used with"),
        (&["--features", "X"], "M, S, MS"),
        (
            &["--features", "S", "--target", "nope"],
            "--target names `nope`",
        ),
    ];
    for (flags, expected) in cases {
        let out = timekd(dir.path(), &[&base[..], flags].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flags:?} succeeded");
        assert!(stderr.contains(expected), "{flags:?}: {stderr}");
    }
}

#[test]
fn time_series_library_flag_names_and_earlier_names_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let json = |args: &[&str]| ok(timekd(dir.path(), args), "timekd inspect").stdout;
    let ours = json(&[
        "inspect",
        "--data",
        "ETTh1",
        "--input-len",
        "48",
        "--output-len",
        "12",
        "--json",
    ]);
    let tslib = json(&[
        "inspect",
        "--data_path",
        "ETTh1",
        "--seq_len",
        "48",
        "--pred_len",
        "12",
        "--json",
    ]);
    assert_eq!(ours, tslib);
    // `timekd train --out` (the run root's earlier name) reaches the sweep check.
    let out = timekd(
        dir.path(),
        &[
            "train",
            "--output-len",
            "24",
            "--seeds",
            "1,2",
            "--out",
            "runs",
            "--run-dir",
            "x",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("--selection val,paper, runs go under --runs"),
        "{stderr}"
    );
}

/// Reads `results/<setting>/{metrics,pred,true}.npy` and `result_long_term_forecast.txt` as
/// Time-Series-Library's scripts do (`np.load`, its `utils/metrics.py` formulas) and checks
/// that they agree; prints "ok" and the settings.
const TSLIB_CHECK: &str = r#"
import os, sys
import numpy as np
root = sys.argv[1]
settings = sorted(os.listdir(os.path.join(root, "results")))
text = open(os.path.join(root, "result_long_term_forecast.txt")).read()
assert text.count("mse:") == len(settings), text
for s in settings:
    folder = os.path.join(root, "results", s) + "/"
    mae, mse, rmse, mape, mspe = np.load(folder + "metrics.npy")
    preds, trues = np.load(folder + "pred.npy"), np.load(folder + "true.npy")
    assert preds.dtype == np.float32 and preds.shape == trues.shape and preds.ndim == 3
    theirs = {"mae": np.mean(np.abs(trues - preds)), "mse": np.mean((trues - preds) ** 2)}
    theirs["rmse"] = np.sqrt(theirs["mse"])
    theirs["mape"] = np.mean(np.abs((trues - preds) / trues))
    theirs["mspe"] = np.mean(np.square((trues - preds) / trues))
    ours = {"mae": mae, "mse": mse, "rmse": rmse, "mape": mape, "mspe": mspe}
    for k in theirs:
        assert abs(ours[k] - theirs[k]) <= 1e-5 * abs(theirs[k]), (s, k, ours[k], theirs[k])
    line = text.split(s + "  \n", 1)[1].split("\n", 1)[0]
    txt_mse, txt_mae = (float(part.split(":")[1]) for part in line.split(", "))
    assert abs(txt_mse - mse) <= 1e-6 * mse and abs(txt_mae - mae) <= 1e-6 * mae, line
print("ok", " ".join(settings))
"#;

#[test]
fn time_series_library_files_read_back_as_its_scripts_read_them() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let model = repo().join("models/tiny-gpt2");
    let datasets = repo().join("datasets");
    let data = [
        "--root_path",
        datasets.to_str().unwrap(),
        "--data_path",
        "ETTh1.csv",
        "--pred_len",
        "24",
        "--max-windows",
        "16",
    ];
    let extract = [&["extract", "--model", model.to_str().unwrap()][..], &data].concat();
    ok(timekd(dir, &extract), "timekd extract");
    let train = [
        &["train"][..],
        &data,
        &["--itr", "2", "--inverse", "--epochs", "1", "--tslib", "tsl"],
    ]
    .concat();
    ok(timekd(dir, &train), "timekd train --itr 2 --tslib");
    // Again (the runs are reused): each setting's block is replaced, not appended twice.
    ok(timekd(dir, &train), "timekd train --itr 2 --tslib (again)");
    let stdout = numpy_check(TSLIB_CHECK, &[&dir.join("tsl")], "numpy disagrees");
    let prefix = "long_term_forecast_ETTh1_96_24_TimeKD_ETTh1_ftM_sl96_ll0_pl24_dm64_nh4_el2_dl0";
    for ii in ["0", "1"] {
        assert!(
            stdout.contains(&format!(
                "{prefix}_df3072_expand2_dc4_fc1_ebtimeF_dtTrue_Exp_{ii}"
            )),
            "{stdout}"
        );
    }
    // --itr 2 trained seeds 2024 and 2025.
    assert!(
        dir.join("runs/student/ETTh1/24/seed-2025/results.json")
            .is_file()
    );
}
