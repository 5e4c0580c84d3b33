//! `timekd extract`: windows → prompts → batched calibrated GPT-2 → SCA → HDF5 store.
//!
//! One store per split at `<out>/<dataset>/<H>/<split>.h5`, resumable: a rerun skips the
//! windows already durable and continues. Several devices (`--device cuda:all`) run one
//! worker each, pulling chunks of windows from one queue; the main thread alone writes the
//! store, so the result does not depend on how many workers ran.

use std::io::IsTerminal;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, bail};
use burn::tensor::Device;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use timekd_data::{Dataset, SplitKind};
use timekd_store::{Dtype, Fingerprint, StoreWriter, WriterOptions};
use timekd_teacher::gpt2::resolve_model_dir;
use timekd_teacher::{
    BatchOptions, EncodedWindows, Gpt2, Gpt2Config, Gpt2Tokenizer, LanguageModel, PairLengths,
    PromptBuilder, PromptTemplate, Sca, Teacher, ValueFormat, WindowInput, encode_windows,
};

use crate::budget;
use crate::data_args::DataArgs;
use crate::device::{DeviceSpec, MemSize, Precision};
use crate::shard::Shard;

/// Extract teacher embeddings into one HDF5 store per split.
///
/// Example: `timekd extract --data ETTh1 --output-len 24 --model models/tiny-gpt2 --out runs/emb`
///
/// Rerunning the same command resumes an interrupted run; a store made with other settings
/// (data, model, layers, seed, ...) is an error naming the differences unless --overwrite.
#[derive(Args, Debug)]
pub struct ExtractArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Which splits to extract: train, val or all (train and val; test needs none).
    #[arg(long, default_value = "all", value_name = "train|val|all")]
    pub split: String,
    /// GPT-2 weights: a directory with config.json + model.safetensors, or a Hugging Face
    /// model id found in the local cache (e.g. `gpt2`). The repository ships
    /// `models/tiny-gpt2`, a 2-layer random test model.
    #[arg(long, value_name = "DIR|ID")]
    pub model: String,
    /// Use only the first K transformer blocks (default: all of the checkpoint's).
    #[arg(long, value_name = "K")]
    pub layers: Option<usize>,
    /// Where to run: cpu, cuda, cuda:N or cuda:all (one worker per GPU).
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    /// Float type of the language model's matrix products: f32 (f32 accuracy everywhere),
    /// tf32 (a GPU's faster tensor-core f32, ≈1e-3 relative error) or f16 (half the memory,
    /// ≈2.5e-3; 4x f32 on an H100). The residual stream and LayerNorms always run in f32.
    /// bf16 is refused: 1.6e-2 from f32, over the 1e-2 bar.
    #[arg(long, default_value = "f32")]
    pub precision: Precision,
    /// Memory budget per device that batch sizes are planned for (default: a GPU's free
    /// memory less 10% and 1 GiB, from nvidia-smi; 4GiB on the CPU).
    #[arg(long, value_name = "SIZE")]
    pub max_gpu_mem: Option<MemSize>,
    /// Most padded tokens per forward pass, overriding the budget's choice.
    #[arg(long, value_name = "N")]
    pub batch_tokens: Option<usize>,
    /// Run each GT/HD pair's shared history prefix twice instead of once from a key/value
    /// cache (same results up to float rounding; for measuring what the cache saves).
    #[arg(long)]
    pub no_prefix_cache: bool,
    /// Which implementation runs the language model on a GPU: `cuda` (the default in CUDA
    /// builds: cuBLASLt products and fused attention kernels) or `burn` (Burn's CUDA
    /// backend, for comparisons). The CPU always runs Burn.
    #[arg(long, default_value = "auto", value_name = "auto|cuda|burn")]
    pub engine: EngineChoice,
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
    /// Print windows, prompts, tokens, FLOPs, memory per pass and a time estimate; load no
    /// weights, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also report the rate after the first K windows of this run (steady state: GPU kernels
    /// are compiled and autotuned on first use of each shape). For benchmarks.
    #[arg(long, value_name = "K")]
    pub report_after: Option<usize>,
    /// Replace existing stores instead of resuming them.
    #[arg(long)]
    pub overwrite: bool,
    /// Root directory of the stores.
    #[arg(long, default_value = "runs/embeddings")]
    pub out: PathBuf,
}

/// `--engine`: which implementation runs GPT-2 on a GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineChoice {
    /// The CUDA engine where this binary has it, else Burn.
    Auto,
    /// The CUDA engine (CUDA builds only).
    Cuda,
    /// Burn's backend.
    Burn,
}

impl EngineChoice {
    /// Whether the CUDA engine runs on a GPU device; an error if it was asked for in a build
    /// without it.
    fn cuda_engine(self) -> anyhow::Result<bool> {
        match self {
            EngineChoice::Burn => Ok(false),
            EngineChoice::Auto => Ok(cfg!(feature = "cuda")),
            EngineChoice::Cuda if cfg!(feature = "cuda") => Ok(true),
            EngineChoice::Cuda => bail!(
                "--engine cuda: this timekd binary was built without CUDA support (scripts/gpu-build.sh)"
            ),
        }
    }
}

/// Where the store of one split lives.
pub fn store_path(out: &Path, dataset: &str, output_len: usize, split: SplitKind) -> PathBuf {
    out.join(dataset)
        .join(output_len.to_string())
        .join(format!("{}.h5", split.name()))
}

/// Runs the command.
pub fn run(args: ExtractArgs) -> anyhow::Result<()> {
    let loaded = args.data.load()?;
    let data = &loaded.dataset;
    let splits = parse_splits(&args.split)?;
    let model_dir = resolve_model_dir(&args.model)?;
    let config = Gpt2Config::from_file(&model_dir.join("config.json"))?;
    let layers = args.layers.unwrap_or(config.n_layer);
    let builder = PromptBuilder::new(
        PromptTemplate::for_preset(data.preset(), data.interval_seconds()),
        args.value_format,
    );
    let dataset_name = dataset_name(&args.data.data, data);
    eprintln!(
        "timekd extract: data {} ({} variables, H = {}), model {} ({} of {} layers, width {}) from {}",
        loaded.origin,
        data.n_vars(),
        data.output_len(),
        args.model,
        layers,
        config.n_layer,
        config.n_embd,
        model_dir.display()
    );
    let shard = match args.shard {
        Some(shard) => Some(shard),
        None => Shard::from_slurm_env()?,
    };
    let (budget_bytes, source) = budget(&args);
    eprintln!(
        "memory budget per device: {:.2} GiB ({source})",
        budget_bytes as f64 / (1u64 << 30) as f64
    );
    if args.dry_run {
        return dry_run(
            &args,
            budget_bytes,
            data,
            &config,
            layers,
            &builder,
            &splits,
        );
    }
    let devices = args.device.devices()?;
    for split in splits {
        extract_split(
            &args,
            &loaded.sha256,
            &dataset_name,
            data,
            split,
            &devices,
            &builder,
            &config,
            layers,
            shard,
            budget_bytes,
        )?;
    }
    Ok(())
}

fn parse_splits(text: &str) -> anyhow::Result<Vec<SplitKind>> {
    match text {
        "all" => Ok(vec![SplitKind::Train, SplitKind::Val]),
        other => Ok(vec![other.parse::<SplitKind>().context("--split")?]),
    }
}

/// The name stores are filed under: the preset, or the file stem of a custom CSV.
fn dataset_name(data_arg: &str, data: &Dataset) -> String {
    match data.preset() {
        timekd_data::Preset::Custom => Path::new(data_arg)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "custom".into()),
        preset => preset.name().to_string(),
    }
}

fn windows_of(args: &ExtractArgs, data: &Dataset, split: SplitKind) -> usize {
    let all = data.split(split).num_windows();
    args.max_windows.map_or(all, |k| k.min(all))
}

/// The memory budget per device and where it came from: `--max-gpu-mem`, else on a GPU its
/// free memory (the smallest over the GPUs used) less 10% and 1 GiB, else 4 GiB on the CPU.
/// Taken once per run, before any model is loaded: a later reading would see this run's own
/// memory pool.
fn budget(args: &ExtractArgs) -> (u64, String) {
    match (args.max_gpu_mem, args.device) {
        (Some(size), _) => (size.bytes(), "--max-gpu-mem".into()),
        (None, DeviceSpec::Cpu) => (4 << 30, "the CPU default".into()),
        (None, DeviceSpec::Cuda(gpus)) => match crate::device::gpu_free_memory(gpus) {
            Some(free) => (
                (free as f64 * 0.9) as u64 - (1 << 30).min(free / 2),
                format!(
                    "free GPU memory ({:.1} GiB, nvidia-smi) less 10% and 1 GiB",
                    free as f64 / (1u64 << 30) as f64
                ),
            ),
            None => (
                24 << 30,
                "24 GiB: nvidia-smi could not report free memory; set --max-gpu-mem".into(),
            ),
        },
    }
}

/// Batch options from `budget_bytes` at the longest padded length the data can produce.
fn batch_options(
    args: &ExtractArgs,
    budget_bytes: u64,
    config: &Gpt2Config,
    layers: usize,
    longest: usize,
) -> (BatchOptions, u64) {
    let defaults = BatchOptions::default();
    let padded = longest.div_ceil(defaults.length_bucket) * defaults.length_bucket;
    let padded = padded.min(config.n_positions);
    let precision = args.precision.teacher(args.device);
    let planned = budget::plan(config, layers, padded, precision, budget_bytes);
    let max_tokens = args.batch_tokens.unwrap_or(planned.max_tokens);
    let peak = budget::peak_bytes(config, layers, padded, precision, max_tokens);
    let options = BatchOptions {
        max_prompts: max_tokens.div_ceil(32).max(1),
        max_tokens,
        share_prefix: !args.no_prefix_cache,
        // Few distinct tensor shapes on a GPU: each new one compiles and autotunes kernels.
        batch_multiple: match args.device {
            DeviceSpec::Cpu => 1,
            DeviceSpec::Cuda(_) => 16,
        },
        ..defaults
    };
    (options, peak)
}

/// Token counts of the prompts of `windows` (sampled evenly when there are many).
struct TokenSurvey {
    mean_gt: f64,
    mean_hd: f64,
    /// Mean tokens a GT/HD pair shares at its start (0 where it shares none).
    mean_prefix: f64,
    longest: usize,
}

fn survey_tokens(
    data: &Dataset,
    split: SplitKind,
    windows: usize,
    builder: &PromptBuilder,
) -> anyhow::Result<TokenSurvey> {
    let tokenizer = Gpt2Tokenizer::new()?;
    let split_view = data.split(split);
    let sample = windows.min(256);
    let picks: Vec<usize> = (0..sample).map(|i| i * windows / sample).collect();
    let inputs: Vec<WindowInput> = picks
        .iter()
        .map(|&i| WindowInput::from_window(&split_view.window(i), data.n_vars()))
        .collect();
    let encoded = encode_windows(&tokenizer, builder, &inputs)?;
    let n = encoded.len().max(1) as f64;
    Ok(TokenSurvey {
        mean_gt: encoded.iter().map(|p| p.gt.len()).sum::<usize>() as f64 / n,
        mean_hd: encoded.iter().map(|p| p.hd.len()).sum::<usize>() as f64 / n,
        mean_prefix: encoded
            .iter()
            .filter_map(|p| PairLengths::of(&p.gt, &p.hd))
            .map(|l| l.prefix)
            .sum::<usize>() as f64
            / n,
        // Future values widen the GT prompt; leave room for longer numbers than sampled.
        longest: encoded
            .iter()
            .map(|p| p.gt.len().max(p.hd.len()))
            .max()
            .unwrap_or(1)
            + 16,
    })
}

/// Forward FLOPs (matmuls only) of `t` query tokens that follow `past` cached tokens.
fn forward_flops(config: &Gpt2Config, layers: usize, past: f64, t: f64) -> f64 {
    let d = config.n_embd as f64;
    let inner = config.n_inner as f64;
    let per_token_linear = 2.0 * (4.0 * d * d + 2.0 * d * inner);
    // QKᵀ and AV over the keys each query sees: the past ones and the causal half of its own.
    let attention = 2.0 * 2.0 * t * (past + t / 2.0) * d;
    layers as f64 * (per_token_linear * t + attention)
}

impl TokenSurvey {
    /// Forward FLOPs of one (window, variable): both prompts in full, or, with the prefix
    /// cache, the shared prefix once and the two suffixes after it.
    fn flops_per_pair(&self, config: &Gpt2Config, layers: usize, prefix_cache: bool) -> f64 {
        let flops = |past, t| forward_flops(config, layers, past, t);
        if prefix_cache {
            let p = self.mean_prefix;
            flops(0.0, p) + flops(p, self.mean_gt - p) + flops(p, self.mean_hd - p)
        } else {
            flops(0.0, self.mean_gt) + flops(0.0, self.mean_hd)
        }
    }
}

fn dry_run(
    args: &ExtractArgs,
    budget_bytes: u64,
    data: &Dataset,
    config: &Gpt2Config,
    layers: usize,
    builder: &PromptBuilder,
    splits: &[SplitKind],
) -> anyhow::Result<()> {
    for &split in splits {
        let windows = windows_of(args, data, split);
        let survey = survey_tokens(data, split, windows, builder)?;
        let prompts = 2 * windows * data.n_vars();
        let tokens = (survey.mean_gt + survey.mean_hd) * (windows * data.n_vars()) as f64;
        let pairs = (windows * data.n_vars()) as f64;
        let flops = pairs * survey.flops_per_pair(config, layers, false);
        let flops_run = pairs * survey.flops_per_pair(config, layers, !args.no_prefix_cache);
        let (options, peak) = batch_options(args, budget_bytes, config, layers, survey.longest);
        // Sustained rates measured with this tool: ≈35 TFLOP/s f32 on an H100, ≈10 GFLOP/s
        // for small models on two CPU cores. An estimate, not a promise.
        let rate = match args.device {
            DeviceSpec::Cpu => 10e9,
            DeviceSpec::Cuda(_) => 35e12,
        };
        println!("split {split}: {windows} windows, {prompts} prompts");
        println!(
            "  tokens per prompt (mean of a sample): GT {:.0}, HD {:.0}; longest ≈ {}",
            survey.mean_gt, survey.mean_hd, survey.longest
        );
        println!(
            "  tokens in all: {:.3e}; forward FLOPs ≈ {:.3e}",
            tokens, flops
        );
        let cache = if args.no_prefix_cache {
            "off".to_string()
        } else {
            format!("on, {:.0} shared tokens per pair", survey.mean_prefix)
        };
        println!("  forward FLOPs run ≈ {flops_run:.3e} (prefix cache {cache})");
        println!(
            "  per pass: ≤ {} padded tokens, ≤ {} prompts, est. peak memory {:.2} GiB (budget {:.2} GiB)",
            options.max_tokens,
            options.max_prompts,
            peak as f64 / (1u64 << 30) as f64,
            budget_bytes as f64 / (1u64 << 30) as f64
        );
        println!(
            "  time estimate on {}: {:.0} s",
            args.device,
            flops_run / rate
        );
    }
    Ok(())
}

/// The string recorded as the prompt template in store fingerprints.
fn template_id(builder: &PromptBuilder) -> String {
    let t = &builder.template;
    format!(
        "timekd-v1|{}|{}|every {}|{}|{:?}",
        t.history_noun, t.future_noun, t.every, t.unit, t.date_format
    )
}

#[allow(clippy::too_many_arguments)]
fn extract_split(
    args: &ExtractArgs,
    data_sha256: &str,
    dataset_name: &str,
    data: &Dataset,
    split: SplitKind,
    devices: &[Device],
    builder: &PromptBuilder,
    config: &Gpt2Config,
    layers: usize,
    shard: Option<Shard>,
    budget_bytes: u64,
) -> anyhow::Result<()> {
    let windows_total = windows_of(args, data, split);
    let path = store_path(&args.out, dataset_name, data.output_len(), split);
    let rows = data.split(split).rows();
    let survey = survey_tokens(data, split, windows_total, builder)?;
    let (options, peak) = batch_options(args, budget_bytes, config, layers, survey.longest);
    let weights_sha256 =
        timekd_store::sha256_file(&resolve_model_dir(&args.model)?.join("model.safetensors"))?;
    let fingerprint = Fingerprint {
        schema_version: timekd_store::SCHEMA_VERSION,
        dataset: dataset_name.to_string(),
        data_sha256: data_sha256.to_string(),
        columns: data.var_names().to_vec(),
        split: split.name().to_string(),
        split_start: rows.start,
        split_end: rows.end,
        input_len: data.input_len(),
        output_len: data.output_len(),
        n_vars: data.n_vars(),
        d_model: config.n_embd,
        value_format: builder.value_format.name(),
        prompt_template: template_id(builder),
        model_id: args.model.clone(),
        weights_sha256,
        layers,
        sca_seed: args.sca_seed,
        compute_precision: args.precision.to_string(),
        dtype: Dtype::F32,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        created: String::new(),
    };
    let range = shard.map(|s| s.range(windows_total)).transpose()?;
    let writer_options = WriterOptions {
        overwrite: args.overwrite,
        part_windows: None,
        range: range.clone(),
    };
    let mut writer = StoreWriter::open(&path, fingerprint, windows_total, writer_options)?;
    let missing = writer.missing();
    let covered = range.map_or(windows_total, |r| r.len());
    eprintln!(
        "{split}: {} of {covered} windows to do -> {} (≤ {} padded tokens per pass, est. peak {:.2} GiB per device)",
        missing.len(),
        path.display(),
        options.max_tokens,
        peak as f64 / (1u64 << 30) as f64
    );
    if !missing.is_empty() {
        let tokens_per_window = ((survey.mean_gt + survey.mean_hd) * data.n_vars() as f64) as usize;
        let plan = WorkPlan {
            options,
            tokens_per_window,
            covered,
            budget_bytes,
        };
        run_workers(
            args,
            data,
            split,
            devices,
            builder,
            &plan,
            &missing,
            &mut writer,
        )?;
    }
    let final_path = writer.finish()?;
    eprintln!("{split}: done, {}", final_path.display());
    Ok(())
}

/// A chunk of windows and its embeddings [w, N, d].
type ChunkResult = anyhow::Result<(Vec<usize>, Vec<f32>)>;

/// How a split's missing windows are processed.
struct WorkPlan {
    options: BatchOptions,
    /// Mean tokens of a window's 2·N prompts (from the token survey), for the rate shown.
    tokens_per_window: usize,
    /// Windows this store covers (all, or this shard's).
    covered: usize,
    /// The memory budget per device.
    budget_bytes: u64,
}

/// A worker's device: the Burn device, its CUDA ordinal on a GPU, and the memory budget.
#[derive(Clone, Copy)]
struct Target<'a> {
    device: &'a Device,
    ordinal: Option<usize>,
    budget_bytes: u64,
}

#[allow(clippy::too_many_arguments)]
fn run_workers(
    args: &ExtractArgs,
    data: &Dataset,
    split: SplitKind,
    devices: &[Device],
    builder: &PromptBuilder,
    plan: &WorkPlan,
    missing: &[usize],
    writer: &mut StoreWriter,
) -> anyhow::Result<()> {
    let n = data.n_vars();
    let options = plan.options;
    // Enough prompts per chunk for several full passes, so passes are well filled.
    let chunk = (options.max_prompts * 4 / (2 * n)).clamp(1, 512);
    let queue: Arc<Mutex<std::vec::IntoIter<Vec<usize>>>> = Arc::new(Mutex::new(
        missing
            .chunks(chunk)
            .map(<[usize]>::to_vec)
            .collect::<Vec<_>>()
            .into_iter(),
    ));
    let bar = progress_bar(missing.len() as u64, split, plan.covered - missing.len());
    let started = Instant::now();
    let mut tokens_done = 0usize;
    // Without a terminal (batch jobs, logs) the bar is hidden: print a line now and then.
    let log_lines = !std::io::stderr().is_terminal();
    let mut last_line = Instant::now();
    let mut steady_from: Option<(Instant, u64)> = None;
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let (sender, receiver) = mpsc::sync_channel::<ChunkResult>(devices.len() * 2);
        let ordinals = args.device.cuda_ordinals(devices.len());
        for (device, ordinal) in devices.iter().zip(ordinals) {
            let queue = Arc::clone(&queue);
            let sender = sender.clone();
            let target = Target {
                device,
                ordinal,
                budget_bytes: plan.budget_bytes,
            };
            scope.spawn(move || {
                worker(args, data, split, target, builder, options, &queue, &sender)
            });
        }
        drop(sender);
        for result in receiver {
            let (windows, values) = result?;
            let per_window = values.len() / windows.len();
            for (window, embedding) in windows.iter().zip(values.chunks(per_window)) {
                writer.put(*window, embedding)?;
            }
            // A part per chunk: a crash loses at most the chunks in flight.
            writer.flush()?;
            tokens_done += windows.len() * plan.tokens_per_window;
            bar.inc(windows.len() as u64);
            if steady_from.is_none()
                && args
                    .report_after
                    .is_some_and(|k| bar.position() >= k as u64)
            {
                steady_from = Some((Instant::now(), bar.position()));
            }
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!("≈{:.0} tokens/s", tokens_done as f64 / secs));
            if log_lines && last_line.elapsed().as_secs() >= 30 {
                last_line = Instant::now();
                let (done, total) = (bar.position(), missing.len() as f64);
                let rate = done as f64 / secs;
                eprintln!(
                    "{split}: {done}/{total} windows, {rate:.2} windows/s, ETA {:.0} s",
                    (total - done as f64) / rate.max(1e-9)
                );
            }
        }
        Ok(())
    })?;
    writer.flush()?;
    bar.finish();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{split}: {} windows in {:.1} s = {:.2} windows/s, ≈{:.0} tokens/s on {} device(s)",
        missing.len(),
        secs,
        missing.len() as f64 / secs,
        tokens_done as f64 / secs,
        devices.len()
    );
    if let Some((since, done_then)) = steady_from {
        let windows = missing.len() as u64 - done_then;
        let secs = since.elapsed().as_secs_f64();
        eprintln!(
            "{split}: steady state after the first {done_then} windows: {windows} windows in {secs:.1} s = {:.2} windows/s",
            windows as f64 / secs.max(1e-9)
        );
    }
    Ok(())
}

fn progress_bar(len: u64, split: SplitKind, already: usize) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{split} [{{bar:30}}] {{pos}}/{{len}} windows ({already} done before) {{per_sec}} {{msg}} ETA {{eta}}"
        ))
        .expect("static template")
        .progress_chars("=> "),
    );
    bar
}

/// One device's loop: load the teacher, take chunks until the queue is empty.
#[allow(clippy::too_many_arguments)]
fn worker(
    args: &ExtractArgs,
    data: &Dataset,
    split: SplitKind,
    target: Target<'_>,
    builder: &PromptBuilder,
    options: BatchOptions,
    queue: &Mutex<std::vec::IntoIter<Vec<usize>>>,
    results: &mpsc::SyncSender<ChunkResult>,
) {
    let mut teacher = match load_teacher(args, data, target, builder, options) {
        Ok(teacher) => teacher,
        Err(err) => {
            let _ = results.send(Err(err));
            return;
        }
    };
    // Prompts for the next chunk are built on a second thread while the model runs.
    let encoder = teacher.encoder().clone();
    let split_view = data.split(split);
    std::thread::scope(|scope| {
        let (encoded_tx, encoded_rx) = mpsc::sync_channel(1);
        scope.spawn(move || {
            loop {
                let Some(windows) = queue.lock().expect("queue lock").next() else {
                    return;
                };
                let inputs: Vec<WindowInput> = windows
                    .iter()
                    .map(|&i| WindowInput::from_window(&split_view.window(i), data.n_vars()))
                    .collect();
                let encoded = encoder.encode(&inputs);
                if encoded_tx.send((windows, encoded)).is_err() {
                    return;
                }
            }
        });
        for (windows, encoded) in encoded_rx {
            let result = encoded
                .map_err(anyhow::Error::from)
                .and_then(|encoded| embed_with_retry(&mut teacher, &encoded))
                .map(|values| (windows, values));
            let failed = result.is_err();
            if results.send(result).is_err() || failed {
                return;
            }
        }
    });
}

fn load_teacher(
    args: &ExtractArgs,
    data: &Dataset,
    target: Target<'_>,
    builder: &PromptBuilder,
    options: BatchOptions,
) -> anyhow::Result<Teacher> {
    let device = target.device;
    let gpt2 = load_model(args, target)?;
    let sca = match &args.sca_weights {
        Some(path) => Sca::load(path, device)?,
        None => Sca::init(data.n_vars(), 4 * gpt2.d_model(), args.sca_seed, device),
    };
    if sca.n_vars() != data.n_vars() {
        bail!(
            "--sca-weights is for {} variables but the data has {}",
            sca.n_vars(),
            data.n_vars()
        );
    }
    Ok(Teacher::new(gpt2, sca, builder.clone(), options)?)
}

/// The language model of one worker: the CUDA engine on a GPU when `--engine` allows it,
/// else Burn's GPT-2 on the worker's device.
fn load_model(args: &ExtractArgs, target: Target<'_>) -> anyhow::Result<LanguageModel> {
    let precision = args.precision.teacher(args.device);
    #[cfg(feature = "cuda")]
    if let (Some(ordinal), true) = (target.ordinal, args.engine.cuda_engine()?) {
        let dir = resolve_model_dir(&args.model)?;
        let config = Gpt2Config::from_file(&dir.join("config.json"))?;
        let layers = args.layers.unwrap_or(config.n_layer);
        let limits = timekd_teacher::cuda::EngineLimits::for_budget(
            &config,
            layers,
            precision,
            target.budget_bytes,
        );
        let engine =
            timekd_teacher::cuda::CudaGpt2::load(&dir, args.layers, ordinal, precision, limits)?;
        eprintln!(
            "cuda:{ordinal}: CUDA engine on {} ({precision}): ≤ {} tokens per pass, {} prefix tokens cached, est. {:.2} GiB",
            engine.device_name(),
            limits.pass_tokens,
            limits.cache_tokens,
            limits.peak_bytes(&config, layers, precision) as f64 / (1u64 << 30) as f64
        );
        return Ok(LanguageModel::Cuda {
            engine: Box::new(engine),
            device: target.device.clone(),
        });
    }
    #[cfg(not(feature = "cuda"))]
    {
        // Refuses `--engine cuda`; a CPU build has no ordinal or engine budget to use.
        args.engine.cuda_engine()?;
        let _ = (target.ordinal, target.budget_bytes);
    }
    Ok(Gpt2::load(&args.model, args.layers, target.device)?
        .with_precision(precision)?
        .into())
}

/// Embeds `encoded`; on a device out-of-memory panic, halves the tokens per pass and
/// retries, down to one prompt per pass. Returns the values [w, N, d].
fn embed_with_retry(teacher: &mut Teacher, encoded: &EncodedWindows) -> anyhow::Result<Vec<f32>> {
    loop {
        let attempt = catch_unwind(AssertUnwindSafe(|| teacher.embed_encoded(encoded)));
        match attempt {
            Ok(result) => {
                let tensor = result?;
                let values = tensor.into_data().convert::<f32>().try_to_vec::<f32>();
                return values.map_err(|e| {
                    anyhow::anyhow!("reading embeddings back from the device: {e:?}")
                });
            }
            Err(panic) => {
                let message = panic_message(&panic);
                let mut options = *teacher.batch_options();
                if !looks_like_oom(&message) || options.max_tokens <= 1 || options.max_prompts <= 1
                {
                    bail!("the language model failed: {message}");
                }
                options.max_tokens /= 2;
                options.max_prompts = options.max_prompts.div_ceil(2);
                eprintln!(
                    "device out of memory; retrying with ≤ {} tokens per pass",
                    options.max_tokens
                );
                teacher.set_batch_options(options);
            }
        }
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}

fn looks_like_oom(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    ["out of memory", "outofmemory", "oom", "alloc"]
        .iter()
        .any(|k| lower.contains(k))
}
