//! `timekd extract`: the flags of [`timekd_teacher::extract::Extraction`], its dry-run report
//! and its progress bar.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use timekd_data::SplitKind;
use timekd_teacher::DeviceSpec;
use timekd_teacher::ValueFormat;
use timekd_teacher::extract::{
    Engine, Extraction, MemSize, RequestedPrecision, Shard, budget::gib,
};
use timekd_teacher::gpt2::hub::fetch_model;

use crate::data_args::DataArgs;
use crate::download::DownloadProgress;
use crate::progress::ExtractProgress;

mod plan;

/// Extract teacher embeddings into one HDF5 store per (output length, split).
///
/// Example: `timekd extract --data ETTh1 --output-len 24,48 --model models/tiny-gpt2 --out runs/emb`
///
/// Several output lengths share one pass over the windows (window i has the same history for
/// every H). Rerunning the same command resumes an interrupted run; a store made with other
/// settings (data, model, layers, seed, ...) is an error naming the differences unless
/// --overwrite.
#[derive(Args, Debug)]
pub struct ExtractArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Which splits to extract: train, val or all (train and val; test needs none).
    #[arg(long, default_value = "all", value_name = "train|val|all")]
    pub split: String,
    /// The teacher: a directory with config.json + model.safetensors (or its shards), plus
    /// tokenizer.json for families other than GPT-2, or a Hugging Face model id (`gpt2`,
    /// `gpt2-xl`, `meta-llama/Llama-3.2-1B`, `bert-base-uncased`), taken from the cache
    /// (HF_HUB_CACHE, HF_HOME) or downloaded into it from HF_ENDPOINT (HF_TOKEN for gated
    /// models) unless HF_HUB_OFFLINE is set. The family (gpt2, llama, bert) comes from
    /// config.json's model_type. The repository ships `models/tiny-gpt2`, a 2-layer random
    /// test model.
    #[arg(long, value_name = "DIR|ID")]
    pub model: String,
    /// Use only the first K transformer blocks (default: all of the checkpoint's).
    #[arg(long, value_name = "K", alias = "layers")]
    pub gpt2_layers: Option<usize>,
    /// Where to run: cpu, cuda, cuda:N or cuda:all (one worker per GPU).
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    /// Float type of the language model's matrix products: f32 (f32 accuracy everywhere),
    /// tf32 (a GPU's faster tensor-core f32, ≈1e-3 relative error) or f16 (half the memory,
    /// ≈2.5e-3; 4x f32 on an H100). The residual stream and LayerNorms always run in f32.
    /// bf16 is refused: 1.6e-2 from f32, over the 1e-2 bar.
    #[arg(long, default_value = "f32")]
    pub precision: RequestedPrecision,
    /// Memory budget per device that batch sizes are planned for (default: a GPU's free
    /// memory less 10% and 1 GiB, from nvidia-smi; 4GiB on the CPU).
    #[arg(long, value_name = "SIZE")]
    pub max_gpu_mem: Option<MemSize>,
    /// Most padded tokens per forward pass, overriding the budget's choice.
    #[arg(long, value_name = "N")]
    pub batch_tokens: Option<usize>,
    /// Run each prompt family's shared history prefix once per prompt instead of once from a
    /// key/value cache (same results up to float rounding; for measuring what the cache saves).
    #[arg(long)]
    pub no_prefix_cache: bool,
    /// Which implementation runs the language model on a GPU: `cuda` (the default in CUDA
    /// builds for GPT-2: cuBLASLt products and fused attention kernels) or `burn` (Burn's
    /// CUDA backend: LLaMA and BERT, and GPT-2 for comparisons). The CPU always runs Burn.
    #[arg(long, default_value = "auto", value_name = "auto|cuda|burn")]
    pub engine: Engine,
    /// Seed of the SCA's PyTorch-default initialisation (recorded in the store).
    #[arg(long, default_value_t = 2024)]
    pub sca_seed: u64,
    /// Load SCA weights from a safetensors file (release key names) instead of the seed.
    #[arg(long, value_name = "FILE")]
    pub sca_weights: Option<PathBuf>,
    /// How prompt values are written: int (the release's truncation) or fixedN.
    #[arg(long, default_value = "int")]
    pub value_format: ValueFormat,
    /// Extract only the first K windows of each split (a quick run; the store says so).
    #[arg(long, value_name = "K")]
    pub max_windows: Option<usize>,
    /// This host's share of the windows, `i/n` (0-based); default from
    /// SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT when set. Merge with `timekd store merge`.
    #[arg(long, value_name = "i/n")]
    pub shard: Option<Shard>,
    /// Print windows, prompts, tokens, FLOPs, memory per pass, a time estimate and which
    /// output lengths fit the model's positions (1,024 for GPT-2, 512 for BERT); load no
    /// weights, download nothing, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also report the rate after the first K embeddings of this run (steady state: GPU
    /// kernels are compiled and autotuned on first use of each shape), timed by when the
    /// model finished each chunk; time many chunks after K for a rate. For benchmarks.
    #[arg(long, value_name = "K")]
    pub report_after: Option<usize>,
    /// Replace existing stores instead of resuming them.
    #[arg(long)]
    pub overwrite: bool,
    /// Root directory of the stores.
    #[arg(long, default_value = "runs/embeddings")]
    pub out: PathBuf,
}

/// Runs the command.
pub fn run(args: ExtractArgs) -> anyhow::Result<()> {
    let loaded = args.data.load_lengths()?;
    // A hub id missing from the cache is downloaded now, with progress (not in a dry run).
    if !args.dry_run {
        fetch_model(&args.model, &mut DownloadProgress::new())?;
    }
    let data = &loaded.dataset;
    let splits = match args.split.as_str() {
        "all" => vec![SplitKind::Train, SplitKind::Val],
        other => vec![other.parse::<SplitKind>().context("--split")?],
    };
    let shard = match args.shard {
        Some(shard) => Some(shard),
        None => Shard::from_slurm_env()?,
    };
    let extraction = Extraction::builder(&loaded.source, data, &args.out)
        .model(&args.model)
        .gpt2_layers(args.gpt2_layers)
        .engine(args.engine)
        .devices(args.device)
        .precision(args.precision)
        .max_memory(args.max_gpu_mem)
        .batch_tokens(args.batch_tokens)
        .prefix_cache(!args.no_prefix_cache)
        .sca_seed(args.sca_seed)
        .sca_weights(args.sca_weights.clone())
        .value_format(args.value_format)
        .max_windows(args.max_windows)
        .shard(shard)
        .overwrite(args.overwrite)
        .splits(&splits)
        .lengths(&args.data.output_len)
        .build()?;
    let shape = extraction.model_shape();
    eprintln!(
        "timekd extract: data {} ({} variables, H = {:?}), model {} ({}, {} of {} layers, width {}) from {}",
        loaded.source.origin(),
        data.n_vars(),
        extraction.lengths(),
        args.model,
        shape.family,
        extraction.layers(),
        shape.layers,
        shape.d_model,
        extraction.model_dir().display()
    );
    let budget = extraction.budget();
    eprintln!(
        "memory budget per device: {:.2} GiB ({})",
        gib(budget.bytes),
        budget.source
    );
    if args.dry_run {
        plan::print_plan(&extraction.plan()?, &args, shape);
        return Ok(());
    }
    let mut progress = ExtractProgress::new(args.report_after);
    let summary = extraction.run(&mut progress)?;
    progress.finish(&summary);
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use timekd_teacher::Gpus;

    use super::*;

    #[test]
    fn clap_parses_the_arguments_through_from_str() {
        #[derive(Parser, Debug)]
        struct Args {
            #[arg(long, default_value = "cpu")]
            device: DeviceSpec,
            #[arg(long, default_value = "f32")]
            precision: RequestedPrecision,
            #[arg(long)]
            max_gpu_mem: Option<MemSize>,
        }
        let args = Args::try_parse_from([
            "timekd",
            "--device",
            "cuda:all",
            "--precision",
            "f16",
            "--max-gpu-mem",
            "24GiB",
        ])
        .unwrap();
        assert_eq!(args.device, DeviceSpec::Cuda(Gpus::All));
        assert_eq!(args.precision, RequestedPrecision::F16);
        assert_eq!(args.max_gpu_mem.map(MemSize::bytes), Some(24 << 30));

        let defaults = Args::try_parse_from(["timekd"]).unwrap();
        assert_eq!(defaults.device, DeviceSpec::Cpu);
        assert_eq!(defaults.precision, RequestedPrecision::F32);

        let err = Args::try_parse_from(["timekd", "--device", "tpu"]).unwrap_err();
        assert!(err.to_string().contains("expected cpu, cuda"), "{err}");
    }
}
