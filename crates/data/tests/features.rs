//! `--features` M / S / MS: which columns a dataset models, and clear errors for
//! combinations that cannot work.

use std::path::Path;

use timekd_data::{Dataset, DatasetOptions, Features};

/// 200 hourly rows of `date,OT,a,b` (the target first, so that moving it shows).
fn csv() -> String {
    let mut text = String::from("date,OT,a,b\n");
    for i in 0..200 {
        let (day, hour) = (1 + i / 24, i % 24);
        text.push_str(&format!(
            "2020-01-{day:02} {hour:02}:00:00,{i},{},{}\n",
            2 * i,
            3 * i
        ));
    }
    text
}

fn load(features: Features, columns: Option<&[&str]>, target: &str) -> Result<Dataset, String> {
    let options = DatasetOptions {
        features,
        columns: columns.map(|c| c.iter().map(|s| s.to_string()).collect()),
        target: target.into(),
        input_len: 8,
        output_len: 4,
        ..Default::default()
    };
    Dataset::from_csv_bytes(csv().as_bytes(), Path::new("series.csv"), &options)
        .map_err(|e| e.to_string())
}

#[test]
fn each_mode_models_its_columns() {
    let names = |f, c, t| load(f, c, t).unwrap().var_names().to_vec();
    assert_eq!(names(Features::M, None, "OT"), ["a", "b", "OT"]);
    assert_eq!(names(Features::S, None, "OT"), ["OT"]);
    assert_eq!(names(Features::S, None, "a"), ["a"]);
    assert_eq!(names(Features::MS, None, "a"), ["OT", "b", "a"]);
    assert_eq!(
        names(Features::MS, Some(&["b", "a", "OT"]), "b"),
        ["a", "OT", "b"]
    );
    // M keeps an explicit --columns order as it is.
    assert_eq!(names(Features::M, Some(&["OT", "a"]), "OT"), ["OT", "a"]);
    // S scales the target with its own train statistics: the same as in M.
    let s = load(Features::S, None, "OT").unwrap();
    let m = load(Features::M, None, "OT").unwrap();
    assert_eq!(s.scaled_column(0), m.scaled_column(2));
}

#[test]
fn impossible_combinations_say_what_to_change() {
    let err = load(Features::S, Some(&["a"]), "OT").unwrap_err();
    assert!(
        err.contains("--columns") && err.contains("--features S"),
        "{err}"
    );
    let err = load(Features::S, None, "zz").unwrap_err();
    assert!(
        err.contains("--target names `zz`") && err.contains("OT, a, b"),
        "{err}"
    );
    let err = load(Features::MS, None, "zz").unwrap_err();
    assert!(err.contains("--target names `zz`"), "{err}");
    let err = load(Features::MS, Some(&["a", "b"]), "OT").unwrap_err();
    assert!(
        err.contains("--features MS") && err.contains("`OT`"),
        "{err}"
    );
}
