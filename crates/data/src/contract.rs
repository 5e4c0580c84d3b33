//! [`SeriesContract`]: what a model trained on a dataset expects of the data it forecasts
//! from (variables and their order, the scaler fitted at training time, the sampling
//! interval), and the checks of new data against it.

use std::ops::Range;

use chrono::{NaiveDateTime, TimeDelta};
use serde::{Deserialize, Serialize};

use crate::csv::line_of;
use crate::{DataError, Features, Frame, Scaler};

/// The data side of a trained model: recorded in its checkpoint, checked against new data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesContract {
    /// The variables, model order.
    pub var_names: Vec<String>,
    /// Every value column of the training file, file order (the variables among them).
    pub file_columns: Vec<String>,
    /// The feature mode trained with.
    pub features: Features,
    /// The target column.
    pub target: String,
    /// The split rules' name (e.g. `ETTh1`, `custom`).
    pub preset: String,
    /// Step between rows, in seconds (0 when the training file did not tell).
    pub interval_seconds: i64,
    /// The scaler fitted on the training file's train rows, model order.
    pub scaler: Scaler,
    /// The rows the scaler was fitted on.
    pub scaler_rows: FittedRows,
}

/// Data rows a scaler was fitted on: `start..end` (0-based data rows) and their timestamps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FittedRows {
    /// First row.
    pub start: usize,
    /// One past the last row.
    pub end: usize,
    /// Timestamp of the first row.
    pub first: NaiveDateTime,
    /// Timestamp of the last row.
    pub last: NaiveDateTime,
}

/// A [`Frame`]'s columns matched to a contract's variables ([`SeriesContract::bind`]).
#[derive(Debug, Clone)]
pub struct Bound<'a> {
    contract: &'a SeriesContract,
    frame: &'a Frame,
    /// Frame column index of each variable, model order.
    columns: Vec<usize>,
}

impl SeriesContract {
    /// Matches `frame`'s columns to the variables. Every variable must be there, in the
    /// training file's relative order; columns the training file had but the model did not
    /// use may be present; any other column is refused.
    pub fn bind<'a>(&'a self, frame: &'a Frame) -> Result<Bound<'a>, DataError> {
        let columns = frame.columns();
        let missing: Vec<String> = self
            .var_names
            .iter()
            .filter(|v| !columns.contains(v))
            .cloned()
            .collect();
        let extra: Vec<String> = columns
            .iter()
            .filter(|c| !self.file_columns.contains(c))
            .cloned()
            .collect();
        if !missing.is_empty() || !extra.is_empty() {
            return Err(DataError::ContractColumns {
                path: frame.path().to_path_buf(),
                missing,
                extra,
                expected: self.var_names.join(","),
            });
        }
        let in_file_order = |names: &mut dyn Iterator<Item = &String>| -> Vec<String> {
            names
                .filter(|c| self.var_names.contains(c))
                .cloned()
                .collect()
        };
        let found = in_file_order(&mut columns.iter());
        let trained = in_file_order(&mut self.file_columns.iter());
        if found != trained {
            return Err(DataError::ReorderedColumns {
                path: frame.path().to_path_buf(),
                found: found.join(","),
                expected: trained.join(","),
            });
        }
        let columns = self
            .var_names
            .iter()
            .map(|v| columns.iter().position(|c| c == v).expect("checked above"))
            .collect();
        Ok(Bound {
            contract: self,
            frame,
            columns,
        })
    }

    /// `last` + k · interval for k = 1..=steps.
    pub fn dates_after(&self, last: NaiveDateTime, steps: usize) -> Vec<NaiveDateTime> {
        let interval = TimeDelta::seconds(self.interval_seconds);
        (1..=steps as i32).map(|k| last + interval * k).collect()
    }
}

impl Bound<'_> {
    /// Unscaled value of variable `var` (model order) at data row `row`.
    pub fn raw(&self, row: usize, var: usize) -> f64 {
        self.frame.column(self.columns[var])[row]
    }

    /// Scaled with the contract's scaler, as training scaled it (f64, then f32).
    pub fn scaled(&self, row: usize, var: usize) -> f32 {
        self.contract.scaler.scale(var, self.raw(row, var)) as f32
    }

    /// Rows `rows`, every variable, scaled: `[rows, N]` row-major, appended to `out`.
    pub fn fill_scaled(&self, rows: Range<usize>, out: &mut Vec<f32>) {
        for row in rows {
            out.extend((0..self.columns.len()).map(|var| self.scaled(row, var)));
        }
    }

    /// Refuses `rows` when two consecutive timestamps are not one interval apart (a gap, a
    /// repeated timestamp), naming the lines; any steps pass when the contract has no
    /// interval.
    pub fn check_steps(&self, rows: Range<usize>) -> Result<(), DataError> {
        let interval = self.contract.interval_seconds;
        if interval == 0 || rows.len() < 2 {
            return Ok(());
        }
        let times = &self.frame.timestamps()[rows.clone()];
        match times
            .windows(2)
            .position(|pair| (pair[1] - pair[0]).num_seconds() != interval)
        {
            None => Ok(()),
            Some(at) => Err(DataError::IrregularStep {
                path: self.frame.path().to_path_buf(),
                line: line_of(rows.start + at + 1),
                this: times[at + 1],
                previous: times[at],
                interval,
            }),
        }
    }
}
