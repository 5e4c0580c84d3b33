//! `cargo xtask bench extract`: extraction throughput on a GPU with a GPT-2-small-shaped
//! random-weight model. Runs a prebuilt release binary; builds nothing.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use clap::Args;

use crate::timekd_binary;

/// Bench flags.
#[derive(Args, Debug)]
pub struct BenchExtract {
    /// Cases as DATA:H, DATA being a CSV path or ETTh1.
    #[arg(long, value_delimiter = ',', default_value = "ETTh1:24,ETTh1:192")]
    cases: Vec<String>,
    /// Windows timed per case, after the warm-up windows.
    #[arg(long, default_value_t = 2048)]
    windows: usize,
    /// Windows before the timed ones, in the same process (kernel compilation and
    /// autotuning happen there).
    #[arg(long, default_value_t = 256)]
    warmup: usize,
    /// cuda, cuda:N or cuda:all.
    #[arg(long, default_value = "cuda")]
    device: String,
    /// f32, tf32 or f16.
    #[arg(long, default_value = "f32")]
    precision: String,
    /// Pass --no-prefix-cache to timekd (to measure what the cache saves).
    #[arg(long)]
    no_prefix_cache: bool,
    /// Memory budget per device.
    #[arg(long, default_value = "24GiB")]
    max_gpu_mem: String,
    /// Work directory (random model, stores).
    #[arg(long, default_value = "/tmp/timekd-bench")]
    work: PathBuf,
    /// The timekd binary (default: target/release/timekd).
    #[arg(long)]
    timekd: Option<PathBuf>,
}

struct Row {
    case: String,
    windows: usize,
    secs: f64,
    flops: f64,
    tokens: f64,
    peak_mib: Option<u64>,
}

/// Runs every case and prints one table.
pub fn bench_extract(args: BenchExtract) -> anyhow::Result<()> {
    let timekd = timekd_binary(args.timekd.as_deref())?;
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
    let mut rows = Vec::new();
    for case in &args.cases {
        let (data, h) = case
            .rsplit_once(':')
            .with_context(|| format!("case {case:?}: expected DATA:H"))?;
        let base = |windows: usize, out: &Path| {
            let mut c = Command::new(&timekd);
            c.args([
                "extract",
                "--split",
                "train",
                "--data",
                data,
                "--output-len",
                h,
                "--model",
            ])
            .arg(&model);
            c.args([
                "--device",
                &args.device,
                "--precision",
                &args.precision,
                "--max-gpu-mem",
                &args.max_gpu_mem,
            ]);
            c.args([
                "--max-windows",
                &windows.to_string(),
                "--overwrite",
                "--out",
            ])
            .arg(out);
            if args.no_prefix_cache {
                c.arg("--no-prefix-cache");
            }
            c
        };
        // One process: kernels compiled and autotuned during the warm-up windows are reused by
        // the timed ones (the autotune cache lives in the process).
        let total = args.warmup + args.windows;
        let dry = captured(base(total, &args.work.join("timed")).arg("--dry-run"))?.stdout;
        let dry = String::from_utf8_lossy(&dry);
        let flops =
            number_after(&dry, "forward FLOPs run ≈ ").context("dry run printed no FLOPs")?;
        let tokens =
            number_after(&dry, "tokens in all: ").context("dry run printed no token count")?;
        eprintln!(
            "bench {case}: {} warm-up windows, then {} timed",
            args.warmup, args.windows
        );
        let sampler = MemorySampler::start();
        let log = captured(
            base(total, &args.work.join("timed"))
                .args(["--report-after", &args.warmup.to_string()]),
        )?
        .stderr;
        let log = String::from_utf8_lossy(&log);
        let peak_mib = sampler.stop();
        let steady = log
            .lines()
            .find_map(|l| {
                l.split_once("steady state after the first ")
                    .map(|(_, rest)| rest)
            })
            .with_context(|| format!("timekd reported no steady state:\n{log}"))?;
        let windows = number_after(steady, ": ").context("steady-state window count")? as usize;
        let secs = number_after(steady, " windows in ").context("steady-state seconds")?;
        let share = windows as f64 / total as f64;
        rows.push(Row {
            case: case.clone(),
            windows,
            secs,
            flops: flops * share,
            tokens: tokens * share,
            peak_mib,
        });
    }
    println!(
        "extraction bench on {device_name}, device {}, {}, budget {}, prefix cache {}",
        args.device,
        args.precision,
        args.max_gpu_mem,
        if args.no_prefix_cache { "off" } else { "on" }
    );
    println!(
        "model: GPT-2 small shape (12 layers, d 768, 12 heads), random weights seed 0; times include \
         store writes; tokens/s counts prompt tokens, TFLOP/s the matmul work actually run"
    );
    println!(
        "{:<28} {:>8} {:>9} {:>10} {:>12} {:>9} {:>12}",
        "case", "windows", "secs", "windows/s", "tokens/s", "TFLOP/s", "peak MiB"
    );
    for r in rows {
        println!(
            "{:<28} {:>8} {:>9.1} {:>10.1} {:>12.0} {:>9.2} {:>12}",
            r.case,
            r.windows,
            r.secs,
            r.windows as f64 / r.secs,
            r.tokens / r.secs,
            r.flops / r.secs / 1e12,
            r.peak_mib.map_or("n/a".into(), |m| m.to_string())
        );
    }
    Ok(())
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
fn captured(command: &mut Command) -> anyhow::Result<std::process::Output> {
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
    let rest = &text[text.find(marker)? + marker.len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || "+-.eE".contains(c)))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
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

/// Samples used GPU memory (all GPUs, MiB) with nvidia-smi every 200 ms; reports the peak.
struct MemorySampler {
    child: Option<std::process::Child>,
}

impl MemorySampler {
    fn start() -> Self {
        let child = Command::new("nvidia-smi")
            .args([
                "--query-gpu=memory.used",
                "--format=csv,noheader,nounits",
                "-lms",
                "200",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        MemorySampler { child }
    }

    fn stop(self) -> Option<u64> {
        let mut child = self.child?;
        child.kill().ok();
        let stdout = child.stdout.take()?;
        let peak = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| l.trim().parse::<u64>().ok())
            .max();
        child.wait().ok();
        peak
    }
}
