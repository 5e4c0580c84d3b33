//! Every kind of bad input gets an error whose message names the problem and its place.

use std::path::PathBuf;

use timekd_data::{Dataset, DatasetOptions, Preset};

const HEADER: &str = "date,a,b,OT";

/// A well-formed custom CSV of `rows` hourly rows.
fn good_rows(rows: usize) -> Vec<String> {
    (0..rows)
        .map(|i| {
            format!(
                "2020-01-{:02} {:02}:00:00,{},{}.5,{}",
                1 + i / 24,
                i % 24,
                i,
                i,
                2 * i
            )
        })
        .collect()
}

fn write_csv(dir: &tempfile::TempDir, name: &str, header: &str, rows: &[String]) -> PathBuf {
    let path = dir.path().join(name);
    let mut text = String::from(header);
    for row in rows {
        text.push('\n');
        text.push_str(row);
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn options(l: usize, h: usize) -> DatasetOptions {
    DatasetOptions {
        input_len: l,
        output_len: h,
        ..Default::default()
    }
}

fn error_for(header: &str, rows: &[String], opts: &DatasetOptions) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = write_csv(&dir, "series.csv", header, rows);
    Dataset::load(&path, opts).unwrap_err().to_string()
}

fn assert_mentions(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "expected {part:?} in: {message}");
    }
}

#[test]
fn good_custom_file_loads_with_target_last() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_csv(&dir, "series.csv", "date,OT,a,b", &good_rows(200));
    let data = Dataset::load(&path, &options(8, 4)).unwrap();
    assert_eq!(data.var_names(), ["a", "b", "OT"]);
    assert_eq!(data.interval_seconds(), 3600);
    assert_eq!(data.preset(), Preset::Custom);
}

#[test]
fn missing_file() {
    let err = Dataset::load("/nonexistent/x.csv".as_ref(), &options(8, 4))
        .unwrap_err()
        .to_string();
    assert_mentions(&err, &["/nonexistent/x.csv", "cannot read"]);
}

#[test]
fn no_date_column() {
    let err = error_for("time,a,b,OT", &good_rows(200), &options(8, 4));
    assert_mentions(&err, &["series.csv", "no `date` column", "time,a,b,OT"]);
}

#[test]
fn unparsable_date() {
    let mut rows = good_rows(200);
    rows[4] = "2020-01-01 4am,1,2,3".into();
    let err = error_for(HEADER, &rows, &options(8, 4));
    assert_mentions(&err, &["series.csv", "line 6", "date", "2020-01-01 4am"]);
}

#[test]
fn non_numeric_cell() {
    let mut rows = good_rows(200);
    rows[9] = "2020-01-01 09:00:00,1,abc,3".into();
    let err = error_for(HEADER, &rows, &options(8, 4));
    assert_mentions(&err, &["line 11", "column `b`", "\"abc\" is not a number"]);
}

#[test]
fn empty_cell() {
    let mut rows = good_rows(200);
    rows[0] = "2020-01-01 00:00:00,1,,3".into();
    let err = error_for(HEADER, &rows, &options(8, 4));
    assert_mentions(&err, &["line 2", "column `b`", "empty cell"]);
}

#[test]
fn nan_and_infinity() {
    for bad in ["NaN", "inf", "-inf"] {
        let mut rows = good_rows(200);
        rows[2] = format!("2020-01-01 02:00:00,{bad},2,3");
        let err = error_for(HEADER, &rows, &options(8, 4));
        assert_mentions(&err, &["line 4", "column `a`", "not a finite number"]);
    }
}

#[test]
fn sentinel_values_are_data() {
    let mut rows = good_rows(200);
    rows[2] = "2020-01-01 02:00:00,-9999.0,2,3".into();
    let dir = tempfile::tempdir().unwrap();
    let path = write_csv(&dir, "series.csv", HEADER, &rows);
    let data = Dataset::load(&path, &options(8, 4)).unwrap();
    assert_eq!(data.raw_column(0)[2], -9999.0);
}

#[test]
fn ragged_row() {
    let mut rows = good_rows(200);
    rows[3] = "2020-01-01 03:00:00,1,2,3,4,5".into();
    let err = error_for(HEADER, &rows, &options(8, 4));
    assert_mentions(&err, &["malformed CSV", "series.csv"]);
}

#[test]
fn split_too_short() {
    // 200 rows: custom test split has 40 + L rows; L + H = 8 + 100 does not fit.
    let err = error_for(HEADER, &good_rows(200), &options(8, 100));
    assert_mentions(
        &err,
        &["split has", "fewer than", "108", "--input-len/--output-len"],
    );
}

#[test]
fn ett_file_shorter_than_its_borders() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_csv(&dir, "ETTh1.csv", HEADER, &good_rows(500));
    let err = Dataset::load(&path, &options(8, 4))
        .unwrap_err()
        .to_string();
    assert_mentions(&err, &["500 rows", "ETTh1", "14400", "--dataset custom"]);
}

#[test]
fn unknown_column() {
    let opts = DatasetOptions {
        columns: Some(vec!["a".into(), "zz".into()]),
        ..options(8, 4)
    };
    let err = error_for(HEADER, &good_rows(200), &opts);
    assert_mentions(&err, &["--columns", "`zz`", "a, b, OT"]);
}

#[test]
fn columns_keep_the_given_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_csv(&dir, "series.csv", HEADER, &good_rows(200));
    let opts = DatasetOptions {
        columns: Some(vec!["OT".into(), "a".into()]),
        ..options(8, 4)
    };
    let data = Dataset::load(&path, &opts).unwrap();
    assert_eq!(data.var_names(), ["OT", "a"]);
}

#[test]
fn zero_lengths() {
    let err = error_for(HEADER, &good_rows(200), &options(0, 4));
    assert_mentions(&err, &["--input-len", "at least 1"]);
    let err = error_for(HEADER, &good_rows(200), &options(8, 0));
    assert_mentions(&err, &["--output-len", "at least 1"]);
}

#[test]
fn crlf_and_replacement_characters_in_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("series.csv");
    let mut text = String::from("date,SWDR (W/m\u{FFFD}),OT\r\n");
    for row in good_rows(200) {
        let cells: Vec<&str> = row.split(',').collect();
        text.push_str(&format!("{},{},{}\r\n", cells[0], cells[1], cells[3]));
    }
    std::fs::write(&path, text).unwrap();
    let data = Dataset::load(&path, &options(8, 4)).unwrap();
    assert_eq!(data.var_names(), ["SWDR (W/m\u{FFFD})", "OT"]);
    assert_eq!(data.raw_column(1)[199], 398.0);
}

#[test]
fn head_keeps_the_first_windows() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_csv(&dir, "series.csv", HEADER, &good_rows(200));
    let data = Dataset::load(&path, &options(8, 4)).unwrap();
    let train = data.split(timekd_data::SplitKind::Train);
    let head = train.head(5);
    assert_eq!(head.num_windows(), 5);
    assert_eq!(
        head.window(4).history_raw(0),
        train.window(4).history_raw(0)
    );
    assert_eq!(train.head(10_000).num_windows(), train.num_windows());
}

#[test]
fn a_column_named_twice_is_refused_naming_both_places() {
    let rows: Vec<String> = good_rows(200)
        .iter()
        .map(|r| format!("{r},{}", r.len()))
        .collect();
    let err = error_for("date,a,b,OT, a", &rows, &options(8, 4));
    assert_mentions(
        &err,
        &[
            "series.csv",
            "column `a` twice",
            "columns 2 and 5",
            "rename",
        ],
    );
}

#[test]
fn dates_going_back_are_refused_naming_the_lines() {
    let mut rows = good_rows(200);
    rows.swap(40, 41);
    let err = error_for(HEADER, &rows, &options(8, 4));
    // Data row 41 is line 43 (the header is line 1).
    assert_mentions(
        &err,
        &[
            "series.csv, line 43",
            "2020-01-02 16:00:00 is earlier than 2020-01-02 17:00:00 on line 42",
            "sort",
        ],
    );
}

#[test]
fn a_repeated_timestamp_and_a_constant_column_are_kept_and_noted() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows = good_rows(200);
    // weather.csv has one repeated timestamp (lines 19045-19046); here line 12 repeats line 11.
    rows[10] = rows[9].replacen(",9,", ",10,", 1);
    // A constant column `c` (std 0 on the train rows).
    let rows: Vec<String> = rows.iter().map(|r| format!("{r},3.5")).collect();
    let path = write_csv(&dir, "series.csv", "date,a,b,OT,c", &rows);
    let data = Dataset::load(&path, &options(8, 4)).unwrap();
    assert_eq!(data.rows(), 200, "the repeated row is kept");
    let notes = data.notes().join("\n");
    assert_mentions(&notes, &["1 line(s) repeat the timestamp", "line 12"]);
    assert_mentions(
        &notes,
        &["column `c` is constant (3.5)", "std is taken as 1"],
    );
    let c = data.var_names().iter().position(|n| n == "c").unwrap();
    assert!(data.scaled_column(c).iter().all(|v| *v == 0.0));
    // A clean file has no notes.
    let clean = write_csv(&dir, "clean.csv", HEADER, &good_rows(200));
    assert!(
        Dataset::load(&clean, &options(8, 4))
            .unwrap()
            .notes()
            .is_empty()
    );
}
