//! `cargo xtask ...`: set-up, tests, the demo run, extraction over all lengths, benches.
//!
//! xtask has no C dependencies, so it builds on a fresh machine and installs what the real
//! build needs before building it.

mod bench;
mod bench_train;
mod demo;
mod extract;
mod setup;
mod train;

use std::path::{Path, PathBuf};
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
    /// The main job on the built-in ETTh1 with the tiny model: inspect, extract, train, forecast.
    Demo(demo::Demo),
    /// Extract train + val stores for every output length (`--all-lengths`).
    Extract(extract::ExtractAll),
    /// Train the student for every output length with stores; print a results table.
    Train(train::TrainAll),
    /// Benchmarks for the GPU machine (prebuilt binary; builds nothing there).
    Bench {
        #[command(subcommand)]
        bench: Bench,
    },
}

#[derive(Subcommand, Debug)]
enum Bench {
    /// Extraction throughput with a GPT-2-small-shaped random model, against two PyTorch
    /// anchors run in the same command.
    ///
    /// The reference (--reference, a copy of ../shared/bench/torch_reference.py) is what a user
    /// would write: batched f16 SDPA over whole prompts with the calibration mask, eager and
    /// torch.compile; `ratio` is our windows/s over its best. The expert (--expert, a copy of
    /// ../shared/bench/torch_expert.py) is what a PyTorch expert would write: the history prefix
    /// GT and HD share run once per window and variable as tree attention, FlexAttention with
    /// the calibration bias as a score_mod, all under torch.compile; it checks itself against
    /// whole prompts first (its `check:` line is printed), and `vs expert` is our windows/s
    /// over its own (embeddings/s for the all-lengths case). It is the anchor to beat; if it
    /// fails, the bench says so and goes on without it. --no-reference and --no-expert skip
    /// them.
    Extract(bench::BenchExtract),
    /// Student training speed: one run alone (and a --baseline binary), then a table's runs
    /// at once (--table), with GPU utilisation and the table's projected wall time.
    Train(bench_train::BenchTrain),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Task::Setup => setup::ensure_system_deps(),
        Task::Test { args } => {
            setup::ensure_system_deps()?;
            run(cargo().args(["test", "--workspace"]).args(args))
        }
        Task::Demo(args) => demo::demo(args),
        Task::Extract(args) => extract::extract_all(args),
        Task::Train(args) => train::train_all(args),
        Task::Bench {
            bench: Bench::Extract(args),
        } => bench::bench_extract(args),
        Task::Bench {
            bench: Bench::Train(args),
        } => bench_train::bench_train(args),
    }
}

/// The cargo that runs this xtask.
fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Runs a command to completion, failing on a non-zero exit. The child is killed with this
/// process (Linux), so killing xtask never leaves an extraction running that holds its store.
pub(crate) fn run(command: &mut Command) -> anyhow::Result<()> {
    die_with_parent(command);
    let status = command.status()?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}

#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_command: &mut Command) {}

/// `explicit`, or a freshly built `target/release/timekd`.
pub(crate) fn timekd_binary(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    setup::ensure_system_deps()?;
    run(cargo().args(["build", "--release", "-p", "timekd-cli"]))?;
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    Ok(target.join("release").join("timekd"))
}
