//! Faults around `timekd` runs, end to end on the CPU with the tiny GPT-2 and 16 windows of
//! ETTh1: SIGTERM during training (a scheduler's time limit) and `--resume`; SIGKILL at
//! every point inside checkpoint saving; a full disk (the file-size limit `RLIMIT_FSIZE`,
//! no root needed) at each file training writes; a second `extract` or `store merge` on a
//! store another process is writing; `store verify` / training on damaged stores; and a
//! table of runs trained at once (`--seeds ... --jobs N`), equal to each run alone and
//! resumed after SIGKILL.
//!
//! The `timekd` binary these tests run is built with this package's dev-dependencies,
//! among them `timekd-fault` with `inject`: cargo builds a package's binaries for its
//! integration tests with the features of that build, so its fault points act on
//! `TIMEKD_FAULT=NAME:HIT[:ACTION]` (a product build has no such code).

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use timekd_store::{StoreLayout, StoreReader};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const WINDOWS: &str = "16";

/// `timekd` with `args`, a fault and a file-size limit.
fn timekd(args: &[&str], fault: Option<&str>, file_size_limit: Option<u64>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_timekd"));
    command.args(args).env_remove("TIMEKD_FAULT");
    if let Some(fault) = fault {
        command.env("TIMEKD_FAULT", fault);
    }
    if let Some(limit) = file_size_limit {
        timekd_fault::limit_file_size(&mut command, limit);
    }
    command.output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok(out: Output) -> Output {
    assert!(out.status.success(), "timekd failed: {}", stderr(&out));
    out
}

/// A directory for results shared by the tests (statics are never dropped, so it lives
/// under cargo's per-target temporary directory, not in /tmp).
fn shared_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("faults-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
}

/// Train and val stores (H = 24, 16 windows each) extracted once for the tests that only
/// read them.
fn stores() -> &'static Path {
    static STORES: OnceLock<tempfile::TempDir> = OnceLock::new();
    STORES
        .get_or_init(|| {
            let dir = shared_dir();
            extract(dir.path(), None);
            dir
        })
        .path()
}

fn extract_args(out: &Path) -> Vec<String> {
    let model = repo().join("models/tiny-gpt2");
    ["extract", "--output-len", "24", "--max-windows", WINDOWS]
        .iter()
        .map(ToString::to_string)
        .chain([
            "--model".into(),
            model.display().to_string(),
            "--out".into(),
            out.display().to_string(),
        ])
        .collect()
}

fn extract(out: &Path, fault: Option<&str>) -> Output {
    let args = extract_args(out);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    timekd(&args, fault, None)
}

/// A small student (fast on the CPU) as a `--config` file in `dir`.
fn tiny_config(dir: &Path) -> PathBuf {
    let path = dir.join("tiny.toml");
    std::fs::write(
        &path,
        "epochs = 2\nbatch_size = 4\n[model]\nchannel = 8\nheads = 2\nlayers = 1\nd_ff = 16\n",
    )
    .unwrap();
    path
}

/// The flags of `timekd train` of the tiny student (written beside `dir`) on `stores`.
fn train_args(stores: &Path, dir: &Path) -> Vec<String> {
    let config = tiny_config(dir);
    [
        "train",
        "--data",
        "ETTh1",
        "--output-len",
        "24",
        "--max-windows",
        WINDOWS,
        "--stores",
        stores.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec()
}

/// `timekd train` of the tiny student on [`stores`] into `run` (plus `extra` flags).
fn train(run: &Path, extra: &[&str], fault: Option<&str>, limit: Option<u64>) -> Output {
    let mut args = train_args(stores(), run.parent().unwrap());
    args.extend(["--run-dir", run.to_str().unwrap()].map(String::from));
    args.extend(extra.iter().map(|a| a.to_string()));
    timekd(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        fault,
        limit,
    )
}

/// What a finished run must reproduce bit for bit: the last and best weights, the optimiser,
/// the metrics without wall times, the test report.
fn outcome(run: &Path) -> Vec<(String, String)> {
    let read = |rel: &str| {
        let bytes =
            std::fs::read(run.join(rel)).unwrap_or_else(|e| panic!("{}/{rel}: {e}", run.display()));
        format!("{:x?}", sha(&bytes))
    };
    let metrics: Vec<String> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|line| {
            let mut m: serde_json::Value = serde_json::from_str(line).unwrap();
            for wall in ["seconds", "train_seconds"] {
                m.as_object_mut().unwrap().remove(wall);
            }
            m.to_string()
        })
        .collect();
    vec![
        ("last".into(), read("checkpoints/last/model.safetensors")),
        (
            "optimizer".into(),
            read("checkpoints/last/optimizer.safetensors"),
        ),
        ("best".into(), read("checkpoints/best/model.safetensors")),
        ("test".into(), read("test.json")),
        ("metrics".into(), metrics.join("\n")),
    ]
}

/// A short fingerprint of bytes (FNV-1a, enough to compare files).
fn sha(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// The uninterrupted run every interrupted one is compared with.
fn reference() -> &'static Vec<(String, String)> {
    static REFERENCE: OnceLock<(tempfile::TempDir, Vec<(String, String)>)> = OnceLock::new();
    &REFERENCE
        .get_or_init(|| {
            let dir = shared_dir();
            let run = dir.path().join("run");
            ok(train(&run, &[], None, None));
            let outcome = outcome(&run);
            (dir, outcome)
        })
        .1
}

/// Resumes `run` to the end and checks it equals the uninterrupted run.
fn resume_and_compare(run: &Path, what: &str) {
    let out = train(run, &["--resume"], None, None);
    assert!(out.status.success(), "after {what}: {}", stderr(&out));
    assert_eq!(&outcome(run), reference(), "after {what}");
}

#[test]
fn sigterm_saves_a_checkpoint_at_the_next_step_and_resume_reaches_the_same_result() {
    let dir = tempfile::tempdir().unwrap();
    // 4 steps per epoch: stopped inside epoch 0, after its last step, inside epoch 1.
    for step in [2, 4, 7] {
        let run = dir.path().join(format!("step{step}"));
        let out = train(&run, &[], Some(&format!("train.step:{step}:term")), None);
        let message = stderr(&out);
        assert!(out.status.success(), "step {step}: {message}");
        assert!(message.contains("interrupted"), "{message}");
        assert!(!run.join("summary.json").exists());
        let state: serde_json::Value = serde_json::from_slice(
            &std::fs::read(run.join("checkpoints/last/checkpoint.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(state["steps"], step, "{state}");
        assert_eq!(state["partial"]["steps"], (step - 1) % 4 + 1, "{state}");
        resume_and_compare(&run, &format!("SIGTERM at step {step}"));
    }

    // A real signal from outside, wherever it lands.
    let run = dir.path().join("external");
    let child = Command::new(env!("CARGO_BIN_EXE_timekd"))
        .args(train_args(stores(), dir.path()))
        .arg("--run-dir")
        .arg(&run)
        .env("TIMEKD_FAULT", "train.step:3:stop")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_stopped(child.id());
    // SIGTERM is queued while the process is stopped and handled when it continues.
    for signal in [libc::SIGTERM, libc::SIGCONT] {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, signal) };
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    resume_and_compare(&run, "an external SIGTERM");
}

/// Waits until process `pid` is stopped (SIGSTOP by a fault point).
fn wait_until_stopped(pid: u32) {
    let started = std::time::Instant::now();
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.rsplit(") ").next().is_some_and(|s| s.starts_with('T')) {
            return;
        }
        assert!(
            started.elapsed().as_secs() < 120,
            "process {pid} did not stop"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn kills_inside_checkpoint_saving_then_resume_reach_the_same_result() {
    let dir = tempfile::tempdir().unwrap();
    let traced = train(&dir.path().join("traced"), &[], Some("trace"), None);
    let points: Vec<(String, u64)> = stderr(&ok(traced))
        .lines()
        .filter_map(|l| l.strip_prefix("timekd-fault: "))
        .filter_map(|l| l.split_once(" #"))
        .filter(|(name, _)| name.starts_with("checkpoint."))
        .map(|(name, hit)| (name.to_string(), hit.parse().unwrap()))
        .collect();
    assert!(points.len() >= 10, "checkpoint points: {points:?}");
    for (name, hit) in &points {
        let run = dir.path().join(format!("{name}-{hit}"));
        let out = train(&run, &[], Some(&format!("{name}:{hit}")), None);
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGKILL),
            "{name} #{hit}: {}",
            stderr(&out)
        );
        resume_and_compare(&run, &format!("SIGKILL at {name} #{hit}"));
    }
    eprintln!(
        "{} kills inside checkpoint saving: {points:?}",
        points.len()
    );
}

/// What [`outcome`] reads of one run.
type Outcome = Vec<(String, String)>;

/// Seeds of the table tests.
const TABLE_SEEDS: [&str; 3] = ["11", "12", "13"];

/// `timekd train --seeds <seeds> --jobs <jobs>` (plus `extra` flags) of the tiny student
/// into `<dir>/runs`.
fn train_table(dir: &Path, seeds: &str, jobs: &str, extra: &[&str], fault: Option<&str>) -> Output {
    std::fs::create_dir_all(dir).unwrap();
    let mut args = train_args(stores(), dir);
    let runs = dir.join("runs");
    args.extend(
        [
            "--seeds",
            seeds,
            "--jobs",
            jobs,
            "--runs",
            runs.to_str().unwrap(),
        ]
        .map(String::from),
    );
    args.extend(extra.iter().map(|a| a.to_string()));
    timekd(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        fault,
        None,
    )
}

/// The outcome of each seed's run under `<dir>/runs`.
fn table_outcomes(dir: &Path) -> Vec<Outcome> {
    TABLE_SEEDS
        .iter()
        .map(|seed| outcome(&dir.join(format!("runs/ETTh1/24/seed-{seed}"))))
        .collect()
}

/// Every seed's run trained alone, the reference of the table tests.
fn runs_alone() -> &'static Vec<Outcome> {
    static ALONE: OnceLock<(tempfile::TempDir, Vec<Outcome>)> = OnceLock::new();
    &ALONE
        .get_or_init(|| {
            let dir = shared_dir();
            for seed in TABLE_SEEDS {
                ok(train_table(dir.path(), seed, "1", &[], None));
            }
            let outcomes = table_outcomes(dir.path());
            (dir, outcomes)
        })
        .1
}

#[test]
fn runs_trained_at_once_reach_the_weights_they_reach_alone() {
    let dir = tempfile::tempdir().unwrap();
    let out = ok(train_table(
        dir.path(),
        &TABLE_SEEDS.join(","),
        "3",
        &[],
        None,
    ));
    assert!(
        stderr(&out).contains("3 runs, 3 at once over 1 device(s), one process each"),
        "{}",
        stderr(&out)
    );
    let together = table_outcomes(dir.path());
    for (seed, (alone, together)) in TABLE_SEEDS.iter().zip(runs_alone().iter().zip(&together)) {
        assert_eq!(
            alone, together,
            "seed {seed}: trained at once differs from alone"
        );
    }
    // The seeds really train different runs (the comparison above could not pass vacuously).
    assert_ne!(together[0], together[1]);
}

#[test]
fn packed_runs_reach_the_weights_they_reach_alone_and_resume_after_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let seeds = TABLE_SEEDS.join(",");
    let out = ok(train_table(dir.path(), &seeds, "1", &["--pack"], None));
    assert!(
        stderr(&out).contains("3 runs of H = 24 train together as one packed model"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        &table_outcomes(dir.path()),
        runs_alone(),
        "packed against alone"
    );
    // SIGKILL during steps (2 epochs x 4 steps) and between the runs' checkpoints at the end
    // of an epoch (the runs' optimiser files are written one run after another: hit 2 is the
    // second run's of epoch 0, 5 its of epoch 1), then the same command again.
    for fault in [
        "train.step:3",
        "train.step:6",
        "checkpoint.optimizer:2",
        "checkpoint.optimizer:5",
    ] {
        let table = dir.path().join(fault.replace([':', '.'], "-"));
        let killed = train_table(&table, &seeds, "1", &["--pack"], Some(fault));
        assert_eq!(
            killed.status.signal(),
            Some(libc::SIGKILL),
            "{fault}: {}",
            stderr(&killed)
        );
        ok(train_table(&table, &seeds, "1", &["--pack"], None));
        assert_eq!(
            &table_outcomes(&table),
            runs_alone(),
            "after SIGKILL at {fault}"
        );
    }
}

#[test]
fn a_killed_table_resumes_every_run_to_the_result_of_uninterrupted_runs() {
    let dir = tempfile::tempdir().unwrap();
    // 2 epochs x 4 steps a run: each child stops itself (SIGSTOP) at its 2nd, 5th or 7th
    // step, then the parent is SIGKILLed; its children die with it.
    for step in [2, 5, 7] {
        let table = dir.path().join(format!("kill{step}"));
        std::fs::create_dir_all(&table).unwrap();
        let mut args = train_args(stores(), &table);
        let runs = table.join("runs");
        let seeds = TABLE_SEEDS.join(",");
        args.extend(
            [
                "--seeds",
                &seeds,
                "--jobs",
                "3",
                "--runs",
                runs.to_str().unwrap(),
            ]
            .map(String::from),
        );
        let mut parent = Command::new(env!("CARGO_BIN_EXE_timekd"))
            .args(&args)
            .env("TIMEKD_FAULT", format!("train.step:{step}:stop"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let children = wait_for_children(parent.id(), TABLE_SEEDS.len());
        for &child in &children {
            wait_until_stopped(child);
        }
        parent.kill().unwrap();
        parent.wait().unwrap();
        for &child in &children {
            wait_until_dead(child);
        }
        // The same command again: finished runs are reused, the others resume.
        ok(train_table(&table, &seeds, "3", &[], None));
        assert_eq!(
            &table_outcomes(&table),
            runs_alone(),
            "after SIGKILL at step {step} of each run"
        );
    }
}

/// The pids of `count` children of `parent` (waits until they exist).
fn wait_for_children(parent: u32, count: usize) -> Vec<u32> {
    let started = std::time::Instant::now();
    loop {
        let children: Vec<u32> = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                // Fields after the command's closing parenthesis: state, ppid, ...
                stat.rsplit(") ")
                    .next()
                    .and_then(|rest| rest.split(' ').nth(1))
                    == Some(&parent.to_string())
            })
            .collect();
        if children.len() >= count {
            return children;
        }
        assert!(
            started.elapsed().as_secs() < 120,
            "{parent} has children {children:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Waits until process `pid` is gone (or a zombie).
fn wait_until_dead(pid: u32) {
    let started = std::time::Instant::now();
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.is_empty() || stat.rsplit(") ").next().is_some_and(|s| s.starts_with('Z')) {
            return;
        }
        assert!(
            started.elapsed().as_secs() < 120,
            "process {pid} did not die with its parent"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn a_full_disk_while_training_is_a_clear_error_and_a_rerun_reaches_the_same_result() {
    let dir = tempfile::tempdir().unwrap();
    // File-size limits stopping the run at: its config, the first weights file (15 KiB),
    // the optimiser file (26 KiB). (The loss plot, 5 KiB, is written after the larger
    // weights, so a file-size limit cannot stop the run there first.)
    for (limit, file) in [
        (64, "config.toml"),
        (4 << 10, "model.safetensors"),
        (20 << 10, "optimizer.safetensors"),
    ] {
        let run = dir.path().join(format!("limit{limit}"));
        let out = train(&run, &[], None, Some(limit));
        let message = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "limit {limit}: {message}");
        assert!(
            message.contains(file) && message.contains("bytes"),
            "limit {limit}: {message}"
        );
        resume_and_compare(&run, &format!("a {limit}-byte file-size limit"));
    }
}

#[test]
fn a_second_extract_or_merge_on_a_busy_store_is_refused_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let args = extract_args(dir.path());
    let mut first = Command::new(env!("CARGO_BIN_EXE_timekd"))
        .args(&args)
        .env("TIMEKD_FAULT", "store.part.written:1:stop")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = first.id();
    wait_until_stopped(pid);

    let started = std::time::Instant::now();
    let out = extract(dir.path(), None);
    let message = stderr(&out);
    assert!(!out.status.success());
    assert!(message.contains(&format!("pid {pid} on host")), "{message}");
    assert!(started.elapsed().as_secs() < 30, "not refused at once");

    let store = StoreLayout::new(dir.path()).store("ETTh1", 24, "train");
    let shards = StoreLayout::new(stores()).store("ETTh1", 24, "train");
    let out = timekd(
        &[
            "store",
            "merge",
            "--overwrite",
            "-o",
            store.to_str().unwrap(),
            shards.to_str().unwrap(),
        ],
        None,
        None,
    );
    assert!(
        stderr(&out).contains(&format!("pid {pid} on host")),
        "{}",
        stderr(&out)
    );

    first.kill().unwrap();
    first.wait().unwrap();
    ok(extract(dir.path(), None));
    let ours = StoreReader::open(&store).unwrap();
    let theirs = StoreReader::open(&shards).unwrap();
    let all: Vec<usize> = (0..16).collect();
    assert_eq!(
        ours.read_batch(&all).unwrap(),
        theirs.read_batch(&all).unwrap()
    );
}

/// A copy of the stores with window 3 of the train store damaged (one bit).
fn damaged_stores(dir: &Path) -> PathBuf {
    let copy = dir.join("stores");
    for split in ["train", "val"] {
        let from = StoreLayout::new(stores()).store("ETTh1", 24, split);
        let to = StoreLayout::new(&copy).store("ETTh1", 24, split);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&from, &to).unwrap();
    }
    let train = StoreLayout::new(&copy).store("ETTh1", 24, "train");
    let values = StoreReader::open(&train).unwrap().read(3).unwrap();
    let needle: Vec<u8> = values[..4].iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut bytes = std::fs::read(&train).unwrap();
    let at = bytes.windows(16).position(|w| w == needle).unwrap();
    bytes[at + 2] ^= 1;
    std::fs::write(&train, bytes).unwrap();
    copy
}

#[test]
fn verify_and_training_refuse_a_damaged_store_unless_told() {
    let train_store = StoreLayout::new(stores()).store("ETTh1", 24, "train");
    let out = ok(timekd(
        &["store", "verify", train_store.to_str().unwrap()],
        None,
        None,
    ));
    assert!(String::from_utf8_lossy(&out.stdout).contains("verified: 16 windows"));

    let dir = tempfile::tempdir().unwrap();
    let copy = damaged_stores(dir.path());
    let damaged = StoreLayout::new(&copy).store("ETTh1", 24, "train");
    let out = timekd(&["store", "verify", damaged.to_str().unwrap()], None, None);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("window 3"), "{}", stderr(&out));

    let train_on = |extra: &[&str]| {
        let mut args = train_args(&copy, dir.path());
        args.extend(["--epochs", "1", "--runs", dir.path().to_str().unwrap()].map(String::from));
        args.extend(extra.iter().map(|a| a.to_string()));
        timekd(
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            None,
            None,
        )
    };
    let out = train_on(&[]);
    let message = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{message}");
    assert!(
        message.contains("window 3") && message.contains("--no-verify"),
        "{message}"
    );
    let out = ok(train_on(&["--no-verify"]));
    assert!(stderr(&out).contains("not verified (--no-verify)"));

    // A store finished before checksums: its own exit status and message.
    let file = hdf5_without_checksum(&damaged);
    let out = timekd(&["store", "verify", file.to_str().unwrap()], None, None);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no checksum recorded"),
        "{}",
        stderr(&out)
    );
}

/// `path` with its checksum attribute and digest table removed, as older stores are.
fn hdf5_without_checksum(path: &Path) -> PathBuf {
    let script = "import sys, h5py\nf = h5py.File(sys.argv[1], 'r+')\n\
                  del f.attrs['embeddings_sha256']\ndel f['window_sha256']\nf.close()\n";
    let status = Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .status()
        .expect("python3 with h5py (installed by `cargo xtask setup`)");
    assert!(status.success());
    path.to_path_buf()
}
