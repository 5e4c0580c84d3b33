//! `cargo xtask extract --all-lengths`: train + val stores for every output length, in one
//! `timekd extract` run (every length shares one pass over the windows).

use std::path::PathBuf;
use std::process::Command;

use clap::Args;

use crate::{run, timekd_binary};

/// Flags shared with `timekd extract`.
#[derive(Args, Debug)]
pub struct ExtractAll {
    /// Extract every length of --lengths (the only mode; spelled out for clarity).
    #[arg(long)]
    all_lengths: bool,
    /// Output lengths H to extract.
    #[arg(long, value_delimiter = ',', default_value = "24,36,48,96,192")]
    lengths: Vec<usize>,
    /// Dataset: a CSV path or a name (ETTh1 is built in).
    #[arg(long, default_value = "ETTh1")]
    data: String,
    /// GPT-2 weights (directory or Hugging Face cache id). Default: the tiny test model.
    #[arg(long, default_value = "models/tiny-gpt2")]
    model: String,
    /// cpu, cuda, cuda:N or cuda:all.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// f32, tf32 or f16.
    #[arg(long, default_value = "f32")]
    precision: String,
    /// Memory budget per device, e.g. 24GiB.
    #[arg(long)]
    max_gpu_mem: Option<String>,
    /// Most padded tokens per forward pass (default: from the memory budget).
    #[arg(long)]
    batch_tokens: Option<usize>,
    /// Only the first K windows of each split.
    #[arg(long)]
    max_windows: Option<usize>,
    /// Root directory of the stores.
    #[arg(long, default_value = "runs/embeddings")]
    out: PathBuf,
    /// A prebuilt timekd binary (default: build target/release/timekd).
    #[arg(long)]
    timekd: Option<PathBuf>,
}

/// Runs `timekd extract --split all --output-len <every length>`; finished stores are skipped
/// and partial ones resumed by timekd itself.
pub fn extract_all(args: ExtractAll) -> anyhow::Result<()> {
    let timekd = timekd_binary(args.timekd.as_deref())?;
    let lengths: Vec<String> = args.lengths.iter().map(usize::to_string).collect();
    let lengths = lengths.join(",");
    eprintln!(
        "xtask: extracting H = {lengths} (train + val) for {}",
        args.data
    );
    let mut command = Command::new(&timekd);
    command.args(["extract", "--split", "all", "--data", &args.data]);
    command.args(["--model", &args.model, "--output-len", &lengths]);
    command.args(["--device", &args.device, "--precision", &args.precision]);
    command.arg("--out").arg(&args.out);
    if let Some(mem) = &args.max_gpu_mem {
        command.args(["--max-gpu-mem", mem]);
    }
    if let Some(n) = args.batch_tokens {
        command.args(["--batch-tokens", &n.to_string()]);
    }
    if let Some(k) = args.max_windows {
        command.args(["--max-windows", &k.to_string()]);
    }
    run(&mut command)
}
