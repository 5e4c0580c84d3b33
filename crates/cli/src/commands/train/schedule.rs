//! The runs of a sweep spread over the devices, `--jobs` at a time on each, one process per
//! run.
//!
//! A student step is a few hundred tiny kernels, bound by the host's work per launch, not by
//! the GPU (an H100 is busy 1–5% of the time with one run). Inside one process that work
//! goes through one device thread of Burn's CUDA runtime, so runs on threads of one process
//! gained 1.6x at most (measured); separate processes each have their own. Each run is
//! `timekd train` itself with the same flags plus `--worker-run H:SEED --worker-device D`:
//! it trains exactly as alone, writes its own run directory (resumable on its own) and logs
//! to `<runs>/<experiment>/logs/`. Children die with the parent (SIGKILL included) and get
//! its SIGTERM/SIGINT, so they stop with resumable checkpoints; the same command continues.

use std::fs::File;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use timekd_student::RunDir;
use timekd_teacher::DeviceSpec;

use super::TrainArgs;
use super::args::resolve_config;
use timekd_student::Selection;

/// Runs at once per GPU at most, unless `--jobs` says otherwise.
const GPU_JOBS: usize = 8;

/// How often the parent looks at its children.
const POLL: Duration = Duration::from_millis(500);

/// One run: (H, `--seeds` seed or none).
pub type Run = (usize, Option<u64>);

/// Processes at once for `runs` runs on `devices` devices: `jobs` per device; by default on
/// GPUs half the host's cores (a run keeps about two threads busy; on an H100 host of 16
/// cores, 15 runs at once left each run's host waiting 8x longer per step), at most
/// [`GPU_JOBS`] per GPU, and 1 on the CPU; never more than the runs. 1 means in turn, in this
/// process.
pub fn workers(jobs: Option<u64>, device: DeviceSpec, devices: usize, runs: usize) -> usize {
    let total = match jobs {
        Some(jobs) => jobs as usize * devices,
        None if device.is_gpu() => {
            let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
            (cores / 2).clamp(1, GPU_JOBS * devices)
        }
        None => 1,
    };
    total.clamp(1, runs.max(1))
}

/// `H:SEED` (or `H:-` without `--seeds`), the value of `--worker-run`.
pub fn worker_run_name((h, seed): Run) -> String {
    match seed {
        Some(seed) => format!("{h}:{seed}"),
        None => format!("{h}:-"),
    }
}

/// `H = 96, seed 2024` (or `H = 96` without `--seeds`), as the user reads a run's name.
fn run_label((h, seed): Run) -> String {
    match seed {
        Some(seed) => format!("H = {h}, seed {seed}"),
        None => format!("H = {h}"),
    }
}

/// A run in a child process.
struct Running {
    run: Run,
    child: Child,
    log: PathBuf,
    metrics: PathBuf,
    started: Instant,
}

/// Child processes training one experiment's runs.
pub struct Pool<'a> {
    /// This process's flags (the children get them too).
    pub args: &'a TrainArgs,
    /// The directory under `--runs` the runs go in.
    pub experiment: &'a str,
    /// The runs' checkpoint selection (`--worker-selection` of each child).
    pub selection: Selection,
    /// The devices, `cpu` or `cuda:K`; the i-th run starts on `device_specs[i % len]`.
    pub device_specs: &'a [String],
    /// Processes at once.
    pub workers: usize,
}

impl Pool<'_> {
    /// Trains `runs` in child processes, `workers` at once. Returns once every run ended
    /// (or, after a stop signal, once the children have saved their checkpoints); fails
    /// when a run failed, naming it and its log.
    pub fn run(&self, runs: &[Run], stop: &AtomicBool) -> anyhow::Result<()> {
        let Pool {
            args,
            experiment,
            device_specs,
            workers,
            ..
        } = *self;
        let logs = args.runs.join(experiment).join("logs");
        std::fs::create_dir_all(&logs)
            .with_context(|| format!("{}: cannot create", logs.display()))?;
        eprintln!(
            "{} runs, {workers} at once over {} device(s), one process each; logs in {}",
            runs.len(),
            device_specs.len(),
            logs.display()
        );
        let epochs: Vec<usize> = runs
            .iter()
            .map(|&(h, _)| Ok(resolve_config(args, h)?.epochs))
            .collect::<anyhow::Result<_>>()?;
        let mut progress = TableProgress::new(runs.len());
        let mut pending = runs.iter().enumerate();
        let mut running: Vec<(usize, Running)> = Vec::new();
        let mut failed = Vec::new();
        let mut signalled = false;
        loop {
            while running.len() < workers && !stop.load(Ordering::Relaxed) {
                let Some((i, &run)) = pending.next() else {
                    break;
                };
                let device = &device_specs[i % device_specs.len()];
                running.push((i, self.spawn(&logs, run, device)?));
            }
            if running.is_empty() {
                break;
            }
            std::thread::sleep(POLL);
            timekd_fault::point("train.table");
            if stop.load(Ordering::Relaxed) && !signalled {
                signalled = true;
                for (_, r) in &running {
                    // SAFETY: signalling our own child, which may already have exited (then the
                    // pid is not yet reaped, so it names no other process).
                    unsafe { libc::kill(r.child.id() as i32, libc::SIGTERM) };
                }
            }
            let mut still = Vec::new();
            for (i, mut r) in running {
                match r.child.try_wait()? {
                    None => still.push((i, r)),
                    Some(status) => {
                        progress.finished(&describe(&r, status));
                        if !status.success() {
                            failed.push((r.run, r.log));
                        }
                    }
                }
            }
            running = still;
            let fractions: f64 = running
                .iter()
                .map(|(i, r)| epochs_done(&r.metrics) as f64 / epochs[*i].max(1) as f64)
                .sum();
            progress.update(running.len(), fractions);
        }
        progress.finish();
        if !failed.is_empty() {
            let list: Vec<String> = failed
                .iter()
                .map(|(run, log)| format!("{} ({})", run_label(*run), log.display()))
                .collect();
            bail!(
                "{} of {} runs failed: {}; the others are in place, and the same command retries \
             the failed ones (finished runs are reused)",
                failed.len(),
                runs.len(),
                list.join(", ")
            );
        }
        Ok(())
    }

    /// Starts `run` as a child `timekd train` with this process's flags.
    fn spawn(&self, logs: &Path, run: Run, device: &str) -> anyhow::Result<Running> {
        let (args, experiment) = (self.args, self.experiment);
        let (h, seed) = run;
        let seed_name = seed.map_or("config-seed".to_string(), |s| s.to_string());
        let log = logs.join(format!("H{h}-seed-{seed_name}.log"));
        let file =
            File::create(&log).with_context(|| format!("{}: cannot create", log.display()))?;
        let seed = match seed {
            Some(seed) => seed,
            None => resolve_config(args, h)?.seed,
        };
        let metrics = RunDir::for_run(&args.runs, experiment, h, seed).metrics();
        let mut command =
            Command::new(std::env::current_exe().context("finding the timekd binary")?);
        command
            .args(std::env::args_os().skip(1))
            .args([
                "--worker-run",
                &worker_run_name(run),
                "--worker-device",
                device,
                "--worker-selection",
                self.selection.name(),
            ])
            .stdout(file.try_clone()?)
            .stderr(file);
        die_with_parent(&mut command);
        // Its own process group: a terminal's Ctrl-C reaches the parent alone, which passes one
        // SIGTERM on (a second signal would end a run at once, without its checkpoint).
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command
            .spawn()
            .with_context(|| format!("starting the run of {}", run_label(run)))?;
        Ok(Running {
            run,
            child,
            log,
            metrics,
            started: Instant::now(),
        })
    }
}

/// The child gets SIGKILL when this process dies, however it dies (Linux).
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

/// Lines of a run's metrics.jsonl: its epochs done.
fn epochs_done(metrics: &Path) -> usize {
    std::fs::read_to_string(metrics).map_or(0, |text| text.lines().count())
}

/// A line saying how a run ended.
fn describe(r: &Running, status: ExitStatus) -> String {
    let name = run_label(r.run);
    let seconds = r.started.elapsed().as_secs_f64();
    if status.success() {
        return format!("{name}: ended after {seconds:.0} s ({})", r.log.display());
    }
    let log = std::fs::read_to_string(&r.log).unwrap_or_default();
    let last: Vec<&str> = log.lines().rev().take(3).collect();
    let last: Vec<&str> = last.into_iter().rev().collect();
    format!(
        "{name}: FAILED ({status}) after {seconds:.0} s; last lines of {}:\n  {}",
        r.log.display(),
        last.join("\n  ")
    )
}

/// Runs done, running and left, and the table's ETA: a bar on a terminal, a line every 30 s
/// without one.
struct TableProgress {
    runs: usize,
    done: usize,
    started: Instant,
    last_line: Instant,
    bar: ProgressBar,
    log_lines: bool,
}

impl TableProgress {
    fn new(runs: usize) -> Self {
        let log_lines = !std::io::stderr().is_terminal();
        let bar = if log_lines {
            ProgressBar::hidden()
        } else {
            let bar = ProgressBar::new(1000);
            bar.set_style(
                ProgressStyle::with_template("[{bar:30}] {msg}")
                    .expect("static template")
                    .progress_chars("=> "),
            );
            bar
        };
        TableProgress {
            runs,
            done: 0,
            started: Instant::now(),
            last_line: Instant::now(),
            bar,
            log_lines,
        }
    }

    /// `running` runs, `fractions` the sum of their shares of epochs done.
    fn update(&mut self, running: usize, fractions: f64) {
        let share = (self.done as f64 + fractions) / self.runs.max(1) as f64;
        let elapsed = self.started.elapsed().as_secs_f64();
        let eta = if share > 0.0 {
            format!("{:.0} min", elapsed * (1.0 - share) / share / 60.0)
        } else {
            "after the first epochs".into()
        };
        let line = format!(
            "runs: {} done, {running} running, {} left; table {:.0}% after {:.0} min, ETA {eta}",
            self.done,
            self.runs.saturating_sub(self.done + running),
            share * 100.0,
            elapsed / 60.0
        );
        self.bar.set_position((share * 1000.0) as u64);
        self.bar.set_message(line.clone());
        if self.log_lines && self.last_line.elapsed().as_secs() >= 30 {
            self.last_line = Instant::now();
            eprintln!("{line}");
        }
    }

    /// A run ended: its line above the bar.
    fn finished(&mut self, line: &str) {
        self.done += 1;
        self.bar.suspend(|| eprintln!("{line}"));
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use timekd_teacher::DeviceSpec;

    use super::{GPU_JOBS, worker_run_name, workers};

    #[test]
    fn processes_at_once_follow_jobs_devices_and_runs() {
        let cpu = DeviceSpec::Cpu;
        let gpus: DeviceSpec = "cuda:all".parse().unwrap();
        assert_eq!(
            workers(None, cpu, 1, 15),
            1,
            "the CPU trains in turn by default"
        );
        assert_eq!(workers(Some(4), cpu, 1, 15), 4);
        assert_eq!(workers(Some(4), gpus, 2, 15), 8, "--jobs is per device");
        assert_eq!(workers(Some(4), gpus, 2, 3), 3, "never more than the runs");
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let default = workers(None, gpus, 1, 100);
        assert_eq!(default, (cores / 2).clamp(1, GPU_JOBS));
        assert_eq!(worker_run_name((96, Some(2024))), "96:2024");
        assert_eq!(worker_run_name((24, None)), "24:-");
    }
}
