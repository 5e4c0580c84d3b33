//! `cargo xtask bench extract`: extraction throughput on a GPU against two PyTorch GPT-2
//! anchors in the same invocation: the reference, what a user would run instead (batched,
//! whole prompts), and the expert, what a PyTorch expert would write (the shared history prefix
//! run once as tree attention, FlexAttention, torch.compile). Runs prebuilt binaries and the
//! two scripts; builds nothing on the GPU machine.
//!
//! Every case uses a GPT-2-small-shaped random-weight model (speed does not depend on the
//! weights). A case's rate is the steady state after its warm-up windows, in one process, timed
//! by when the model finished each chunk (timekd's `--report-after`): the SCA and store writes
//! of a chunk run beside the next one and hold it back when they are slower. Work comes in
//! chunks (ETTh1 at one H: 253 windows), so the warm-up and timed spans are at least 8 and 16
//! chunks whatever was asked. The all-lengths
//! case runs one pass for every output length and projects the whole dataset's train + val
//! time from its steady rate. With `--baseline`, another build runs every case right after
//! this one (before and after a change, measured in one invocation).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use clap::Args;

use crate::timekd_binary;

/// Bench flags.
#[derive(Args, Debug)]
pub struct BenchExtract {
    /// Cases as DATA:H, DATA being a CSV path or ETTh1 (train split).
    #[arg(long, value_delimiter = ',', default_value = "ETTh1:24,ETTh1:192")]
    cases: Vec<String>,
    /// Also one all-lengths pass over this dataset (a CSV path or ETTh1), train split; the
    /// projection covers train + val.
    #[arg(long, value_name = "DATA")]
    all_lengths: Option<String>,
    /// The output lengths of the all-lengths case.
    #[arg(long, value_delimiter = ',', default_value = "24,36,48,96,192")]
    lengths: Vec<usize>,
    /// Windows timed per case, after the warm-up windows; at least 16 of the case's chunks of
    /// work (its dry run says how many windows a chunk holds), raised where fewer.
    #[arg(long, default_value_t = 2048)]
    windows: usize,
    /// Windows before the timed ones, in the same process (kernel compilation, first-use
    /// allocations, the pipeline filling); at least 8 chunks, raised where fewer.
    #[arg(long, default_value_t = 256)]
    warmup: usize,
    /// cuda, cuda:N or cuda:all.
    #[arg(long, default_value = "cuda")]
    device: String,
    /// f16, f32 or tf32.
    #[arg(long, default_value = "f16")]
    precision: String,
    /// timekd's `--engine` (cuda or burn).
    #[arg(long, default_value = "cuda")]
    engine: String,
    /// Pass --no-prefix-cache to timekd (to measure what the cache saves).
    #[arg(long)]
    no_prefix_cache: bool,
    /// Memory budget per device.
    #[arg(long, default_value = "24GiB")]
    max_gpu_mem: String,
    /// The PyTorch reference script (a copy of the project's benchmark reference,
    /// ../shared/bench/torch_reference.py: batched SDPA over whole prompts, no prefix sharing),
    /// run first with `python3`; its windows/s per case are the ratio's denominator.
    #[arg(long, default_value = ".bench/torch_reference.py")]
    reference: PathBuf,
    /// Skip the reference.
    #[arg(long)]
    no_reference: bool,
    /// The PyTorch expert script (a copy of ../shared/bench/torch_expert.py: the shared prefix
    /// run once as tree attention, FlexAttention, torch.compile), run after the reference; its
    /// windows/s per case (embeddings/s for the all-lengths case) are the `vs expert`
    /// denominator. It runs fixed cases (ETTh1 and weather at H = 24 and 192; weather at every
    /// H of 24,36,48,96,192); other cases get no expert figure. If it fails, the bench goes on
    /// without it.
    #[arg(long, default_value = ".bench/torch_expert.py")]
    expert: PathBuf,
    /// Skip the expert.
    #[arg(long)]
    no_expert: bool,
    /// Work directory (random model, stores).
    #[arg(long, default_value = "/tmp/timekd-bench")]
    work: PathBuf,
    /// The timekd binary (default: target/release/timekd).
    #[arg(long)]
    timekd: Option<PathBuf>,
    /// Another timekd build (the one before a change) timed on every case right after this
    /// one, with the same windows, on the same machine: the `vs base` column is this build's
    /// rate over its.
    #[arg(long, value_name = "TIMEKD")]
    baseline: Option<PathBuf>,
}

struct Row {
    case: String,
    windows: usize,
    secs: f64,
    flops: f64,
    tokens: f64,
    peak_mib: Option<u64>,
    /// The model's chunks in the timed span (None from a timekd that does not say).
    chunks: Option<usize>,
    /// The baseline build's rate on the same case (`--baseline`).
    baseline: Option<f64>,
}

/// Fewer of the model's chunks than this in the timed span and a case's rate is flagged:
/// the pipeline's stages run a chunk or two apart and need some chunks to settle (ETTh1's are
/// 253 windows at H = 24, so 2,048 timed windows are 8 of them).
const STEADY_CHUNKS: usize = 16;

/// Chunks of warm-up a case gets at least: the first ones also carry the SCA's first-call
/// compilation and fill the worker's pipeline.
const WARMUP_CHUNKS: usize = 8;

/// The warm-up and timed windows of a case whose work comes in chunks of `chunk` windows:
/// those asked for, raised to [`WARMUP_CHUNKS`] and [`STEADY_CHUNKS`] chunks.
fn span_in_chunks(warmup: usize, windows: usize, chunk: usize) -> (usize, usize) {
    (
        warmup.max(WARMUP_CHUNKS * chunk),
        windows.max(STEADY_CHUNKS * chunk),
    )
}

impl Row {
    fn rate(&self) -> f64 {
        self.windows as f64 / self.secs
    }
}

/// The reference's windows/s for one dataset shape: eager, and torch.compile where it ran.
#[derive(Debug, Default, Clone, Copy)]
struct Reference {
    eager: Option<f64>,
    compiled: Option<f64>,
}

/// Runs the reference, the expert, every case and the all-lengths case; prints one table.
pub fn bench_extract(args: BenchExtract) -> anyhow::Result<()> {
    if !args.no_reference {
        require_script(&args.reference, "reference", "torch_reference.py")?;
    }
    if !args.no_expert {
        require_script(&args.expert, "expert", "torch_expert.py")?;
    }
    let timekd = timekd_binary(args.timekd.as_deref())?;
    if let Some(baseline) = args.baseline.as_deref().filter(|b| !b.is_file()) {
        bail!("--baseline {}: no such file", baseline.display());
    }
    let model = args.work.join("gpt2-small-random");
    std::fs::create_dir_all(&args.work)?;
    if !model.join("model.safetensors").is_file() {
        check(
            Command::new(&timekd)
                .args(["random-model", "--seed", "0", "--out"])
                .arg(&model),
        )?;
    }
    let device_name = gpu_name().unwrap_or_else(|| "unknown GPU (nvidia-smi not found)".into());
    let reference = if args.no_reference {
        String::new()
    } else {
        run_reference(&args.reference)?
    };
    // None when skipped; Err (why) when it failed, which leaves its columns empty.
    let expert = (!args.no_expert).then(|| run_expert(&args.expert));
    let expert_out = expert.as_ref().and_then(|e| e.as_deref().ok());
    // A case timed on this build, then on the baseline build if there is one.
    let timed = |case: &str, data: &str, lengths: &str, count: usize| -> anyhow::Result<Row> {
        let mut row = time_case(&args, &timekd, &model, case, data, lengths, count)?;
        if let Some(baseline) = &args.baseline {
            let base = time_case(&args, baseline, &model, case, data, lengths, count)?;
            row.baseline = Some(base.rate());
        }
        Ok(row)
    };
    let mut rows = Vec::new();
    for case in &args.cases {
        let (data, h) = case
            .rsplit_once(':')
            .with_context(|| format!("case {case:?}: expected DATA:H"))?;
        rows.push(timed(case, data, h, 1)?);
    }
    let all_lengths = match &args.all_lengths {
        Some(data) => {
            let list = args
                .lengths
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let case = format!("{data}:all({list})");
            let row = timed(&case, data, &list, args.lengths.len())?;
            let embeddings = all_lengths_embeddings(&timekd, data, &args.lengths)?;
            Some((row, embeddings))
        }
        None => None,
    };

    println!(
        "extraction bench on {device_name}: timekd --engine {} --device {} --precision {}, budget {}, prefix cache {}",
        args.engine,
        args.device,
        args.precision,
        args.max_gpu_mem,
        if args.no_prefix_cache { "off" } else { "on" }
    );
    println!(
        "model: GPT-2 small shape (12 layers, d 768, 12 heads), random weights seed 0; train split; \
         steady state after {} warm-up windows, timed by the model's chunks (SCA and store writes \
         run beside the next chunk and hold it back when slower). tokens/s = prompt \
         tokens (every prompt counted whole, as the reference computes it); TFLOP/s = matmul \
         work actually run on real tokens (prefix cache on, no padding counted)",
        args.warmup
    );
    if !args.no_reference {
        println!(
            "reference: {} (PyTorch f16 SDPA, batched, no prefix cache, no store), same machine, same invocation",
            args.reference.display()
        );
    }
    match &expert {
        Some(Ok(out)) => {
            println!(
                "expert: {} (PyTorch f16 FlexAttention, shared prefix as tree attention, torch.compile, no store), \
                 same machine, same invocation",
                args.expert.display()
            );
            for line in expert_notes(out) {
                println!("expert: {line}");
            }
        }
        Some(Err(why)) => println!(
            "expert anchor MISSING: {why} (its stderr's tail is in the log above); no expert columns"
        ),
        None => {}
    }
    println!(
        "{:<30} {:>7} {:>10} {:>10} {:>10} {:>8} {:>10} {:>9} {:>8} {:>11} {:>8} {:>9}",
        "case",
        "windows",
        "windows/s",
        "ref eager",
        "ref comp.",
        "ratio",
        "expert",
        "vs expert",
        "vs base",
        "tokens/s",
        "TFLOP/s",
        "peak MiB"
    );
    for row in rows.iter().chain(all_lengths.iter().map(|(r, _)| r)) {
        let r = reference_for(&reference, &row.case);
        let best = r.compiled.or(r.eager);
        let e = expert_out.and_then(|out| expert_for(out, &row.case));
        let shown = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        let ratio =
            |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.2}x", row.rate() / v));
        println!(
            "{:<30} {:>7} {:>10.1} {:>10} {:>10} {:>8} {:>10} {:>9} {:>8} {:>11.0} {:>8.1} {:>9}",
            row.case,
            row.windows,
            row.rate(),
            shown(r.eager),
            shown(r.compiled),
            ratio(best),
            shown(e),
            ratio(e),
            ratio(row.baseline),
            row.tokens / row.secs,
            row.flops / row.secs / 1e12,
            row.peak_mib.map_or("n/a".into(), |m| m.to_string())
        );
    }
    println!(
        "ratio = our windows/s over the reference's best (torch.compile where it ran, else eager)"
    );
    if let Some(baseline) = &args.baseline {
        println!(
            "vs base = our windows/s over those of {} (timed right after ours on each case, same \
             windows)",
            baseline.display()
        );
    }
    for row in rows.iter().chain(all_lengths.iter().map(|(r, _)| r)) {
        if let Some(chunks) = row.chunks.filter(|&n| n < STEADY_CHUNKS) {
            println!(
                "SHORT SPAN {}: its rate was read over {chunks} of the model's chunks (fewer than \
                 {STEADY_CHUNKS}): the pipeline may not be steady yet; raise --windows and --warmup",
                row.case
            );
        }
    }
    if expert_out.is_some() {
        println!(
            "vs expert = our windows/s over the expert's (one row = one variable of one window, \
             [prefix | GT suffix | HD suffix]; its windows/s = rows/s / variables)"
        );
        if all_lengths.is_some() {
            let n = EXPERT_ALL_LENGTHS.len();
            println!(
                "note: the all-lengths row is compared with the expert's embeddings/s (its row holds \
                 the prefix and every H's GT and HD suffixes; embeddings/s = windows/s × {n} H), the \
                 unit our all-lengths rate counts; its windows/s counts a window once for all {n} H, \
                 so is not comparable. Its all-lengths row is weather at H = {EXPERT_ALL_LENGTHS:?} only"
            );
        }
    }
    if let Some((row, (train, val))) = &all_lengths {
        let secs = (train + val) as f64 / row.rate();
        println!(
            "all lengths: its windows column counts embeddings (one per window and H); {train} train + {val} \
             val embeddings over every H at {:.1} embeddings/s → projected {:.1} min for the whole \
             dataset on one {device_name}",
            row.rate(),
            secs / 60.0
        );
    }
    Ok(())
}

/// One case in one process: `warmup + windows` windows at `count` output lengths, the rate
/// after the warm-up (in windows for one length, embeddings for several: timekd counts one
/// per window and H).
fn time_case(
    args: &BenchExtract,
    timekd: &Path,
    model: &Path,
    case: &str,
    data: &str,
    lengths: &str,
    count: usize,
) -> anyhow::Result<Row> {
    let out = args.work.join("timed");
    let base = |windows: usize| {
        let mut c = Command::new(timekd);
        c.args([
            "extract",
            "--split",
            "train",
            "--data",
            data,
            "--output-len",
            lengths,
        ]);
        c.arg("--model").arg(model);
        c.args([
            "--device",
            &args.device,
            "--engine",
            &args.engine,
            "--precision",
            &args.precision,
            "--max-gpu-mem",
            &args.max_gpu_mem,
            "--max-windows",
            &windows.to_string(),
            "--overwrite",
            "--out",
        ])
        .arg(&out);
        if args.no_prefix_cache {
            c.arg("--no-prefix-cache");
        }
        c
    };
    let total = args.warmup + args.windows;
    let dry = captured(base(total).arg("--dry-run"))?.stdout;
    let dry = String::from_utf8_lossy(&dry);
    let chunk = number_after(&dry, "work in chunks of ").map_or(1, |n| n as usize);
    let (warmup, windows) = span_in_chunks(args.warmup, args.windows, chunk);
    // One line per (H, split) store; several lengths share their prefixes, which the dry run
    // totals on a line of its own.
    let flops = number_after(&dry, "all lengths in one pass (each window's history prefix runs once for every H): forward FLOPs run ≈ ")
        .unwrap_or_else(|| numbers_after(&dry, "forward FLOPs run ≈ ").iter().sum());
    let tokens: f64 = numbers_after(&dry, "tokens in all: ").iter().sum();
    if flops == 0.0 || tokens == 0.0 {
        bail!("the dry run printed no FLOPs or token counts:\n{dry}");
    }
    let raised = if (warmup, windows) == (args.warmup, args.windows) {
        String::new()
    } else {
        format!(" (raised to {WARMUP_CHUNKS} and {STEADY_CHUNKS} of its chunks of {chunk} windows)")
    };
    eprintln!("bench {case}: {warmup} warm-up windows, then {windows} timed{raised}");
    let sampler = GpuSampler::start();
    let report_after = (warmup * count).to_string();
    let log = captured(base(warmup + windows).args(["--report-after", &report_after]))?.stderr;
    let log = String::from_utf8_lossy(&log);
    let peak_mib = sampler.stop().map(|s| s.peak_mib);
    let steady = log
        .lines()
        .find_map(|l| {
            l.split_once("steady state after the first ")
                .map(|(_, rest)| rest)
        })
        .with_context(|| format!("timekd reported no steady state:\n{log}"))?;
    let (windows, secs) = steady_rate(steady).context("the steady-state line")?;
    let chunks = number_after(steady, " over ").map(|n| n as usize);
    let share = windows as f64 / (total * count) as f64;
    Ok(Row {
        case: case.to_string(),
        windows,
        secs,
        flops: flops * share,
        tokens: tokens * share,
        peak_mib,
        chunks,
        baseline: None,
    })
}

/// The count and seconds of timekd's `steady state after the first K <unit>: N <unit> in S s
/// = R <unit>/s` (what follows "the first "); the unit is windows for one length, embeddings
/// for several. The seconds are N / R: S is printed to a tenth of a second, which on a
/// 2-second run would move the rate by 2.5%.
fn steady_rate(line: &str) -> Option<(usize, f64)> {
    let (_, after) = line.split_once(": ")?;
    let count = number_after(after, "")? as usize;
    let rate = number_after(after.split_once(" = ")?.1, "")?;
    (rate > 0.0).then(|| (count, count as f64 / rate))
}

/// Train and val embeddings of an all-lengths pass over `data`: Σ over H of each split's
/// windows at H, from `timekd inspect --json`.
fn all_lengths_embeddings(
    timekd: &Path,
    data: &str,
    lengths: &[usize],
) -> anyhow::Result<(usize, usize)> {
    let (mut train, mut val) = (0, 0);
    for h in lengths {
        let out = captured(Command::new(timekd).args([
            "inspect",
            "--data",
            data,
            "--output-len",
            &h.to_string(),
            "--json",
        ]))?
        .stdout;
        let json: serde_json::Value =
            serde_json::from_slice(&out).context("timekd inspect --json")?;
        let windows = |split: &str| {
            json["splits"][split]["windows"]
                .as_u64()
                .with_context(|| format!("inspect printed no {split} window count"))
        };
        train += windows("train")? as usize;
        val += windows("val")? as usize;
    }
    Ok((train, val))
}

/// Fails before anything runs when the `anchor` script (`--anchor`, from
/// ../shared/bench/`name`) is missing.
fn require_script(script: &Path, anchor: &str, name: &str) -> anyhow::Result<()> {
    if !script.is_file() {
        bail!(
            "the {anchor} script {} is missing: copy the project's PyTorch {anchor} there \
             (e.g. ../shared/bench/{name} into a git-ignored .bench/) or pass --no-{anchor}",
            script.display()
        );
    }
    Ok(())
}

/// `python3 script`, unbuffered.
fn python(script: &Path) -> Command {
    let mut c = Command::new("python3");
    c.arg(script).env("PYTHONUNBUFFERED", "1");
    c
}

/// Runs the PyTorch reference; its stdout.
fn run_reference(script: &Path) -> anyhow::Result<String> {
    eprintln!(
        "bench: running the PyTorch reference {} (about 3 minutes)",
        script.display()
    );
    let out = captured(&mut python(script))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprint!("{text}");
    Ok(text)
}

/// Runs the PyTorch expert; its stdout, or why it failed (a non-zero exit: its stderr's tail is
/// printed, its last line kept in the reason).
fn run_expert(script: &Path) -> Result<String, String> {
    eprintln!(
        "bench: running the PyTorch expert {} (a check, then torch.compile and 8 s per case: \
         several minutes)",
        script.display()
    );
    let out = python(script)
        .output()
        .map_err(|e| format!("python3 {} did not start: {e}", script.display()))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprint!("{text}");
    if out.status.success() {
        return Ok(text);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail = last_lines(&stderr, 30);
    eprintln!(
        "bench: the expert {} failed ({}); the end of its stderr:\n{tail}\n\
         bench: going on without the expert anchor",
        script.display(),
        out.status
    );
    Err(format!(
        "{} failed ({}): {}",
        script.display(),
        out.status,
        last_lines(&tail, 1)
    ))
}

/// The last `n` non-blank lines of `text`.
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The lines of a script's output about `data` (a CSV path or a name, matched by file stem)
/// that go on with `label`, both case-insensitively: `<dataset> <label>...`.
fn dataset_lines<'a>(output: &'a str, data: &str, label: &str) -> impl Iterator<Item = &'a str> {
    let stem = Path::new(data)
        .file_stem()
        .map_or(data.to_string(), |s| s.to_string_lossy().into_owned());
    let prefix = format!("{stem} {label}").to_ascii_lowercase();
    output
        .lines()
        .filter(move |l| l.to_ascii_lowercase().starts_with(&prefix))
}

/// The reference's rates for a case `DATA:H` (or `DATA:all(...)`, compared with nothing):
/// its lines read `<dataset> H=<H> eager ...: windows/s <x>` and `... torch.compile ...`,
/// at the largest batch it ran.
fn reference_for(output: &str, case: &str) -> Reference {
    let Some((data, h)) = case.rsplit_once(':') else {
        return Reference::default();
    };
    let mut r = Reference::default();
    for line in dataset_lines(output, data, &format!("h={h} ")) {
        let lower = line.to_ascii_lowercase();
        let Some(rate) = number_after(line, "windows/s ") else {
            continue;
        };
        let largest_batch = lower.contains("batch_tokens=65536");
        if lower.contains("torch.compile") {
            r.compiled = Some(rate);
        } else if lower.contains("eager") && (largest_batch || r.eager.is_none()) {
            r.eager = Some(rate);
        }
    }
    r
}

/// The output lengths of the expert's all-lengths row (its `allh`; the row's label prints only
/// their range, `all H (24..192)`).
const EXPERT_ALL_LENGTHS: [usize; 5] = [24, 36, 48, 96, 192];

/// The expert's rate for a case `DATA:H`: `<dataset> H=<H> tree+flex compiled: rows/s ..
/// windows/s <x> ...`. For `DATA:all(24,36,48,96,192)`, the embeddings/s of its `<dataset> all
/// H (24..192) ...` row (one per window and H, as our all-lengths rate counts). None where it
/// ran no such case or the case failed.
fn expert_for(output: &str, case: &str) -> Option<f64> {
    let (data, h) = case.rsplit_once(':')?;
    let Some(list) = h.strip_prefix("all(").and_then(|l| l.strip_suffix(')')) else {
        return dataset_lines(output, data, &format!("h={h} "))
            .find_map(|l| number_after(l, "windows/s "));
    };
    let mut lengths = list
        .split(',')
        .map(str::parse)
        .collect::<Result<Vec<usize>, _>>()
        .ok()?;
    lengths.sort_unstable();
    if lengths != EXPERT_ALL_LENGTHS {
        return None;
    }
    dataset_lines(output, data, "all h (").find_map(|l| number_after(l, "embeddings/s "))
}

/// The expert's lines the log must show: its check of the tree forward against whole prompts
/// (`check: tree vs plain prompts, max rel L2 <e>` or `check failed: ...`), a case that failed
/// (`... failed: ...`) and its verdict (`peak GiB <g>; check ok|FAILED`).
fn expert_notes(output: &str) -> Vec<&str> {
    output
        .lines()
        .filter(|l| l.starts_with("check") || l.contains(" failed: ") || l.contains("; check "))
        .collect()
}

pub(crate) fn check(command: &mut Command) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("starting {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}

/// Runs `command` to success, capturing what it writes; a failure carries its stderr.
pub(crate) fn captured(command: &mut Command) -> anyhow::Result<std::process::Output> {
    let out = command
        .output()
        .with_context(|| format!("starting {command:?}"))?;
    if !out.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// The number printed right after `marker` (first occurrence).
fn number_after(text: &str, marker: &str) -> Option<f64> {
    numbers_after(text, marker).into_iter().next()
}

/// The numbers printed right after each occurrence of `marker`.
fn numbers_after(text: &str, marker: &str) -> Vec<f64> {
    text.match_indices(marker)
        .filter_map(|(at, _)| {
            let rest = &text[at + marker.len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_digit() || "+-.eE".contains(c)))
                .unwrap_or(rest.len());
            rest[..end].parse().ok()
        })
        .collect()
}

pub(crate) fn gpu_name() -> Option<String> {
    let out = Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader"])
        .output()
        .ok()?;
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()?
            .trim()
            .to_string(),
    )
}

/// What [`GpuSampler`] saw.
pub(crate) struct GpuSamples {
    /// Peak used memory, all GPUs together (MiB).
    pub peak_mib: u64,
    /// Mean utilisation over samples and GPUs (%: the share of time a kernel ran).
    pub mean_utilization: f64,
}

/// Samples used GPU memory and utilisation with nvidia-smi every 200 ms.
pub(crate) struct GpuSampler {
    child: Option<std::process::Child>,
}

impl GpuSampler {
    pub(crate) fn start() -> Self {
        let child = Command::new("nvidia-smi")
            .args([
                "--query-gpu=index,memory.used,utilization.gpu",
                "--format=csv,noheader,nounits",
                "-lms",
                "200",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        GpuSampler { child }
    }

    pub(crate) fn stop(self) -> Option<GpuSamples> {
        let mut child = self.child?;
        child.kill().ok();
        let stdout = child.stdout.take()?;
        let lines: Vec<String> = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect();
        child.wait().ok();
        parse_samples(&lines)
    }
}

/// `index, memory MiB, utilisation %` lines (one per GPU per sample) → peak memory summed over
/// the GPUs of a sample, mean utilisation.
fn parse_samples(lines: &[String]) -> Option<GpuSamples> {
    let rows: Vec<(u64, u64, f64)> = lines
        .iter()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').map(str::trim).collect();
            Some((
                f.first()?.parse().ok()?,
                f.get(1)?.parse().ok()?,
                f.get(2)?.parse().ok()?,
            ))
        })
        .collect();
    if rows.is_empty() {
        return None;
    }
    // A sample is a run of rows whose GPU index does not repeat.
    let mut peak_mib = 0;
    let mut sample_mib = 0;
    let mut seen = Vec::new();
    for &(index, mib, _) in &rows {
        if seen.contains(&index) {
            seen.clear();
            sample_mib = 0;
        }
        seen.push(index);
        sample_mib += mib;
        peak_mib = peak_mib.max(sample_mib);
    }
    let mean_utilization = rows.iter().map(|r| r.2).sum::<f64>() / rows.len() as f64;
    Some(GpuSamples {
        peak_mib,
        mean_utilization,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_lines_are_matched_by_dataset_and_h() {
        let out = "NVIDIA H200 2.11.0\n\
            ETTh1 H=24 eager f16 batch_tokens=16384: windows/s 300.5  gt tok/s 1\n\
            ETTh1 H=24 eager f16 batch_tokens=65536: windows/s 344.0  gt tok/s 1\n\
            ETTh1 H=192 eager f16 batch_tokens=65536: windows/s 204.2  gt tok/s 1\n\
            weather H=192 eager f16 batch_tokens=65536: windows/s 64.0  gt tok/s 1\n\
            ETTh1 H=24 torch.compile f16 batch_tokens=65536: windows/s 554.1  gt tok/s 1\n";
        let r = reference_for(out, "ETTh1:24");
        assert_eq!((r.eager, r.compiled), (Some(344.0), Some(554.1)));
        let r = reference_for(out, "../shared/data/weather.csv:192");
        assert_eq!((r.eager, r.compiled), (Some(64.0), None));
        let r = reference_for(out, "ETTh1:96");
        assert_eq!((r.eager, r.compiled), (None, None));
        assert!(
            reference_for(out, "weather.csv:all(24,192)")
                .eager
                .is_none()
        );
    }

    /// The expert's stdout, line formats from its print statements (ETTh1 H=192 failed).
    const EXPERT: &str = "NVIDIA H200 2.11.0+cu130\n\
        check: tree vs plain prompts, max rel L2 3.12e-03\n\
        ETTh1 H=24 tree+flex compiled: rows/s 10,950  windows/s 1564.3  embeddings/s 1564.3  \
        real tok/s 3,186,450  ~TFLOP/s(weights) 541  (T=291, B=225)\n\
        ETTh1 H=192 failed: InductorError RuntimeError: out of resource\n\
        weather H=24 tree+flex compiled: rows/s 10,920  windows/s 520.0  embeddings/s 520.0  \
        real tok/s 3,188,640  ~TFLOP/s(weights) 542  (T=292, B=224)\n\
        weather H=192 tree+flex compiled: rows/s 4,830  windows/s 230.0  embeddings/s 230.0  \
        real tok/s 3,033,240  ~TFLOP/s(weights) 515  (T=628, B=104)\n\
        weather all H (24..192) one row per (window, var) compiled: rows/s 2,730  \
        windows/s 130.0  embeddings/s 650.0  real tok/s 3,068,520  ~TFLOP/s(weights) 521  \
        (T=1124, B=58)\n\
        peak GiB 3.4; check ok\n";

    #[test]
    fn expert_lines_are_matched_by_dataset_and_h_and_all_lengths_by_embeddings() {
        assert_eq!(expert_for(EXPERT, "ETTh1:24"), Some(1564.3));
        assert_eq!(
            expert_for(EXPERT, "../shared/data/weather.csv:192"),
            Some(230.0)
        );
        // A failed case and one the expert does not run.
        assert_eq!(expert_for(EXPERT, "ETTh1:192"), None);
        assert_eq!(expert_for(EXPERT, "weather:96"), None);
        // All lengths: embeddings/s (windows/s × 5), and only for the expert's dataset and H.
        assert_eq!(
            expert_for(EXPERT, "weather.csv:all(24,36,48,96,192)"),
            Some(650.0)
        );
        assert_eq!(expert_for(EXPERT, "weather:all(24,192)"), None);
        assert_eq!(expert_for(EXPERT, "ETTh1:all(24,36,48,96,192)"), None);
    }

    #[test]
    fn expert_check_and_failures_are_kept_verbatim() {
        assert_eq!(
            expert_notes(EXPERT),
            vec![
                "check: tree vs plain prompts, max rel L2 3.12e-03",
                "ETTh1 H=192 failed: InductorError RuntimeError: out of resource",
                "peak GiB 3.4; check ok",
            ]
        );
        let failed = "check failed: BackendCompilerFailed boom\n\
            all-H failed: OutOfMemoryError CUDA out of memory\n\
            peak GiB 1.0; check FAILED\n";
        assert_eq!(expert_notes(failed).len(), 3);
    }

    #[test]
    fn a_failure_keeps_the_last_non_blank_lines() {
        let stderr = "Traceback (most recent call last):\n  File \"x.py\", line 3\n\nImportError: no flex\n\n";
        assert_eq!(
            last_lines(stderr, 2),
            "  File \"x.py\", line 3\nImportError: no flex"
        );
        assert_eq!(last_lines(stderr, 1), "ImportError: no flex");
        assert_eq!(last_lines("", 3), "");
    }

    #[test]
    fn a_case_gets_at_least_eight_chunks_of_warm_up_and_sixteen_timed() {
        // ETTh1 H=24: chunks of 253 windows; the defaults (256, 2048) are raised.
        assert_eq!(span_in_chunks(256, 2048, 253), (2024, 4048));
        // weather H=192: chunks of 81; what was asked already holds enough of them.
        assert_eq!(span_in_chunks(1024, 2048, 81), (1024, 2048));
        // A dry run that does not say (an older timekd): as asked.
        assert_eq!(span_in_chunks(256, 2048, 1), (256, 2048));
        let dry = "per pass: ≤ 1 padded tokens\nwork in chunks of 253 windows per worker (...)\n";
        assert_eq!(number_after(dry, "work in chunks of "), Some(253.0));
    }

    #[test]
    fn steady_state_lines_are_read_in_either_unit() {
        let one = "1012 windows: 524 windows in 0.6 s = 907.50 windows/s";
        let (count, secs) = steady_rate(one).unwrap();
        assert_eq!(count, 524);
        // The rate as printed, not 524 / 0.6 = 873.3.
        assert!((count as f64 / secs - 907.50).abs() < 1e-9, "{secs}");
        let many = "80 embeddings: 2048 embeddings in 12.5 s = 163.84 embeddings/s over 25 chunks";
        let (count, secs) = steady_rate(many).unwrap();
        assert_eq!(count, 2048);
        assert!((count as f64 / secs - 163.84).abs() < 1e-9, "{secs}");
        assert_eq!(number_after(many, " over "), Some(25.0));
        assert_eq!(number_after(one, " over "), None);
        assert_eq!(steady_rate("no rate here"), None);
        assert_eq!(
            steady_rate("9 windows: 9 windows in 0.0 s = 0.00 windows/s"),
            None
        );
    }

    #[test]
    fn gpu_samples_sum_memory_over_gpus_and_average_utilisation() {
        let lines: Vec<String> = [
            "0, 1000, 50",
            "1, 500, 30",
            "0, 3000, 90",
            "1, 200, 10",
            "junk",
        ]
        .map(String::from)
        .to_vec();
        let samples = parse_samples(&lines).unwrap();
        assert_eq!(samples.peak_mib, 3200);
        assert!((samples.mean_utilization - 45.0).abs() < 1e-9);
        assert!(parse_samples(&["junk".to_string()]).is_none());
    }

    #[test]
    fn every_number_after_a_marker_is_read() {
        let text = "split train: forward FLOPs run ≈ 1.5e12 (x)\nforward FLOPs run ≈ 2e12\n";
        assert_eq!(
            numbers_after(text, "forward FLOPs run ≈ "),
            vec![1.5e12, 2e12]
        );
        assert_eq!(
            number_after("a: 12 windows in 3.5 s", " windows in "),
            Some(3.5)
        );
    }
}
