//! Forecasting: the next H values after the last window of a dataset, in the data's units.

use std::fmt::Write as _;
use std::path::Path;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use timekd_data::{Dataset, NaiveDateTime};

use crate::error::{Result, StudentError};
use crate::model::Dual;
use crate::state_dict::tensor_to_vec;

/// A forecast of every variable, de-scaled with the dataset's train-split scaler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forecast {
    /// Variable names in model order.
    pub var_names: Vec<String>,
    /// Timestamps of the L history rows the forecast starts from.
    pub history_timestamps: Vec<NaiveDateTime>,
    /// History values `[L][N]`, unscaled.
    pub history: Vec<Vec<f64>>,
    /// Timestamps of the H forecast rows (last timestamp + k · interval).
    pub timestamps: Vec<NaiveDateTime>,
    /// Forecast values `[H][N]`, in the data's units.
    pub values: Vec<Vec<f64>>,
}

/// Forecasts the H rows after the last L rows of `data`.
pub fn forecast(model: &Dual, data: &Dataset, device: &Device) -> Result<Forecast> {
    let device = device.clone().without_autodiff();
    let (l, h, n) = (data.input_len(), data.output_len(), data.n_vars());
    let rows = data.rows();
    if rows < l {
        return Err(StudentError::Config(format!(
            "{}: {rows} rows, fewer than the model's input length {l}",
            data.source_path().display()
        )));
    }
    let history_rows = rows - l..rows;
    let mut x = Vec::with_capacity(l * n);
    for row in history_rows.clone() {
        for var in 0..n {
            x.push(data.scaled_column(var)[row] as f32);
        }
    }
    let input = Tensor::<3>::from_data(TensorData::new(x, [1, l, n]), &device);
    let pred = model.valid().forecast(input);
    let [_, ph, pn] = pred.dims();
    if (ph, pn) != (h, n) {
        return Err(StudentError::Config(format!(
            "the model forecasts [{ph}, {pn}] but the data has H = {h}, N = {n}"
        )));
    }
    let pred = tensor_to_vec(pred)?;
    let scaler = data.scaler();
    let values = (0..h)
        .map(|step| {
            (0..n)
                .map(|var| scaler.unscale(var, f64::from(pred[step * n + var])))
                .collect()
        })
        .collect();
    let last = data.timestamps()[rows - 1];
    let interval = chrono::TimeDelta::seconds(data.interval_seconds());
    let timestamps = (1..=h as i32).map(|k| last + interval * k).collect();
    Ok(Forecast {
        var_names: data.var_names().to_vec(),
        history_timestamps: data.timestamps()[history_rows.clone()].to_vec(),
        history: history_rows
            .map(|row| (0..n).map(|var| data.raw_column(var)[row]).collect())
            .collect(),
        timestamps,
        values,
    })
}

impl Forecast {
    /// CSV text: a `date` column then one column per variable, one row per forecast step.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("date");
        for name in &self.var_names {
            out.push(',');
            out.push_str(name);
        }
        out.push('\n');
        for (t, row) in self.timestamps.iter().zip(&self.values) {
            let _ = write!(out, "{}", t.format("%Y-%m-%d %H:%M:%S"));
            for v in row {
                let _ = write!(out, ",{v}");
            }
            out.push('\n');
        }
        out
    }

    /// Writes [`to_csv`](Self::to_csv) to `path`.
    pub fn write_csv(&self, path: &Path) -> Result<()> {
        crate::output::write_file(path, self.to_csv().as_bytes())
    }

    /// Writes the forecast (with its history) as pretty JSON.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(|source| StudentError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        crate::output::write_file(path, &json)
    }

    /// Index of the variable called `name`.
    pub fn var_index(&self, name: &str) -> Option<usize> {
        self.var_names.iter().position(|v| v == name)
    }

    /// Plots variable `var`'s history and forecast (see [`plot_forecast`](crate::plot_forecast)).
    pub fn plot(&self, var: usize, path: &Path) -> Result<()> {
        let history: Vec<f64> = self.history.iter().map(|row| row[var]).collect();
        let future: Vec<f64> = self.values.iter().map(|row| row[var]).collect();
        let first = self
            .timestamps
            .first()
            .map(|t| t.format("%Y-%m-%d %H:%M").to_string());
        let plot = crate::plot::ForecastPlot {
            title: format!(
                "{}: forecast of {} steps from {}",
                self.var_names[var],
                future.len(),
                first.unwrap_or_default()
            ),
            variable: &self.var_names[var],
            history: &history,
            forecast: &future,
            truth: None,
        };
        crate::plot::plot_forecast(path, &plot)
    }
}
