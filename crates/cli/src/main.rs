//! `timekd`: extract teacher embeddings, train the distilled student, forecast.

// Doc comments here are clap's help text, where `[100]` shows a default and `cuda[:N]` an
// optional part: not links.
#![allow(rustdoc::broken_intra_doc_links)]

mod commands;
mod data_args;
mod download;
mod progress;
mod signals;
mod train_progress;

use clap::{Parser, Subcommand};

/// TimeKD in Rust: an LLM teacher distilled into a small multivariate forecaster.
///
/// Typical flow: `timekd inspect` a CSV, `timekd extract` teacher embeddings into HDF5
/// stores, `timekd train` the student on them, then `timekd eval` / `timekd forecast`.
#[derive(Parser, Debug)]
#[command(name = "timekd", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Describe a dataset: variables, interval, split ranges, window counts, scaler.
    Inspect(commands::inspect::InspectArgs),
    /// Print the teacher's prompts, token ids and token types for chosen windows (JSON lines).
    Prompts(commands::prompts::PromptsArgs),
    /// Extract teacher embeddings into resumable HDF5 stores (one per output length and split).
    Extract(commands::extract::ExtractArgs),
    /// Write a GPT-2-shaped model with seeded random weights (benchmarks, no network).
    RandomModel(commands::random_model::RandomModelArgs),
    /// Inspect, export, import and merge embedding stores.
    Store(commands::store::StoreArgs),
    /// Train the distilled student on stored teacher embeddings (run dir: config, metrics, checkpoints, plot).
    Train(Box<commands::train::TrainArgs>),
    /// Test MSE/MAE of a trained student, overall and per horizon step (JSON).
    Eval(commands::eval::EvalArgs),
    /// Forecast the H values after the last rows of any CSV of the model's variables, with the
    /// scaler the checkpoint recorded, or backtest from many origins (CSV/JSON, optional PNG).
    Forecast(commands::forecast::ForecastArgs),
    /// Redraw a run's loss curves (per term, train and val) from its metrics, optionally on a log axis.
    Plot(commands::plot::PlotArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(args) => commands::inspect::run(args),
        Command::Prompts(args) => commands::prompts::run(args),
        Command::Extract(args) => commands::extract::run(args),
        Command::RandomModel(args) => commands::random_model::run(args),
        Command::Store(args) => commands::store::run(args),
        Command::Train(args) => commands::train::run(*args),
        Command::Eval(args) => commands::eval::run(args),
        Command::Forecast(args) => commands::forecast::run(args),
        Command::Plot(args) => commands::plot::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) if err.is::<commands::Status>() => {
            eprintln!("{err}");
            std::process::ExitCode::from(
                err.downcast_ref::<commands::Status>().map_or(1, |s| s.code),
            )
        }
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
