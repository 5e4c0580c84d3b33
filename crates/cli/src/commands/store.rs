//! `timekd store`: inspect, verify, export, import and merge embedding stores.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use timekd_store::{Fingerprint, Verification};

use super::Status;

/// Inspect and convert embedding stores (the HDF5 files `timekd extract` writes).
///
/// Example: `timekd store inspect stores/ETTh1/24/train.h5`
#[derive(Args, Debug)]
pub struct StoreArgs {
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Subcommand, Debug)]
enum StoreCommand {
    /// Show a store's fingerprint, progress (windows written) and sizes.
    Inspect {
        /// The store (its final `.h5` file, or the same path while it is in progress).
        file: PathBuf,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check a store against the checksums recorded when it was written (reads it whole).
    ///
    /// Exit status 0: it matches; 1: it does not (the first bad window is named) or cannot be
    /// read; 3: it was finished before checksums were recorded (nothing to check against).
    /// A store in progress: each part file is checked against its own checksum.
    Verify {
        /// The store (its final `.h5` file, or the same path while it is in progress).
        file: PathBuf,
    },
    /// Write every window as its own file in another layout.
    ///
    /// Example: `timekd store export --layout release train.h5 release/ETTh1/24/train`
    Export {
        /// Target layout: `release` = `{dir}/{i}.h5`, dataset `embeddings` [N, d] f32.
        #[arg(long, value_enum)]
        layout: Layout,
        /// The finished store to export.
        file: PathBuf,
        /// Output directory (created if needed).
        dir: PathBuf,
    },
    /// Build a store from per-window files.
    ///
    /// Example: `timekd store inspect --json old.h5 > fp.json`, then
    /// `timekd store import --layout release --fingerprint fp.json release/ETTh1/24/train train.h5`
    Import {
        /// Source layout: `release` = `{dir}/{i}.h5`, dataset `embeddings` [N, d].
        #[arg(long, value_enum)]
        layout: Layout,
        /// JSON file with the store's fingerprint: the output of
        /// `timekd store inspect --json` or its `fingerprint` object (the per-window
        /// files do not record one).
        #[arg(long)]
        fingerprint: PathBuf,
        /// Windows in the whole split (default: one past the highest file index).
        #[arg(long)]
        windows_total: Option<usize>,
        /// Replace an existing store at the output path.
        #[arg(long)]
        overwrite: bool,
        /// Directory of `{i}.h5` files.
        dir: PathBuf,
        /// The store to create.
        file: PathBuf,
    },
    /// Combine finished shard stores (from `--shard i/n` extraction) into one store.
    ///
    /// Example: `timekd store merge -o train.h5 train.shard0.h5 train.shard1.h5`
    Merge {
        /// The merged store to write.
        #[arg(short, long)]
        output: PathBuf,
        /// Replace an existing output file.
        #[arg(long)]
        overwrite: bool,
        /// Shard stores: same fingerprint, adjacent disjoint window ranges.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
    },
}

/// Per-window file layouts the store converts to and from.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Layout {
    /// The Python TimeKD release: `{i}.h5` with dataset `embeddings` [N, d] f32.
    Release,
}

/// Runs the command.
pub fn run(args: StoreArgs) -> anyhow::Result<()> {
    match args.command {
        StoreCommand::Inspect { file, json } => {
            let summary = timekd_store::inspect(&file)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                print!("{summary}");
            }
        }
        StoreCommand::Verify { file } => {
            let started = std::time::Instant::now();
            match timekd_store::verify(&file)? {
                Verification::Verified { windows, bytes } => println!(
                    "{}: verified: {windows} windows, {bytes} bytes match the recorded checksum \
                     ({:.1} s)",
                    file.display(),
                    started.elapsed().as_secs_f64()
                ),
                Verification::PartsVerified { parts, windows } => println!(
                    "{}: in progress: {parts} part files ({windows} windows) match their \
                     checksums",
                    file.display()
                ),
                Verification::NoChecksum => {
                    return Err(Status {
                        code: 3,
                        message: format!(
                            "{}: no checksum recorded (finished by a timekd that did not record \
                             one): nothing to verify against",
                            file.display()
                        ),
                    }
                    .into());
                }
            }
        }
        StoreCommand::Export {
            layout: Layout::Release,
            file,
            dir,
        } => {
            let count = timekd_store::export_release(&file, &dir)?;
            println!("exported {count} windows to {}", dir.display());
        }
        StoreCommand::Import {
            layout: Layout::Release,
            fingerprint,
            windows_total,
            overwrite,
            dir,
            file,
        } => {
            let text = std::fs::read_to_string(&fingerprint).with_context(|| {
                format!("cannot read fingerprint file {}", fingerprint.display())
            })?;
            let mut value: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", fingerprint.display()))?;
            // Accept the whole `store inspect --json` output as well as its fingerprint.
            if let Some(inner) = value.get_mut("fingerprint") {
                value = inner.take();
            }
            let fingerprint: Fingerprint = serde_json::from_value(value).with_context(|| {
                format!(
                    "{} is not a fingerprint JSON object (see `timekd store inspect --json`)",
                    fingerprint.display()
                )
            })?;
            let path =
                timekd_store::import_release(&dir, &file, fingerprint, windows_total, overwrite)?;
            println!("imported {} into {}", dir.display(), path.display());
        }
        StoreCommand::Merge {
            output,
            overwrite,
            inputs,
        } => {
            let path = timekd_store::merge(&inputs, &output, overwrite)?;
            println!("merged {} stores into {}", inputs.len(), path.display());
        }
    }
    Ok(())
}
