//! Reading a benchmark-style CSV (`date` column + numeric variables) into columns.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use chrono::NaiveDateTime;
use polars::prelude::{CsvEncoding, CsvParseOptions, CsvReadOptions, DataFrame, SerReader};

use crate::time::parse_timestamp;
use crate::{DataError, Features, Preset};

/// The parsed file: timestamps plus one `Vec<f64>` per chosen variable (model order).
#[derive(Debug, Clone)]
pub(crate) struct Table {
    pub path: PathBuf,
    /// The chosen variables, model order.
    pub names: Vec<String>,
    /// Every value column of the file (all but `date`), in file order.
    pub file_columns: Vec<String>,
    pub timestamps: Vec<NaiveDateTime>,
    pub columns: Vec<Vec<f64>>,
    /// What is accepted but worth saying (see [`crate::Dataset::notes`]).
    pub notes: Vec<String>,
}

/// Which columns to model and in which order.
pub(crate) struct ColumnChoice<'a> {
    pub preset: Preset,
    pub columns: Option<&'a [String]>,
    pub target: &'a str,
    pub features: Features,
}

/// 1-based line of the file holding data row `row` (the header is line 1).
pub(crate) fn line_of(row: usize) -> usize {
    row + 2
}

/// Parses CSV bytes, keeping the columns `choice` picks. `path` names the source in errors.
pub(crate) fn parse_csv(
    bytes: &[u8],
    path: &Path,
    choice: &ColumnChoice,
) -> Result<Table, DataError> {
    parse_with(bytes, path, |available| {
        choose_columns(available, choice, path)
    })
}

/// Parses CSV bytes keeping every value column, in file order.
pub(crate) fn parse_csv_as_is(bytes: &[u8], path: &Path) -> Result<Table, DataError> {
    parse_with(bytes, path, |available| {
        Ok(available.iter().map(|name| name.to_string()).collect())
    })
}

/// Parses CSV bytes; `choose` picks the variables (model order) from the value columns.
fn parse_with(
    bytes: &[u8],
    path: &Path,
    choose: impl FnOnce(&[&String]) -> Result<Vec<String>, DataError>,
) -> Result<Table, DataError> {
    check_header(bytes, path)?;
    let frame = read_as_text(bytes, path)?;
    let header: Vec<String> = frame
        .get_column_names()
        .iter()
        .map(|name| name.trim().to_string())
        .collect();
    let date_index = header
        .iter()
        .position(|name| name == "date")
        .ok_or_else(|| DataError::NoDateColumn {
            path: path.to_path_buf(),
            header: header.join(","),
        })?;
    let value_names: Vec<&String> = header
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != date_index)
        .map(|(_, n)| n)
        .collect();
    if value_names.is_empty() {
        return Err(DataError::NoVariables {
            path: path.to_path_buf(),
        });
    }
    let chosen = choose(&value_names)?;

    let raw_columns = frame.columns();
    let timestamps = parse_dates(
        raw_columns[date_index]
            .str()
            .map_err(|e| csv_error(path, e))?,
        path,
    )?;
    let notes = check_order(&timestamps, path)?;
    let mut columns = Vec::with_capacity(chosen.len());
    for name in &chosen {
        let index = header
            .iter()
            .position(|h| h == name)
            .expect("chosen from header");
        let cells = raw_columns[index].str().map_err(|e| csv_error(path, e))?;
        columns.push(parse_values(cells, name, path)?);
    }
    Ok(Table {
        path: path.to_path_buf(),
        names: chosen,
        file_columns: value_names.into_iter().cloned().collect(),
        timestamps,
        columns,
        notes,
    })
}

/// Refuses a header that names a column twice (polars would rename one silently).
fn check_header(bytes: &[u8], path: &Path) -> Result<(), DataError> {
    let first_line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let header = String::from_utf8_lossy(first_line);
    let names: Vec<&str> = header
        .split(',')
        .map(|name| name.trim().trim_matches('"').trim())
        .collect();
    for (second, name) in names.iter().enumerate() {
        if let Some(first) = names[..second].iter().position(|n| n == name) {
            return Err(DataError::DuplicateColumn {
                path: path.to_path_buf(),
                name: name.to_string(),
                first: first + 1,
                second: second + 1,
            });
        }
    }
    Ok(())
}

/// Refuses timestamps that go back in time; a timestamp repeated on consecutive lines (one
/// in the benchmark weather.csv, lines 19045-19046) is kept, and noted.
fn check_order(timestamps: &[NaiveDateTime], path: &Path) -> Result<Vec<String>, DataError> {
    let mut repeated = Vec::new();
    for (row, pair) in timestamps.windows(2).enumerate() {
        let (previous, this) = (pair[0], pair[1]);
        if this < previous {
            return Err(DataError::UnsortedDates {
                path: path.to_path_buf(),
                line: line_of(row + 1),
                this,
                previous,
            });
        }
        if this == previous {
            repeated.push(line_of(row + 1));
        }
    }
    let shown: Vec<String> = repeated.iter().take(5).map(|l| l.to_string()).collect();
    Ok(match repeated.len() {
        0 => Vec::new(),
        n => vec![format!(
            "{}: {n} line(s) repeat the timestamp of the line before (line {}{}); kept as \
             rows of their own",
            path.display(),
            shown.join(", "),
            if n > shown.len() { ", ..." } else { "" }
        )],
    })
}

/// Reads every column as text so that each cell's problem can be reported precisely.
fn read_as_text(bytes: &[u8], path: &Path) -> Result<DataFrame, DataError> {
    CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(Some(0))
        .with_parse_options(CsvParseOptions::default().with_encoding(CsvEncoding::LossyUtf8))
        .into_reader_with_file_handle(Cursor::new(bytes))
        .finish()
        .map_err(|e| csv_error(path, e))
}

fn csv_error(path: &Path, error: impl std::fmt::Display) -> DataError {
    DataError::Csv {
        path: path.to_path_buf(),
        message: error.to_string(),
    }
}

/// Applies `--features`, `--columns` (exact order) and the preset's default order (target
/// last outside ETT; last everywhere in `MS`).
fn choose_columns(
    available: &[&String],
    choice: &ColumnChoice,
    path: &Path,
) -> Result<Vec<String>, DataError> {
    let names = match choice.columns {
        Some(_) if choice.features == Features::S => {
            return Err(DataError::ColumnsWithS {
                path: path.to_path_buf(),
            });
        }
        Some(wanted) => wanted
            .iter()
            .map(|name| find_column(available, name.trim(), path, "--columns"))
            .collect::<Result<Vec<String>, DataError>>()?,
        None => available.iter().map(|a| a.to_string()).collect(),
    };
    match choice.features {
        Features::M => Ok(move_target_last(
            names,
            choice,
            choice.preset.moves_target_last(),
        )),
        Features::S => Ok(vec![find_column(
            available,
            choice.target,
            path,
            "--target",
        )?]),
        Features::MS => {
            if !names.iter().any(|n| n == choice.target) {
                // Not in the file at all, or left out of `--columns`.
                find_column(available, choice.target, path, "--target")?;
                return Err(DataError::TargetNotChosen {
                    path: path.to_path_buf(),
                    target: choice.target.to_string(),
                });
            }
            Ok(move_target_last(names, choice, true))
        }
    }
}

/// The value column called `name`, or an error that names `flag` and lists the columns.
fn find_column(
    available: &[&String],
    name: &str,
    path: &Path,
    flag: &'static str,
) -> Result<String, DataError> {
    available
        .iter()
        .find(|a| a.as_str() == name)
        .map(|a| a.to_string())
        .ok_or_else(|| DataError::UnknownColumn {
            flag,
            path: path.to_path_buf(),
            column: name.to_string(),
            available: available
                .iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// `names` with the target moved last when `apply` (and it is there). An explicit
/// `--columns` order is kept in `M`.
fn move_target_last(mut names: Vec<String>, choice: &ColumnChoice, apply: bool) -> Vec<String> {
    let explicit_order = choice.columns.is_some() && choice.features == Features::M;
    if apply
        && !explicit_order
        && let Some(position) = names.iter().position(|n| n == choice.target)
    {
        let target = names.remove(position);
        names.push(target);
    }
    names
}

fn parse_dates(
    cells: &polars::prelude::StringChunked,
    path: &Path,
) -> Result<Vec<NaiveDateTime>, DataError> {
    cells
        .iter()
        .enumerate()
        .map(|(row, cell)| {
            let text = cell.unwrap_or("");
            parse_timestamp(text).ok_or_else(|| DataError::BadDate {
                path: path.to_path_buf(),
                line: line_of(row),
                value: text.to_string(),
            })
        })
        .collect()
}

/// Parses one value column. Finite numbers only; sentinels such as weather's `-9999.0`
/// are ordinary numbers and kept as data.
fn parse_values(
    cells: &polars::prelude::StringChunked,
    column: &str,
    path: &Path,
) -> Result<Vec<f64>, DataError> {
    cells
        .iter()
        .enumerate()
        .map(|(row, cell)| {
            let bad = |problem: String| DataError::BadValue {
                path: path.to_path_buf(),
                line: line_of(row),
                column: column.to_string(),
                problem,
            };
            let text = cell.map(str::trim).unwrap_or("");
            if text.is_empty() {
                return Err(bad("empty cell; every value must be a number".into()));
            }
            let value: f64 = text
                .parse()
                .map_err(|_| bad(format!("{text:?} is not a number")))?;
            if value.is_finite() {
                Ok(value)
            } else {
                Err(bad(format!(
                    "{text:?} is not a finite number (NaN and infinities are not allowed)"
                )))
            }
        })
        .collect()
}
