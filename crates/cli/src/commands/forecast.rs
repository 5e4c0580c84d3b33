//! `timekd forecast`: a trained student's forecast after the last row of any CSV holding
//! its variables (or from many origins: a backtest), scaled with the scaler the checkpoint
//! recorded at training time. Nothing is split or fitted again.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use timekd_data::Preset;
use timekd_student::{BacktestSummary, Forecaster, Origins, read_state};

use crate::data_args::{DataArgs, resolve, say_notes};
use timekd_teacher::DeviceSpec;

/// Output format of a single forecast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// `date` column plus one column per variable.
    Csv,
    /// Variable names, history and forecast with timestamps.
    Json,
}

/// Arguments of `timekd forecast`.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  timekd forecast --checkpoint runs/student/ETTh1/24/seed-2024/checkpoints/best --data last_96_rows.csv
  timekd forecast --checkpoint DIR --data sensors.csv --origins 2018-01-01..2018-01-31 --out backtest.csv
  timekd forecast --checkpoint DIR --data ETTh1 --origins 100 --metrics metrics.json")]
pub struct ForecastArgs {
    /// Checkpoint directory (a run's `checkpoints/best`).
    #[arg(long, value_name = "DIR")]
    pub checkpoint: PathBuf,
    /// A CSV file (a `date` column and the model's variables, at least L rows) or a
    /// dataset name; the forecast follows its last row. Columns the training file had but
    /// the model does not use may be present.
    #[arg(long, visible_alias = "data_path", value_name = "CSV|NAME")]
    pub data: String,
    /// Directory that --data is relative to (Time-Series-Library's `--root_path`).
    #[arg(long, visible_alias = "root_path", value_name = "DIR")]
    pub root_path: Option<PathBuf>,
    /// Forecast from many origins (the last history row of each): `all`, `K` (the last K)
    /// or `DATE..DATE`; writes one CSV line per origin, date and variable with the truth
    /// where the file has it, and scores the origins whose whole horizon it has.
    #[arg(long, value_name = "all|K|DATE..DATE")]
    pub origins: Option<Origins>,
    /// Output format of a single forecast (a backtest is always long-format CSV).
    #[arg(long, value_enum, default_value = "csv")]
    pub format: Format,
    /// Output file (default: standard output).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// With --origins: also write the backtest's metrics as JSON to this file.
    #[arg(long, value_name = "FILE", requires = "origins")]
    pub metrics: Option<PathBuf>,
    /// With --origins: origins per forward pass (64, like `timekd eval`, gives its exact
    /// numbers).
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Only for checkpoints older than format 3, which do not record their scaler: the
    /// file the model was trained on (its train split's scaler is fitted again).
    #[arg(long, value_name = "CSV|NAME")]
    pub train_data: Option<String>,
    /// Split rules of --train-data (default: from the file name).
    #[arg(long, value_name = "NAME", requires = "train_data")]
    pub dataset: Option<Preset>,
    /// Also draw a PNG of one variable's history (blue) and forecast (red).
    #[arg(long, value_name = "PNG", conflicts_with = "origins")]
    pub plot: Option<PathBuf>,
    /// Variable to plot (default: the last, the target).
    #[arg(long, value_name = "NAME", requires = "plot")]
    pub plot_var: Option<String>,
    /// Where to run: cpu or cuda[:N].
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
}

/// Runs `timekd forecast`.
pub fn run(args: ForecastArgs) -> anyhow::Result<()> {
    let device = args.device.devices()?.remove(0);
    let mut forecaster = Forecaster::from_checkpoint_on(&args.checkpoint, &device)
        .with_context(|| format!("--checkpoint {}", args.checkpoint.display()))?;
    if let Some(train_data) = &args.train_data {
        let state = read_state(&args.checkpoint)?;
        let trained = DataArgs::for_checkpoint(train_data.clone(), args.dataset, &state).load()?;
        forecaster = forecaster.with_contract(trained.dataset.contract());
    }
    let frame = resolve(args.root_path.as_deref(), &args.data)?.frame()?;
    say_notes(frame.notes());
    match &args.origins {
        Some(origins) => backtest(&args, &forecaster, &frame, origins),
        None => single(&args, &forecaster, &frame),
    }
}

/// The forecast after the file's last row.
fn single(
    args: &ForecastArgs,
    forecaster: &Forecaster,
    frame: &timekd_data::Frame,
) -> anyhow::Result<()> {
    let result = forecaster.forecast(frame)?;
    let text = match args.format {
        Format::Csv => result.to_csv(),
        Format::Json => serde_json::to_string_pretty(&result)?,
    };
    match &args.out {
        Some(path) => timekd_data::files::write_atomic(path, text.as_bytes())
            .with_context(|| format!("{}: cannot write", path.display()))?,
        None => print!("{text}"),
    }
    if let Some(path) = &args.plot {
        let var = match &args.plot_var {
            Some(name) => match result.var_index(name) {
                Some(i) => i,
                None => bail!("--plot-var {name}: not one of {:?}", result.var_names),
            },
            None => result.var_names.len() - 1,
        };
        result.plot(var, path)?;
        eprintln!(
            "plot of {} written to {}",
            result.var_names[var],
            path.display()
        );
    }
    Ok(())
}

/// Forecasts from every origin asked for; the long CSV to --out (atomically) or stdout.
fn backtest(
    args: &ForecastArgs,
    forecaster: &Forecaster,
    frame: &timekd_data::Frame,
    origins: &Origins,
) -> anyhow::Result<()> {
    let summary = match &args.out {
        Some(path) => {
            let mut buffer = Vec::new();
            let summary = forecaster.backtest(frame, origins, args.batch_size, &mut buffer)?;
            timekd_data::files::write_atomic(path, &buffer)
                .with_context(|| format!("{}: cannot write", path.display()))?;
            summary
        }
        None => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let summary = forecaster.backtest(frame, origins, args.batch_size, &mut out)?;
            out.flush()?;
            summary
        }
    };
    say_backtest(&summary);
    if let Some(path) = &args.metrics {
        let json = serde_json::to_vec_pretty(&summary)?;
        timekd_data::files::write_atomic(path, &json)
            .with_context(|| format!("{}: cannot write", path.display()))?;
    }
    Ok(())
}

/// The backtest's extent and metrics, on standard error.
fn say_backtest(summary: &BacktestSummary) {
    say_notes(&summary.notes);
    eprintln!(
        "backtest: {} origins from {} to {}; {} with the whole horizon in the file",
        summary.origins, summary.first_origin, summary.last_origin, summary.scored_origins
    );
    if let (Some(scaled), Some(units)) = (&summary.scaled, &summary.data_units) {
        eprintln!(
            "scored on {}: scaled MSE {:.6} MAE {:.6}; data units MSE {:.6} MAE {:.6}",
            summary.variables.join(", "),
            scaled.overall.mse,
            scaled.overall.mae,
            units.overall.mse,
            units.overall.mae
        );
    }
}
