//! `timekd plot`: redraw a run's loss curves from its `metrics.jsonl`, on a linear or a
//! logarithmic axis.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use timekd_student::{LossScale, RunDir, plot_losses_with, read_metrics};

/// Arguments of `timekd plot`.
#[derive(Args, Debug)]
pub struct PlotArgs {
    /// Run directory (holding `metrics.jsonl`).
    #[arg(long, value_name = "DIR")]
    pub run: PathBuf,
    /// Logarithmic loss axis.
    #[arg(long)]
    pub log: bool,
    /// Output PNG (default: `<run>/loss.png`, or `<run>/loss-log.png` with --log).
    #[arg(long, value_name = "PNG")]
    pub out: Option<PathBuf>,
}

/// Runs `timekd plot`.
pub fn run(args: PlotArgs) -> anyhow::Result<()> {
    let run = RunDir::new(&args.run);
    let history =
        read_metrics(&run.metrics()).with_context(|| format!("--run {}", args.run.display()))?;
    if history.is_empty() {
        anyhow::bail!("{}: no epoch recorded yet", run.metrics().display());
    }
    let (scale, name) = match args.log {
        true => (LossScale::Log, "loss-log.png"),
        false => (LossScale::Linear, "loss.png"),
    };
    let out = args.out.unwrap_or_else(|| run.path().join(name));
    plot_losses_with(&out, &history, scale)?;
    eprintln!("{} epochs plotted to {}", history.len(), out.display());
    Ok(())
}
