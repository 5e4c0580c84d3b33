//! A loaded dataset: columns, splits, scaler; and views of its splits and windows.

use std::ops::Range;
use std::path::Path;

use chrono::NaiveDateTime;

use crate::batch::{BatchIter, BatchOrder};
use crate::csv::{ColumnChoice, Table, parse_csv};
use crate::split::split_ranges;
use crate::time::infer_interval_seconds;
use crate::{DataError, Features, FittedRows, Preset, Scaler, SeriesContract, SplitKind, TimeMark};

/// How to read a CSV and cut it into windows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetOptions {
    /// Split rules and prompt wording; `None` detects it from the file name.
    pub preset: Option<Preset>,
    /// Variables to model, in this order; `None` takes every value column.
    pub columns: Option<Vec<String>>,
    /// Target column, moved last for datasets outside the ETT family (and for every dataset
    /// in [`Features::MS`]).
    pub target: String,
    /// Which variables to model: all (`M`), the target alone (`S`), or all with the target
    /// last (`MS`).
    pub features: Features,
    /// History length L.
    pub input_len: usize,
    /// Forecast length H.
    pub output_len: usize,
}

impl Default for DatasetOptions {
    fn default() -> Self {
        DatasetOptions {
            preset: None,
            columns: None,
            target: "OT".into(),
            features: Features::M,
            input_len: 96,
            output_len: 96,
        }
    }
}

/// A multivariate series with its splits, scaler and windows.
///
/// Values are held column-major (one contiguous `Vec<f64>` per variable), raw and
/// z-scored, so every window of every variable is a zero-copy slice.
#[derive(Debug, Clone)]
pub struct Dataset {
    table: Table,
    scaled: Vec<Vec<f64>>,
    preset: Preset,
    features: Features,
    target: String,
    input_len: usize,
    output_len: usize,
    scaler: Scaler,
    splits: [Range<usize>; 3],
    interval_seconds: i64,
}

impl Dataset {
    /// Reads and windows a CSV file.
    pub fn load(path: &Path, options: &DatasetOptions) -> Result<Dataset, DataError> {
        let bytes = std::fs::read(path).map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Dataset::from_csv_bytes(&bytes, path, options)
    }

    /// Windows CSV content already in memory; `source` names it in errors and picks the
    /// preset when `options.preset` is `None`.
    pub fn from_csv_bytes(
        bytes: &[u8],
        source: &Path,
        options: &DatasetOptions,
    ) -> Result<Dataset, DataError> {
        if options.input_len == 0 {
            return Err(DataError::ZeroLength {
                flag: "--input-len",
            });
        }
        if options.output_len == 0 {
            return Err(DataError::ZeroLength {
                flag: "--output-len",
            });
        }
        let preset = options.preset.unwrap_or_else(|| Preset::detect(source));
        let choice = ColumnChoice {
            preset,
            columns: options.columns.as_deref(),
            target: &options.target,
            features: options.features,
        };
        let mut table = parse_csv(bytes, source, &choice)?;
        let rows = table.timestamps.len();
        let splits = split_ranges(preset, rows, options.input_len).map_err(|e| {
            DataError::TooFewRowsForPreset {
                path: source.to_path_buf(),
                preset: preset.name(),
                rows,
                needed: e.needed,
            }
        })?;
        let needed = options.input_len + options.output_len;
        for (kind, range) in SplitKind::ALL.iter().zip(&splits) {
            if range.len() < needed {
                return Err(DataError::SplitTooShort {
                    path: source.to_path_buf(),
                    split: kind.name(),
                    start: range.start,
                    end: range.end,
                    rows: range.len(),
                    needed,
                });
            }
        }
        let scaler = Scaler::fit(&table.columns, splits[0].clone());
        for (name, column) in table.names.iter().zip(&table.columns) {
            let train = &column[splits[0].clone()];
            if train.iter().all(|v| *v == train[0]) {
                table.notes.push(format!(
                    "{}: column `{name}` is constant ({}) on the train rows: its std is taken \
                     as 1, so it is scaled to value − {} (0 on every train row)",
                    source.display(),
                    train[0],
                    train[0]
                ));
            }
        }
        let scaled = table
            .columns
            .iter()
            .enumerate()
            .map(|(var, column)| column.iter().map(|v| scaler.scale(var, *v)).collect())
            .collect();
        let interval_seconds = infer_interval_seconds(&table.timestamps).unwrap_or(0);
        Ok(Dataset {
            table,
            scaled,
            preset,
            features: options.features,
            target: options.target.clone(),
            input_len: options.input_len,
            output_len: options.output_len,
            scaler,
            splits,
            interval_seconds,
        })
    }

    /// The preset whose split rules and wording apply.
    pub fn preset(&self) -> Preset {
        self.preset
    }
    /// History length L.
    pub fn input_len(&self) -> usize {
        self.input_len
    }
    /// Forecast length H.
    pub fn output_len(&self) -> usize {
        self.output_len
    }
    /// Number of variables N.
    pub fn n_vars(&self) -> usize {
        self.table.names.len()
    }
    /// Variable names in model order.
    pub fn var_names(&self) -> &[String] {
        &self.table.names
    }
    /// Data rows in the file.
    pub fn rows(&self) -> usize {
        self.table.timestamps.len()
    }
    /// The most common step between timestamps, in seconds (0 if it cannot be told).
    pub fn interval_seconds(&self) -> i64 {
        self.interval_seconds
    }
    /// Timestamps of all rows.
    pub fn timestamps(&self) -> &[NaiveDateTime] {
        &self.table.timestamps
    }
    /// Unscaled values of one variable, all rows.
    pub fn raw_column(&self, var: usize) -> &[f64] {
        &self.table.columns[var]
    }
    /// Z-scored values of one variable, all rows.
    pub fn scaled_column(&self, var: usize) -> &[f64] {
        &self.scaled[var]
    }
    /// The scaler fitted on the train rows.
    pub fn scaler(&self) -> &Scaler {
        &self.scaler
    }
    /// Where the data came from.
    pub fn source_path(&self) -> &Path {
        &self.table.path
    }
    /// What the file has that is accepted but worth telling the user, one sentence each:
    /// lines repeating the previous line's timestamp (kept as rows of their own), columns
    /// constant on the train rows (scaled with std 1). Timestamps going back in time and
    /// columns named twice are errors instead.
    pub fn notes(&self) -> &[String] {
        &self.table.notes
    }
    /// What a model trained on this dataset expects of new data: the variables, the
    /// scaler and the rows it was fitted on, the interval (written into checkpoints).
    pub fn contract(&self) -> SeriesContract {
        let fitted = self.splits[0].clone();
        SeriesContract {
            var_names: self.table.names.clone(),
            file_columns: self.table.file_columns.clone(),
            features: self.features,
            target: self.target.clone(),
            preset: self.preset.name().to_string(),
            interval_seconds: self.interval_seconds,
            scaler: self.scaler.clone(),
            scaler_rows: FittedRows {
                start: fitted.start,
                end: fitted.end,
                first: self.table.timestamps[fitted.start],
                last: self.table.timestamps[fitted.end - 1],
            },
        }
    }
    /// A view of one split.
    pub fn split(&self, kind: SplitKind) -> Split<'_> {
        Split {
            dataset: self,
            kind,
            rows: self.splits[kind.position()].clone(),
        }
    }
}

/// One split of a dataset: a row range and the windows inside it.
#[derive(Debug, Clone)]
pub struct Split<'a> {
    dataset: &'a Dataset,
    kind: SplitKind,
    rows: Range<usize>,
}

impl<'a> Split<'a> {
    /// Which split this is.
    pub fn kind(&self) -> SplitKind {
        self.kind
    }
    /// The dataset this split belongs to.
    pub fn dataset(&self) -> &'a Dataset {
        self.dataset
    }
    /// CSV data rows of the split, end-exclusive.
    pub fn rows(&self) -> Range<usize> {
        self.rows.clone()
    }
    /// Windows in the split: rows − L − H + 1.
    pub fn num_windows(&self) -> usize {
        self.rows.len() + 1 - self.dataset.input_len - self.dataset.output_len
    }
    /// Window `index` (0-based within the split). Panics if `index >= num_windows()`.
    pub fn window(&self, index: usize) -> Window<'a> {
        assert!(
            index < self.num_windows(),
            "window {index} out of range ({} windows)",
            self.num_windows()
        );
        Window::at(self, index, self.dataset.output_len)
    }
    /// The first `windows` windows only (all of them if there are fewer): a quick run on a
    /// slice of a split.
    pub fn head(&self, windows: usize) -> Split<'a> {
        let keep = windows.min(self.num_windows());
        let extra = self.dataset.input_len + self.dataset.output_len - 1;
        Split {
            dataset: self.dataset,
            kind: self.kind,
            rows: self.rows.start..self.rows.start + keep + extra,
        }
    }

    /// Batches of window indices.
    pub fn batches(&self, batch_size: usize, options: BatchOrder) -> BatchIter {
        BatchIter::new(self.num_windows(), batch_size, options)
    }
    /// Scaled history and future of `windows` as f32: `x` [B, L, N] and `y` [B, H, N],
    /// row-major. The vectors are cleared and refilled, so their allocations are reused.
    pub fn fill_scaled(&self, windows: &[usize], x: &mut Vec<f32>, y: &mut Vec<f32>) {
        let ds = self.dataset;
        let n = ds.n_vars();
        x.clear();
        y.clear();
        x.reserve(windows.len() * ds.input_len * n);
        y.reserve(windows.len() * ds.output_len * n);
        for &index in windows {
            let window = self.window(index);
            for row in window.history_rows() {
                x.extend((0..n).map(|var| ds.scaled[var][row] as f32));
            }
            for row in window.future_rows() {
                y.extend((0..n).map(|var| ds.scaled[var][row] as f32));
            }
        }
    }
}

/// One window: L history rows followed by H future rows (the dataset's H, or the one asked
/// of [`Split::window_at`]).
#[derive(Debug, Clone, Copy)]
pub struct Window<'a> {
    dataset: &'a Dataset,
    index: usize,
    first_row: usize,
    output_len: usize,
}

impl<'a> Window<'a> {
    /// Window `index` of `split` with `output_len` future rows (unchecked).
    pub(crate) fn at(split: &Split<'a>, index: usize, output_len: usize) -> Self {
        Window {
            dataset: split.dataset,
            index,
            first_row: split.rows.start + index,
            output_len,
        }
    }

    /// Index within its split.
    pub fn index(&self) -> usize {
        self.index
    }
    /// CSV data rows of the history.
    pub fn history_rows(&self) -> Range<usize> {
        self.first_row..self.first_row + self.dataset.input_len
    }
    /// CSV data rows of the future.
    pub fn future_rows(&self) -> Range<usize> {
        let start = self.first_row + self.dataset.input_len;
        start..start + self.output_len
    }
    /// Unscaled history of one variable (L values).
    pub fn history_raw(&self, var: usize) -> &'a [f64] {
        &self.dataset.table.columns[var][self.history_rows()]
    }
    /// Unscaled future of one variable (H values).
    pub fn future_raw(&self, var: usize) -> &'a [f64] {
        &self.dataset.table.columns[var][self.future_rows()]
    }
    /// Scaled history of one variable (L values).
    pub fn history_scaled(&self, var: usize) -> &'a [f64] {
        &self.dataset.scaled[var][self.history_rows()]
    }
    /// Scaled future of one variable (H values).
    pub fn future_scaled(&self, var: usize) -> &'a [f64] {
        &self.dataset.scaled[var][self.future_rows()]
    }
    /// Timestamp of the first history row.
    pub fn history_start(&self) -> NaiveDateTime {
        self.dataset.table.timestamps[self.first_row]
    }
    /// Timestamp of the last history row.
    pub fn history_end(&self) -> NaiveDateTime {
        self.dataset.table.timestamps[self.history_rows().end - 1]
    }
    /// Time marks of the L history rows.
    pub fn history_marks(&self) -> Vec<TimeMark> {
        self.dataset.table.timestamps[self.history_rows()]
            .iter()
            .map(|t| TimeMark::from(*t))
            .collect()
    }
}
