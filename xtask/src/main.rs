//! `cargo xtask ...`: set-up, tests, the demo run, extraction over all lengths, benches.
//!
//! xtask has no C dependencies, so it builds on a fresh machine and installs what the real
//! build needs before building it.

mod setup;

use std::process::Command;

use anyhow::bail;
use clap::{Parser, Subcommand};

/// Project automation for timekd-rs.
#[derive(Parser, Debug)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand, Debug)]
enum Task {
    /// Install missing system dependencies (libhdf5-dev, h5py) and nothing else.
    Setup,
    /// Set up, then run the whole workspace test suite (extra arguments go to `cargo test`).
    Test {
        /// Arguments passed to `cargo test`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Task::Setup => setup::ensure_system_deps(),
        Task::Test { args } => {
            setup::ensure_system_deps()?;
            run(cargo().args(["test", "--workspace"]).args(args))
        }
    }
}

/// The cargo that runs this xtask.
fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Runs a command to completion, failing on a non-zero exit.
pub(crate) fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command.status()?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}
