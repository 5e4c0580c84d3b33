//! Forecasting new data with a trained student: [`Forecaster`] reads a checkpoint's model
//! and data contract (the scaler fitted at training time, the variables' order, the
//! sampling interval) and forecasts after the last row of any CSV holding the model's
//! variables ([`Forecaster::forecast`]), or from many origins with the truth where the file
//! has it ([`Forecaster::backtest`]). Nothing is split or fitted again.

use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use timekd_data::{Bound, Frame, NaiveDateTime, SeriesContract, parse_timestamp};

use crate::checkpoint::load_checkpoint;
use crate::error::{Result, StudentError};
use crate::model::Dual;
use crate::scores::{MetricSet, Scorer};
use crate::state_dict::tensor_to_vec;

/// Timestamps as forecasts write them.
const DATE_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// A forecast of every variable after one origin, in the data's units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forecast {
    /// Variable names in model order.
    pub var_names: Vec<String>,
    /// Timestamps of the L history rows the forecast starts from.
    pub history_timestamps: Vec<NaiveDateTime>,
    /// History values `[L][N]`, unscaled.
    pub history: Vec<Vec<f64>>,
    /// Timestamps of the H forecast rows (last history timestamp + k · interval).
    pub timestamps: Vec<NaiveDateTime>,
    /// Forecast values `[H][N]`, in the data's units.
    pub values: Vec<Vec<f64>>,
}

/// Which origins a backtest forecasts from. An origin is the last history row: the
/// forecast covers the H rows after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origins {
    /// Every row with L rows of history.
    All,
    /// The last K such rows.
    Last(usize),
    /// Rows whose timestamps lie in this range, both ends included.
    Between(NaiveDateTime, NaiveDateTime),
}

impl FromStr for Origins {
    type Err = String;

    /// `all`, `K` (the last K origins) or `DATE..DATE`.
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let text = text.trim();
        if text == "all" {
            return Ok(Origins::All);
        }
        if let Some((from, to)) = text.split_once("..") {
            let date = |t: &str| {
                parse_timestamp(t).ok_or_else(|| {
                    format!("{t:?} is not a timestamp (e.g. 2018-01-01 or 2018-01-01 00:00:00)")
                })
            };
            let (from, to) = (date(from)?, date(to)?);
            if from > to {
                return Err(format!("{from} is after {to}"));
            }
            return Ok(Origins::Between(from, to));
        }
        match text.parse::<usize>() {
            Ok(k) if k > 0 => Ok(Origins::Last(k)),
            _ => Err(format!(
                "{text:?}: expected `all`, a positive count (the last K origins) or DATE..DATE"
            )),
        }
    }
}

/// What a backtest measured: its origins and the metrics of those whose H future rows are
/// all in the file (the forecasts themselves go to the writer passed to
/// [`Forecaster::backtest`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BacktestSummary {
    /// Origins forecast from.
    pub origins: usize,
    /// Timestamp of the first and the last origin.
    pub first_origin: NaiveDateTime,
    /// Timestamp of the last origin.
    pub last_origin: NaiveDateTime,
    /// Origins whose whole horizon has a truth in the file: the metrics' windows.
    pub scored_origins: usize,
    /// The scored variables (every variable, or the target alone in `MS` mode).
    pub variables: Vec<String>,
    /// Metrics on the scaled data (what `timekd eval` and the paper report).
    pub scaled: Option<MetricSet>,
    /// Metrics in the data's units.
    pub data_units: Option<MetricSet>,
    /// Things worth knowing (histories with irregular steps, origins without history).
    pub notes: Vec<String>,
}

/// A trained student ready to forecast new data.
///
/// ```no_run
/// use timekd_data::Frame;
/// use timekd_student::Forecaster;
///
/// let forecaster = Forecaster::from_checkpoint("runs/student/ETTh1/24/seed-2024/checkpoints/best".as_ref())?;
/// let rows = Frame::read("last_rows.csv".as_ref())?;
/// let forecast = forecaster.forecast(&rows)?;
/// print!("{}", forecast.to_csv());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Forecaster {
    model: Dual,
    device: Device,
    contract: Option<SeriesContract>,
    checkpoint: PathBuf,
    version: u32,
    input_len: usize,
    output_len: usize,
}

impl Forecaster {
    /// Loads a checkpoint onto the default device (the first backend this build enables).
    pub fn from_checkpoint(dir: &Path) -> Result<Forecaster> {
        Forecaster::from_checkpoint_on(dir, &Device::default())
    }

    /// Loads a checkpoint onto `device`.
    pub fn from_checkpoint_on(dir: &Path, device: &Device) -> Result<Forecaster> {
        let device = device.clone().without_autodiff();
        let checkpoint = load_checkpoint(dir, &device)?;
        let state = checkpoint.state;
        Ok(Forecaster {
            model: checkpoint.model.valid(),
            device,
            contract: state.data.contract,
            checkpoint: checkpoint.dir,
            version: state.version,
            input_len: state.config.model.input_len,
            output_len: state.config.model.output_len,
        })
    }

    /// Supplies the data contract a checkpoint older than format 3 lacks (e.g. from
    /// `Dataset::contract` of the file it was trained on).
    pub fn with_contract(mut self, contract: SeriesContract) -> Forecaster {
        self.contract = Some(contract);
        self
    }

    /// The data contract, or the error saying it is missing and how to supply it.
    pub fn contract(&self) -> Result<&SeriesContract> {
        self.contract
            .as_ref()
            .ok_or_else(|| StudentError::NoContract {
                path: self.checkpoint.clone(),
                version: self.version,
            })
    }

    /// History length L the model reads.
    pub fn input_len(&self) -> usize {
        self.input_len
    }

    /// Forecast length H.
    pub fn output_len(&self) -> usize {
        self.output_len
    }

    /// Forecasts the H rows after the last row of `frame` from its last L rows, scaled
    /// with the checkpoint's scaler. Refuses too few rows and gaps or repeated timestamps
    /// among the last L.
    pub fn forecast(&self, frame: &Frame) -> Result<Forecast> {
        let contract = self.contract()?;
        let bound = contract.bind(frame)?;
        let (l, rows) = (self.input_len, frame.rows());
        if rows < l {
            return Err(StudentError::Input {
                path: frame.path().to_path_buf(),
                message: format!(
                    "{rows} rows, fewer than the model's input length L = {l} (the forecast \
                     reads the last {l} rows)"
                ),
            });
        }
        let history = rows - l..rows;
        bound.check_steps(history.clone())?;
        let pred = self.predict(&bound, &[rows - 1])?;
        let n = contract.var_names.len();
        let times = frame.timestamps();
        Ok(Forecast {
            var_names: contract.var_names.clone(),
            history_timestamps: times[history.clone()].to_vec(),
            history: history
                .map(|row| (0..n).map(|var| bound.raw(row, var)).collect())
                .collect(),
            timestamps: contract.dates_after(times[rows - 1], self.output_len),
            values: pred
                .chunks(n)
                .map(|step| unscale(contract, step).collect())
                .collect(),
        })
    }

    /// Forecasts from every origin of `origins` (`batch_size` at a time), writing one CSV
    /// line per (origin, step, variable) to `out`: `origin,date,variable,forecast,truth`
    /// (truth empty past the file's end), in the data's units. Origins whose H future rows
    /// are all in the file are scored as `timekd eval` scores windows.
    pub fn backtest(
        &self,
        frame: &Frame,
        origins: &Origins,
        batch_size: usize,
        out: &mut dyn Write,
    ) -> Result<BacktestSummary> {
        let contract = self.contract()?;
        let bound = contract.bind(frame)?;
        let (chosen, mut notes) = self.origin_rows(frame, origins)?;
        let (h, n) = (self.output_len, contract.var_names.len());
        let scored: Vec<usize> = if contract.features.scores_last_only() {
            vec![n - 1]
        } else {
            (0..n).collect()
        };
        let names: Vec<String> = scored
            .iter()
            .map(|&v| contract.var_names[v].clone())
            .collect();
        let mut scaled_scores = Scorer::new(h, names.clone());
        let mut unit_scores = Scorer::new(h, names.clone());
        let mut irregular = Vec::new();
        let written = |e: std::io::Error| StudentError::io("backtest output", e);
        writeln!(out, "origin,date,variable,forecast,truth").map_err(written)?;
        let mut scored_origins = 0;
        for batch in chosen.chunks(batch_size.max(1)) {
            for &origin in batch {
                if let Err(e) = bound.check_steps(origin + 1 - self.input_len..origin + 1) {
                    irregular.push(e.to_string());
                }
            }
            let pred = self.predict(&bound, batch)?;
            let mut text = String::new();
            for (w, &origin) in batch.iter().enumerate() {
                let window = &pred[w * h * n..(w + 1) * h * n];
                let origin_time = frame.timestamps()[origin];
                let dates = contract.dates_after(origin_time, h);
                for (step, date) in dates.iter().enumerate() {
                    let row = origin + 1 + step;
                    for var in 0..n {
                        let value = contract
                            .scaler
                            .unscale(var, f64::from(window[step * n + var]));
                        let _ = write!(
                            text,
                            "{},{},{},{value},",
                            origin_time.format(DATE_FORMAT),
                            date.format(DATE_FORMAT),
                            contract.var_names[var]
                        );
                        if row < frame.rows() {
                            let _ = write!(text, "{}", bound.raw(row, var));
                        }
                        text.push('\n');
                    }
                }
                if origin + h < frame.rows() {
                    scored_origins += 1;
                    let (mut pred_scaled, mut truth_scaled) = (Vec::new(), Vec::new());
                    let (mut pred_units, mut truth_units) = (Vec::new(), Vec::new());
                    for step in 0..h {
                        for &var in &scored {
                            let p = window[step * n + var];
                            pred_scaled.push(p);
                            truth_scaled.push(bound.scaled(origin + 1 + step, var));
                            pred_units.push(contract.scaler.unscale(var, f64::from(p)) as f32);
                            truth_units.push(bound.raw(origin + 1 + step, var) as f32);
                        }
                    }
                    scaled_scores.add(&pred_scaled, &truth_scaled);
                    unit_scores.add(&pred_units, &truth_units);
                }
            }
            out.write_all(text.as_bytes()).map_err(written)?;
        }
        out.flush().map_err(written)?;
        if let Some(first) = irregular.first() {
            notes.push(format!(
                "{} origin(s) read a history with irregular steps (kept, as `timekd eval` \
                 keeps such windows); the first: {first}",
                irregular.len()
            ));
        }
        let times = frame.timestamps();
        Ok(BacktestSummary {
            origins: chosen.len(),
            first_origin: times[chosen[0]],
            last_origin: times[chosen[chosen.len() - 1]],
            scored_origins,
            variables: names,
            scaled: (scored_origins > 0).then(|| scaled_scores.finish()),
            data_units: (scored_origins > 0).then(|| unit_scores.finish()),
            notes,
        })
    }

    /// The rows `origins` names that have L rows of history, and notes on the ones left out.
    fn origin_rows(&self, frame: &Frame, origins: &Origins) -> Result<(Vec<usize>, Vec<String>)> {
        let l = self.input_len;
        let rows = frame.rows();
        let eligible = l.saturating_sub(1)..rows;
        let mut notes = Vec::new();
        let chosen: Vec<usize> = match origins {
            Origins::All => eligible.collect(),
            Origins::Last(k) => eligible
                .clone()
                .skip(eligible.len().saturating_sub(*k))
                .collect(),
            Origins::Between(from, to) => {
                let times = frame.timestamps();
                let inside = |row: &usize| (from..=to).contains(&&times[*row]);
                let early = (0..eligible.start.min(rows)).filter(inside).count();
                if early > 0 {
                    notes.push(format!(
                        "{early} row(s) in {from}..{to} have fewer than L = {l} rows of history \
                         before them and are not origins"
                    ));
                }
                eligible.filter(inside).collect()
            }
        };
        if chosen.is_empty() {
            return Err(StudentError::Input {
                path: frame.path().to_path_buf(),
                message: format!(
                    "no origin to forecast from: {rows} rows, and an origin needs L = {l} rows \
                     of history up to it{}",
                    match origins {
                        Origins::Between(from, to) => format!(" inside {from}..{to}"),
                        _ => String::new(),
                    }
                ),
            });
        }
        Ok((chosen, notes))
    }

    /// Scaled forecasts `[origins, H, N]` (row-major) from the histories ending at each of
    /// `origins` (rows, inclusive).
    fn predict(&self, bound: &Bound<'_>, origins: &[usize]) -> Result<Vec<f32>> {
        let l = self.input_len;
        let mut x = Vec::new();
        for &origin in origins {
            bound.fill_scaled(origin + 1 - l..origin + 1, &mut x);
        }
        let n = x.len() / (origins.len() * l);
        let input = Tensor::<3>::from_data(TensorData::new(x, [origins.len(), l, n]), &self.device);
        let pred = self.model.forecast(input);
        let [_, ph, pn] = pred.dims();
        if (ph, pn) != (self.output_len, n) {
            return Err(StudentError::Config(format!(
                "{}: the model forecasts [{ph}, {pn}] but its checkpoint says H = {}, N = {n}",
                self.checkpoint.display(),
                self.output_len
            )));
        }
        tensor_to_vec(pred)
    }
}

/// One step's scaled forecasts in the data's units.
fn unscale<'a>(contract: &'a SeriesContract, step: &'a [f32]) -> impl Iterator<Item = f64> + 'a {
    step.iter()
        .enumerate()
        .map(|(var, v)| contract.scaler.unscale(var, f64::from(*v)))
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
            let _ = write!(out, "{}", t.format(DATE_FORMAT));
            for v in row {
                let _ = write!(out, ",{v}");
            }
            out.push('\n');
        }
        out
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
