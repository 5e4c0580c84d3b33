//! The runs of a sweep spread over the devices, `--jobs` at a time on each, one process per
//! run, or per output length with `--pack` (its seeds trained as one packed model).
//!
//! A student step is a few hundred tiny kernels, bound by the host's work per launch, not by
//! the GPU (an H100 is busy 1–5% of the time with one run). Inside one process that work
//! goes through one device thread of Burn's CUDA runtime, so runs on threads of one process
//! gained 1.6x at most (measured); separate processes each have their own. Each process is
//! `timekd train` itself with the same flags plus `--worker-run H:SEED[+SEED...] --worker-device D`:
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

/// What one process trains: runs of one H (one, or several seeds packed).
pub type Work = (usize, Vec<Option<u64>>);

/// The processes' work: the seeds of each H together, at most `pack_size` in one (1: each
/// run alone), in the order of `runs`.
pub fn works(runs: &[Run], pack_size: usize) -> Vec<Work> {
    let mut works: Vec<Work> = Vec::new();
    for &(h, seed) in runs {
        match works
            .iter_mut()
            .find(|(w, seeds)| *w == h && seeds.len() < pack_size)
        {
            Some((_, seeds)) => seeds.push(seed),
            None => works.push((h, vec![seed])),
        }
    }
    works
}

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

/// The seeds of `work` as `2024+6666` (`-` without `--seeds`).
fn seed_list(work: &Work) -> String {
    let names: Vec<String> = work
        .1
        .iter()
        .map(|seed| seed.map_or("-".into(), |s| s.to_string()))
        .collect();
    names.join("+")
}

/// `H:SEED[+SEED...]` (or `H:-` without `--seeds`), the value of `--worker-run`.
pub fn worker_run_name(work: &Work) -> String {
    format!("{}:{}", work.0, seed_list(work))
}

/// `H = 96, seed 2024` (`seeds 2024, 6666` when packed; `H = 96` without `--seeds`), as
/// the user reads a process's runs.
fn run_label(work: &Work) -> String {
    let seeds: Vec<String> = work.1.iter().flatten().map(u64::to_string).collect();
    match seeds.len() {
        0 => format!("H = {}", work.0),
        1 => format!("H = {}, seed {}", work.0, seeds[0]),
        _ => format!("H = {}, seeds {}", work.0, seeds.join(", ")),
    }
}

/// A process training its work.
struct Running {
    work: Work,
    child: Child,
    log: PathBuf,
    /// Each run's metrics.jsonl.
    metrics: Vec<PathBuf>,
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
    /// Trains `works` in child processes, `workers` at once. Returns once every run ended
    /// (or, after a stop signal, once the children have saved their checkpoints); fails
    /// when a run failed, naming it and its log.
    pub fn run(&self, works: &[Work], stop: &AtomicBool) -> anyhow::Result<()> {
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
        let runs: usize = works.iter().map(|w| w.1.len()).sum();
        let each = match works.len() == runs {
            true => "one process each".to_string(),
            false => format!("{} packed processes", works.len()),
        };
        eprintln!(
            "{runs} runs, {workers} at once over {} device(s), {each}; logs in {}",
            device_specs.len(),
            logs.display()
        );
        let epochs: Vec<usize> = works
            .iter()
            .map(|(h, _)| Ok(resolve_config(args, *h)?.epochs))
            .collect::<anyhow::Result<_>>()?;
        let mut progress = TableProgress::new(runs);
        let mut pending = works.iter().enumerate();
        let mut running: Vec<(usize, Running)> = Vec::new();
        let mut failed = Vec::new();
        let mut signalled = false;
        loop {
            while running.len() < workers && !stop.load(Ordering::Relaxed) {
                let Some((i, work)) = pending.next() else {
                    break;
                };
                let device = &device_specs[i % device_specs.len()];
                running.push((i, self.spawn(&logs, work, device)?));
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
                        progress.finished(r.work.1.len(), &describe(&r, status));
                        if !status.success() {
                            failed.push((r.work, r.log));
                        }
                    }
                }
            }
            running = still;
            let fractions: f64 = running
                .iter()
                .flat_map(|(i, r)| r.metrics.iter().map(move |m| (*i, m)))
                .map(|(i, metrics)| epochs_done(metrics) as f64 / epochs[i].max(1) as f64)
                .sum();
            progress.update(running.len(), fractions);
        }
        progress.finish();
        if !failed.is_empty() {
            let list: Vec<String> = failed
                .iter()
                .map(|(work, log)| format!("{} ({})", run_label(work), log.display()))
                .collect();
            let failed_runs: usize = failed.iter().map(|(work, _)| work.1.len()).sum();
            bail!(
                "{failed_runs} of {runs} runs failed: {}; the others are in place, and the same \
                 command retries the failed ones (finished runs are reused)",
                list.join(", ")
            );
        }
        Ok(())
    }

    /// Starts `work` as a child `timekd train` with this process's flags.
    fn spawn(&self, logs: &Path, work: &Work, device: &str) -> anyhow::Result<Running> {
        let (args, experiment) = (self.args, self.experiment);
        let h = work.0;
        let seed_names = seed_list(work).replace('-', "config-seed");
        let log = logs.join(format!("H{h}-seed-{seed_names}.log"));
        let file =
            File::create(&log).with_context(|| format!("{}: cannot create", log.display()))?;
        let metrics = work
            .1
            .iter()
            .map(|seed| {
                let seed = match seed {
                    Some(seed) => *seed,
                    None => resolve_config(args, h)?.seed,
                };
                Ok(RunDir::for_run(&args.runs, experiment, h, seed).metrics())
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut command =
            Command::new(std::env::current_exe().context("finding the timekd binary")?);
        command
            .args(std::env::args_os().skip(1))
            .args([
                "--worker-run",
                &worker_run_name(work),
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
            .with_context(|| format!("starting the run of {}", run_label(work)))?;
        Ok(Running {
            work: work.clone(),
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
    let name = run_label(&r.work);
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

    /// A process of `runs` runs ended: its line above the bar.
    fn finished(&mut self, runs: usize, line: &str) {
        self.done += runs;
        self.bar.suspend(|| eprintln!("{line}"));
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use timekd_teacher::DeviceSpec;

    use super::{GPU_JOBS, worker_run_name, workers, works};

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
        assert_eq!(worker_run_name(&(96, vec![Some(2024)])), "96:2024");
        assert_eq!(worker_run_name(&(24, vec![None])), "24:-");
        let runs = [(24, Some(1)), (24, Some(2)), (96, Some(1)), (96, Some(2))];
        assert_eq!(works(&runs, 1).len(), 4);
        assert_eq!(
            works(&[(96, Some(1)), (96, Some(2)), (96, Some(3))], 2).len(),
            2
        );
        let packed = works(&runs, usize::MAX);
        assert_eq!(
            packed,
            vec![(24, vec![Some(1), Some(2)]), (96, vec![Some(1), Some(2)])]
        );
        assert_eq!(worker_run_name(&packed[1]), "96:1+2");
    }
}
