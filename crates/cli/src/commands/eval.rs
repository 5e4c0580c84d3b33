//! `timekd eval`: test MSE and MAE of a trained student (time-series branch only, scaled
//! data), overall and per horizon step, as JSON.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use timekd_data::{Preset, SplitKind};
use timekd_student::{load_checkpoint, predict};

use crate::data_args::DataArgs;
use timekd_teacher::DeviceSpec;

/// Arguments of `timekd eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Checkpoint directory (a run's `checkpoints/best` or `checkpoints/last`).
    #[arg(long, value_name = "DIR")]
    pub checkpoint: PathBuf,
    /// A CSV file or a dataset name (default: the dataset the model was trained on).
    #[arg(long, visible_alias = "data_path", value_name = "CSV|NAME")]
    pub data: Option<String>,
    /// Directory that --data is relative to (Time-Series-Library's `--root_path`).
    #[arg(
        long,
        visible_alias = "root_path",
        value_name = "DIR",
        requires = "data"
    )]
    pub root_path: Option<PathBuf>,
    /// Split rules to apply (default: from the file name).
    #[arg(long, value_name = "NAME")]
    pub dataset: Option<Preset>,
    /// Split to evaluate: test, val or train.
    #[arg(long, default_value = "test")]
    pub split: SplitKind,
    /// Windows per batch.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Where to run: cpu or cuda[:N].
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    /// Also write the JSON report to this file.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Runs `timekd eval`.
pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let device = args.device.devices()?.remove(0);
    let checkpoint = load_checkpoint(&args.checkpoint, &device)
        .with_context(|| format!("--checkpoint {}", args.checkpoint.display()))?;
    let state = &checkpoint.state;
    let mut data_args = DataArgs::for_checkpoint(
        args.data
            .clone()
            .unwrap_or_else(|| state.data.dataset.clone()),
        args.dataset,
        state,
    );
    data_args.root_path = args.root_path.clone();
    let data = data_args.load()?;
    // A model trained in MS mode is scored on its target (the last variable) alone.
    let report = predict(
        &checkpoint.model,
        &data.dataset.split(args.split),
        args.batch_size,
        state.config.loss.target_only,
        false,
        &device,
    )?
    .report();
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(path) = &args.out {
        std::fs::write(path, &json).with_context(|| format!("{}: cannot write", path.display()))?;
    }
    println!("{json}");
    Ok(())
}
