//! `timekd forecast`: the next H values after the last window of a dataset, in the data's
//! units, as CSV and/or JSON, with an optional PNG of one variable's history and forecast.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use timekd_data::Preset;
use timekd_student::{forecast, load_checkpoint};

use crate::data_args::DataArgs;
use timekd_teacher::DeviceSpec;

/// Output format of `timekd forecast`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// `date` column plus one column per variable.
    Csv,
    /// Variable names, history and forecast with timestamps.
    Json,
}

/// Arguments of `timekd forecast`.
#[derive(Args, Debug)]
pub struct ForecastArgs {
    /// Checkpoint directory (a run's `checkpoints/best`).
    #[arg(long, value_name = "DIR")]
    pub checkpoint: PathBuf,
    /// A CSV file or a dataset name; the forecast follows its last row.
    #[arg(long, value_name = "CSV|NAME")]
    pub data: String,
    /// Split rules (and so the scaler's train rows) to apply (default: from the file name).
    #[arg(long, value_name = "NAME")]
    pub dataset: Option<Preset>,
    /// Output format.
    #[arg(long, value_enum, default_value = "csv")]
    pub format: Format,
    /// Output file (default: standard output).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Also draw a PNG of one variable's history (blue) and forecast (red).
    #[arg(long, value_name = "PNG")]
    pub plot: Option<PathBuf>,
    /// Variable to plot (default: the last, the target).
    #[arg(long, value_name = "NAME")]
    pub plot_var: Option<String>,
    /// Where to run: cpu or cuda[:N].
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
}

/// Runs `timekd forecast`.
pub fn run(args: ForecastArgs) -> anyhow::Result<()> {
    let device = args.device.devices()?.remove(0);
    let checkpoint = load_checkpoint(&args.checkpoint, &device)
        .with_context(|| format!("--checkpoint {}", args.checkpoint.display()))?;
    let state = &checkpoint.state;
    let data = DataArgs::for_checkpoint(args.data.clone(), args.dataset, state).load()?;
    let result = forecast(&checkpoint.model, &data.dataset, &device)?;
    let text = match args.format {
        Format::Csv => result.to_csv(),
        Format::Json => serde_json::to_string_pretty(&result)?,
    };
    match &args.out {
        Some(path) => std::fs::write(path, text)
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
