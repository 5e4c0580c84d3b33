//! Errors of the data crate. Every message says what is wrong, where (file, line, column
//! or flag) and, where it helps, how to fix it.

use std::path::PathBuf;

/// Everything that can go wrong while loading or windowing a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The CSV file could not be read at all.
    #[error("cannot read data file {path}: {source}")]
    Io {
        /// The file at fault.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The CSV parser rejected the file (ragged rows, broken quoting, empty file...).
    #[error("malformed CSV in {path}: {message}")]
    Csv {
        /// The file at fault.
        path: PathBuf,
        /// The parser's description.
        message: String,
    },
    /// The header has no `date` column.
    #[error(
        "{path} has no `date` column (header: {header}); the first column must be named `date`"
    )]
    NoDateColumn {
        /// The file at fault.
        path: PathBuf,
        /// The header as read.
        header: String,
    },
    /// A `date` cell is in none of the supported formats.
    #[error(
        "{path}, line {line}, column `date`: cannot parse {value:?} as a timestamp \
         (expected YYYY-MM-DD HH:MM:SS, YYYY-MM-DD HH:MM, YYYY/M/D H:MM or YYYY-MM-DD)"
    )]
    BadDate {
        /// The file at fault.
        path: PathBuf,
        /// 1-based line of the file (the header is line 1).
        line: usize,
        /// The cell's text.
        value: String,
    },
    /// The header names one column twice (after trimming spaces).
    #[error(
        "{path}: the header names column `{name}` twice (columns {first} and {second}, counting \
         from 1); rename one of them"
    )]
    DuplicateColumn {
        /// The file at fault.
        path: PathBuf,
        /// The repeated name.
        name: String,
        /// 1-based position of its first occurrence.
        first: usize,
        /// 1-based position of its second occurrence.
        second: usize,
    },
    /// A timestamp earlier than the one on the line before it.
    #[error(
        "{path}, line {line}, column `date`: {this} is earlier than {previous} on line {}; \
         the rows must be in time order (sort the file by its date column)",
        line - 1
    )]
    UnsortedDates {
        /// The file at fault.
        path: PathBuf,
        /// 1-based line of the earlier timestamp (the header is line 1).
        line: usize,
        /// Its timestamp.
        this: chrono::NaiveDateTime,
        /// The timestamp of the line before.
        previous: chrono::NaiveDateTime,
    },
    /// A value cell is empty or not a number.
    #[error("{path}, line {line}, column `{column}`: {problem}")]
    BadValue {
        /// The file at fault.
        path: PathBuf,
        /// 1-based line of the file (the header is line 1).
        line: usize,
        /// The column's name.
        column: String,
        /// What is wrong with the cell.
        problem: String,
    },
    /// `--columns` or `--target` names a column the file does not have.
    #[error("{flag} names `{column}`, which {path} does not have (it has: {available})")]
    UnknownColumn {
        /// The flag at fault: `--columns` or `--target`.
        flag: &'static str,
        /// The file searched.
        path: PathBuf,
        /// The missing name.
        column: String,
        /// The value columns the file does have.
        available: String,
    },
    /// `--columns` with `--features S`, which models the target alone.
    #[error(
        "{path}: --columns cannot be combined with --features S, which models the --target \
         column alone; drop --columns, or use --features MS to choose the inputs"
    )]
    ColumnsWithS {
        /// The file being loaded.
        path: PathBuf,
    },
    /// `--features MS` with a `--columns` list that leaves the target out.
    #[error(
        "{path}: --features MS scores the --target column `{target}`, which --columns leaves \
         out; add it to --columns"
    )]
    TargetNotChosen {
        /// The file being loaded.
        path: PathBuf,
        /// The target column.
        target: String,
    },
    /// New data's columns do not match a trained model's variables.
    #[error(
        "{path}: the model's variables are {expected}; {}{}{}",
        if missing.is_empty() { String::new() } else { format!("missing: {}", missing.join(", ")) },
        if missing.is_empty() || extra.is_empty() { "" } else { "; " },
        if extra.is_empty() { String::new() } else {
            format!("columns the training file did not have: {} (remove them)", extra.join(", "))
        }
    )]
    ContractColumns {
        /// The file at fault.
        path: PathBuf,
        /// Variables the file lacks.
        missing: Vec<String>,
        /// Columns the training file did not have.
        extra: Vec<String>,
        /// The variables, model order, comma-separated.
        expected: String,
    },
    /// New data has the model's variables in another order than the training file.
    #[error(
        "{path}: the variables are in the order {found}, the training file had {expected}; \
         reorder the columns"
    )]
    ReorderedColumns {
        /// The file at fault.
        path: PathBuf,
        /// The file's order of the variables.
        found: String,
        /// The training file's order.
        expected: String,
    },
    /// Two consecutive timestamps of a history are not one sampling interval apart.
    #[error(
        "{path}, line {line}, column `date`: {this} follows {previous} on line {}, but the \
         model was trained on rows {interval} s apart; fill the gap (or remove the repeated \
         row) in the history the forecast reads",
        line - 1
    )]
    IrregularStep {
        /// The file at fault.
        path: PathBuf,
        /// 1-based line of the later timestamp.
        line: usize,
        /// Its timestamp.
        this: chrono::NaiveDateTime,
        /// The timestamp on the line before.
        previous: chrono::NaiveDateTime,
        /// The trained interval, seconds.
        interval: i64,
    },
    /// The file has a `date` column but no value column to model.
    #[error("{path} has no numeric value column besides `date`")]
    NoVariables {
        /// The file at fault.
        path: PathBuf,
    },
    /// A length flag is zero.
    #[error("{flag} must be at least 1 (got 0)")]
    ZeroLength {
        /// The flag at fault, e.g. `--input-len`.
        flag: &'static str,
    },
    /// A split is too short to hold one window.
    #[error(
        "{path}: the {split} split has {rows} rows (rows {start}..{end}), fewer than \
         input length + output length = {needed}, so it holds no window; use a shorter \
         --input-len/--output-len or a longer file"
    )]
    SplitTooShort {
        /// The file at fault.
        path: PathBuf,
        /// Which split.
        split: &'static str,
        /// First row of the split.
        start: usize,
        /// End (exclusive) of the split.
        end: usize,
        /// Rows in the split.
        rows: usize,
        /// Rows one window needs.
        needed: usize,
    },
    /// The file is shorter than its preset's fixed split borders (ETT presets).
    #[error(
        "{path} has {rows} rows but the {preset} split rules need {needed} \
         (train/val/test borders are fixed for the ETT family); pass --dataset custom \
         to use ratio splits instead"
    )]
    TooFewRowsForPreset {
        /// The file at fault.
        path: PathBuf,
        /// Preset name.
        preset: &'static str,
        /// Rows in the file.
        rows: usize,
        /// Rows the preset's borders need.
        needed: usize,
    },
    /// `--data` is neither a file nor a dataset name.
    #[error(
        "--data {text}: no such file, and not a dataset name (expected a CSV path or one of \
         ETTh1, ETTh2, ETTm1, ETTm2, weather, exchange_rate, national_illness)"
    )]
    UnknownSource {
        /// What was given.
        text: String,
    },
    /// A dataset name was given whose file is not where names are looked up.
    #[error(
        "--data {name}: only ETTh1 is built in; looked for {} — pass the CSV's path instead",
        looked.display()
    )]
    DatasetFileMissing {
        /// The name given.
        name: String,
        /// The file looked for.
        looked: PathBuf,
    },
    /// An unknown dataset or split name was given.
    #[error("unknown {what} `{name}`; expected one of: {expected}")]
    UnknownName {
        /// What kind of name (`dataset`, `split`).
        what: &'static str,
        /// The name given.
        name: String,
        /// The accepted names.
        expected: &'static str,
    },
}
