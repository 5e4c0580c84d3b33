//! Faults beyond a kill between chunks, each in a real child process (this test binary run
//! again): a full disk (the file-size limit, `RLIMIT_FSIZE`, makes writes fail with EFBIG
//! without root) at every stage of writing, finishing, merging and exporting; SIGKILL at
//! every fault-injection point inside `finish()`, `merge` and `export`; a second writer
//! while one holds the lock; merges of shards that miss or repeat windows; and checksums.
//!
//! Fault points act only in builds with `timekd-fault/inject`, which this crate's
//! dev-dependencies turn on: `TIMEKD_FAULT=NAME:HIT` SIGKILLs the child there, and
//! `TIMEKD_FAULT=trace` lists the points an operation passes, so the kill loops cover every
//! point that exists rather than a list that could go stale.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use timekd_store::{
    Dtype, StoreError, StoreReader, StoreWriter, Verification, WriterOptions, export_release,
    merge, shard_range, verify,
};

const OP: &str = "TIMEKD_FAULT_TEST_OP";
const ARGS: &str = "TIMEKD_FAULT_TEST_ARGS";
const WINDOWS: usize = 24;
const PART_WINDOWS: usize = 4;
const N_VARS: usize = 3;
const D_MODEL: usize = 64;

/// The tests of this file take turns: a child forked while another test has an HDF5 file
/// open inherits its descriptor (HDF5 opens files without close-on-exec), and with it
/// HDF5's `flock` on the file, for as long as the child lives (a stopped one: long).
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn options(range: Option<std::ops::Range<usize>>) -> WriterOptions {
    WriterOptions {
        part_windows: Some(PART_WINDOWS),
        range,
        ..Default::default()
    }
}

fn fp() -> timekd_store::Fingerprint {
    common::fingerprint(N_VARS, D_MODEL, Dtype::F32)
}

/// The child: runs `$TIMEKD_FAULT_TEST_OP` on the paths in `$TIMEKD_FAULT_TEST_ARGS`;
/// prints `error: ...` and exits 1 on an error.
#[test]
#[ignore = "child process of the fault tests"]
fn fault_child() {
    let op = std::env::var(OP).expect("set TIMEKD_FAULT_TEST_OP");
    let args: Vec<PathBuf> = std::env::var(ARGS)
        .unwrap_or_default()
        .split(';')
        .map(PathBuf::from)
        .collect();
    let result = match op.as_str() {
        // Resumes (or starts) the whole store at args[0], writes what is missing, finishes.
        "write" => StoreWriter::open(&args[0], fp(), WINDOWS, options(None)).and_then(|mut w| {
            for window in w.missing() {
                w.put(window, &common::window_values(window, N_VARS * D_MODEL))?;
            }
            w.finish().map(|_| ())
        }),
        // Merges args[1..] into args[0].
        "merge" => merge(&args[1..], &args[0], false).map(|_| ()),
        // Exports the store args[0] into the directory args[1].
        "export" => export_release(&args[0], &args[1]).map(|_| ()),
        other => panic!("unknown op {other}"),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// How a child run is set up: its operation and paths, a fault, a file-size limit.
struct Child<'a> {
    op: &'a str,
    args: Vec<&'a Path>,
    fault: Option<String>,
    file_size_limit: Option<u64>,
}

impl Child<'_> {
    fn run(&self) -> Output {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args(["fault_child", "--exact", "--include-ignored", "--nocapture"])
            .env(OP, self.op)
            .env(
                ARGS,
                self.args
                    .iter()
                    .map(|p| p.to_str().unwrap())
                    .collect::<Vec<_>>()
                    .join(";"),
            )
            .env_remove("TIMEKD_FAULT");
        if let Some(fault) = &self.fault {
            command.env("TIMEKD_FAULT", fault);
        }
        if let Some(limit) = self.file_size_limit {
            timekd_fault::limit_file_size(&mut command, limit);
        }
        command.output().unwrap()
    }

    fn fault(mut self, fault: String) -> Self {
        self.fault = Some(fault);
        self
    }

    fn limit(mut self, bytes: u64) -> Self {
        self.file_size_limit = Some(bytes);
        self
    }
}

fn child<'a>(op: &'a str, args: &[&'a Path]) -> Child<'a> {
    Child {
        op,
        args: args.to_vec(),
        fault: None,
        file_size_limit: None,
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn succeeds(child: &Child<'_>) {
    let out = child.run();
    assert!(
        out.status.success(),
        "{} failed: {}",
        child.op,
        stderr(&out)
    );
}

/// The fault points (name, hit) an operation passes, in order, from `TIMEKD_FAULT=trace`.
fn trace(child: Child<'_>) -> Vec<(String, u64)> {
    let out = child.fault("trace".into()).run();
    assert!(out.status.success(), "traced run failed: {}", stderr(&out));
    let points: Vec<(String, u64)> = stderr(&out)
        .lines()
        .filter_map(|l| l.strip_prefix("timekd-fault: "))
        .filter_map(|l| l.split_once(" #"))
        .map(|(name, hit)| (name.to_string(), hit.parse().unwrap()))
        .collect();
    assert!(
        !points.is_empty(),
        "no fault points traced: is timekd-fault's `inject` feature on?"
    );
    points
}

/// Runs `child` with a SIGKILL at `name:hit` and checks it died there.
fn killed_at(child: Child<'_>, name: &str, hit: u64) {
    let out = child.fault(format!("{name}:{hit}")).run();
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGKILL),
        "not killed at {name} #{hit}: {}",
        stderr(&out)
    );
}

/// Files left under `dir` whose name ends in `.tmp`.
fn temporaries(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(temporaries(&path));
        } else if path.to_string_lossy().ends_with(".tmp") {
            found.push(path);
        }
    }
    found
}

/// Three finished shards of the split under `dir`.
fn shards(dir: &Path) -> Vec<PathBuf> {
    (0..3)
        .map(|i| {
            let path = dir.join(format!("shard{i}.h5"));
            let range = shard_range(WINDOWS, i, 3).unwrap();
            common::write_store(&path, fp(), WINDOWS, options(Some(range)));
            path
        })
        .collect()
}

/// The reference results of an uninterrupted run: a store, its merge of shards, its export.
struct Reference {
    _dir: tempfile::TempDir,
    store: PathBuf,
    merged: PathBuf,
    export: PathBuf,
    shards: Vec<PathBuf>,
}

fn reference() -> Reference {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("ref.h5");
    succeeds(&child("write", &[&store]));
    let shards = shards(dir.path());
    let merged = dir.path().join("merged.h5");
    merge(&shards, &merged, false).unwrap();
    let export = dir.path().join("export");
    export_release(&store, &export).unwrap();
    Reference {
        store,
        merged,
        export,
        shards,
        _dir: dir,
    }
}

/// Every file of the export directory `b` equals `a`'s, byte for byte.
fn assert_same_export(a: &Path, b: &Path) {
    for window in 0..WINDOWS {
        let name = format!("{window}.h5");
        assert_eq!(
            std::fs::read(a.join(&name)).unwrap(),
            std::fs::read(b.join(&name)).unwrap(),
            "{name} differs"
        );
    }
    assert_eq!(std::fs::read_dir(b).unwrap().count(), WINDOWS);
}

#[test]
fn a_full_disk_at_any_stage_is_a_clear_error_and_a_rerun_finishes_identically() {
    let _serial = serial();
    let reference = reference();
    let dir = tempfile::tempdir().unwrap();
    // File-size limits that stop the writer at its manifest, its first part, and the
    // final assembly (parts are 3 KiB, the final file about 20 KiB).
    for (limit, file) in [
        (512, "manifest.json"),
        (2048, "part-00000000.bin"),
        (12 << 10, "s.h5"),
    ] {
        let path = dir.path().join(format!("limit{limit}/s.h5"));
        let out = child("write", &[&path]).limit(limit).run();
        let message = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "limit {limit}: {message}");
        assert!(
            message.contains(file) && message.contains("out of space writing"),
            "limit {limit}: {message}"
        );
        // What was durable before is intact (and nothing temporary is left).
        match StoreReader::open(&path) {
            Ok(partial) => assert!(!partial.is_finished()),
            Err(StoreError::NotFound { .. }) => assert_eq!(file, "manifest.json"),
            Err(e) => panic!("limit {limit}: the store left behind does not open: {e}"),
        }
        assert_eq!(temporaries(path.parent().unwrap()), Vec::<PathBuf>::new());
        succeeds(&child("write", &[&path]));
        common::assert_same_bytes_but_created(&reference.store, &path);
    }

    let merged = dir.path().join("merged.h5");
    let mut args: Vec<&Path> = vec![&merged];
    args.extend(reference.shards.iter().map(PathBuf::as_path));
    let out = child("merge", &args).limit(12 << 10).run();
    let message = stderr(&out);
    assert!(
        message.contains("merged.h5: out of space writing"),
        "{message}"
    );
    assert!(!merged.exists() && temporaries(dir.path()).is_empty());
    succeeds(&child("merge", &args));
    common::assert_same_bytes_but_created(&reference.merged, &merged);

    let export = dir.path().join("export");
    let out = child("export", &[&reference.store, &export])
        .limit(1024)
        .run();
    let message = stderr(&out);
    assert!(message.contains("0.h5: out of space writing"), "{message}");
    assert!(temporaries(&export).is_empty());
    succeeds(&child("export", &[&reference.store, &export]));
    assert_same_export(&reference.export, &export);
}

#[test]
fn kills_inside_finish_merge_and_export_then_a_rerun_gives_identical_results() {
    let _serial = serial();
    let reference = reference();
    let dir = tempfile::tempdir().unwrap();
    let mut table = Vec::new();

    // finish(): every point after the last part is written.
    let traced = trace(child("write", &[&dir.path().join("traced.h5")]));
    let last_part = traced
        .iter()
        .rposition(|(name, _)| name == "store.part.written")
        .unwrap();
    for (name, hit) in &traced[last_part + 1..] {
        let path = dir.path().join(format!("finish-{name}-{hit}.h5"));
        killed_at(child("write", &[&path]), name, *hit);
        succeeds(&child("write", &[&path]));
        common::assert_same_bytes_but_created(&reference.store, &path);
        assert!(!journal_left(&path), "parts left after {name} #{hit}");
        table.push(format!("finish {name} #{hit}"));
    }

    // merge: every point. Killed after its rename, the output is already complete, and a
    // rerun is refused as for any existing output.
    let merge_args = |output: &Path| -> Vec<PathBuf> {
        let mut args = vec![output.to_path_buf()];
        args.extend(reference.shards.iter().cloned());
        args
    };
    let traced_args = merge_args(&dir.path().join("traced-merge.h5"));
    let traced_refs: Vec<&Path> = traced_args.iter().map(PathBuf::as_path).collect();
    for (name, hit) in trace(child("merge", &traced_refs)) {
        let merged = dir.path().join(format!("merge-{name}-{hit}.h5"));
        let args = merge_args(&merged);
        let args: Vec<&Path> = args.iter().map(PathBuf::as_path).collect();
        killed_at(child("merge", &args), &name, hit);
        if merged.exists() {
            let out = child("merge", &args).run();
            assert!(stderr(&out).contains("--overwrite"), "{}", stderr(&out));
        } else {
            succeeds(&child("merge", &args));
        }
        common::assert_same_bytes_but_created(&reference.merged, &merged);
        table.push(format!("merge {name} #{hit}"));
    }

    // export: the first, a middle and the last hit of every point.
    let traced = trace(child(
        "export",
        &[&reference.store, &dir.path().join("traced")],
    ));
    for (name, hit) in traced.iter().filter(|(_, hit)| {
        let last = WINDOWS as u64;
        *hit == 1 || *hit == last / 2 || *hit == last
    }) {
        let export = dir.path().join(format!("export-{name}-{hit}"));
        killed_at(child("export", &[&reference.store, &export]), name, *hit);
        succeeds(&child("export", &[&reference.store, &export]));
        assert_same_export(&reference.export, &export);
        assert!(temporaries(&export).is_empty());
        table.push(format!("export {name} #{hit}"));
    }
    eprintln!("{} kills:\n{}", table.len(), table.join("\n"));
}

/// Whether the parts directory of `store` is still there.
fn journal_left(store: &Path) -> bool {
    let mut name = store.as_os_str().to_owned();
    name.push(".parts");
    Path::new(&name).exists()
}

#[test]
fn a_second_writer_is_refused_naming_the_first_and_a_dead_ones_lock_does_not_block() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.h5");
    // The first writer stops (SIGSTOP) right after its first part, holding the lock.
    let mut first = Command::new(std::env::current_exe().unwrap())
        .args(["fault_child", "--exact", "--include-ignored", "--nocapture"])
        .env(OP, "write")
        .env(ARGS, &path)
        .env("TIMEKD_FAULT", "store.part.written:1:stop")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = first.id();
    let stopped = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| stat.rsplit(") ").next().is_some_and(|s| s.starts_with('T')))
    };
    let started = std::time::Instant::now();
    while !stopped() {
        assert!(
            started.elapsed().as_secs() < 60,
            "the first writer did not stop"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }

    let refused = std::time::Instant::now();
    let err = StoreWriter::open(&path, fp(), WINDOWS, options(None))
        .err()
        .unwrap();
    assert!(refused.elapsed().as_secs() < 5, "not refused at once");
    let StoreError::Locked { holder, .. } = &err else {
        panic!("{err}")
    };
    assert!(
        holder.starts_with(&format!("pid {pid} on host ")),
        "{holder}"
    );
    assert!(err.to_string().contains(&format!("pid {pid}")), "{err}");
    // A merge into the same store is refused too.
    let inputs = shards(dir.path());
    let err = merge(&inputs, &path, true).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");

    first.kill().unwrap();
    first.wait().unwrap();
    // The dead writer's lock file remains, saying who it was; it does not block.
    let writer = StoreWriter::open(&path, fp(), WINDOWS, options(None)).unwrap();
    assert_eq!(writer.completed(), PART_WINDOWS);
}

#[test]
fn merge_names_missing_and_doubly_covered_windows() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let shard = |index: usize, count: usize| {
        let path = dir.path().join(format!("s{index}of{count}.h5"));
        let range = shard_range(WINDOWS, index, count).unwrap();
        common::write_store(&path, fp(), WINDOWS, options(Some(range)));
        path
    };
    let (a, c) = (shard(0, 3), shard(2, 3)); // 0..8, 16..24
    let b = shard(1, 2); // 12..24
    let d = shard(0, 4); // 0..6
    let out = dir.path().join("out.h5");

    let err = merge(&[a.clone(), c.clone()], &out, false).unwrap_err();
    assert!(
        matches!(&err, StoreError::Coverage { missing, duplicate, .. }
            if missing.len() == 1 && missing[0] == (8..16) && duplicate.is_empty()),
        "{err}"
    );
    assert!(
        err.to_string().contains("windows 8..16 are in no input"),
        "{err}"
    );

    let err = merge(&[a.clone(), b.clone(), c.clone()], &out, false).unwrap_err();
    let StoreError::Coverage {
        missing, duplicate, ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(*missing, vec![8..12]);
    assert_eq!(duplicate.len(), 1);
    assert_eq!(
        (duplicate[0].0.clone(), &duplicate[0].1, &duplicate[0].2),
        (16..24, &b, &c)
    );
    let message = err.to_string();
    assert!(message.contains("windows 16..24 are in both"), "{message}");

    // A trailing shard that never ran, and one job with another shard count.
    let err = merge(&[d, a], &out, false).unwrap_err();
    assert!(
        matches!(&err, StoreError::Coverage { missing, duplicate, .. }
            if missing.len() == 1 && missing[0] == (8..24) && duplicate[0].0 == (0..6)),
        "{err}"
    );
    assert!(!out.exists());
    assert!(
        !journal_left(&out),
        "a refused merge left a parts directory"
    );
}

/// Flips one bit of window `window`'s values inside the HDF5 file `path`.
fn damage_window(path: &Path, window: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    let values = common::window_values(window, N_VARS * D_MODEL);
    let needle: Vec<u8> = values[..4].iter().flat_map(|v| v.to_le_bytes()).collect();
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("window values in the file");
    bytes[at + 5] ^= 0x10;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn verify_names_the_first_damaged_window_and_merge_and_export_refuse_it() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.h5");
    common::write_store(&path, fp(), WINDOWS, options(None));
    assert_eq!(
        verify(&path).unwrap(),
        Verification::Verified {
            windows: WINDOWS,
            bytes: (WINDOWS * N_VARS * D_MODEL * 4) as u64
        }
    );
    let checksum = StoreReader::open(&path)
        .unwrap()
        .checksum()
        .unwrap()
        .to_string();
    assert_eq!(checksum.len(), 64);

    damage_window(&path, 17);
    damage_window(&path, 19);
    let err = verify(&path).unwrap_err();
    assert!(
        matches!(err, StoreError::ChecksumMismatch { window: 17, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("window 17"), "{err}");
    let err = export_release(&path, &dir.path().join("export")).unwrap_err();
    assert!(
        matches!(err, StoreError::ChecksumMismatch { window: 17, .. }),
        "{err}"
    );

    // A store in progress: each part against its own trailer.
    let partial = dir.path().join("partial.h5");
    let mut writer = StoreWriter::open(&partial, fp(), WINDOWS, options(None)).unwrap();
    for w in 0..2 * PART_WINDOWS {
        writer
            .put(w, &common::window_values(w, N_VARS * D_MODEL))
            .unwrap();
    }
    drop(writer);
    assert_eq!(
        verify(&partial).unwrap(),
        Verification::PartsVerified {
            parts: 2,
            windows: 2 * PART_WINDOWS
        }
    );

    // A store finished before checksums were recorded says so.
    let old = dir.path().join("old.h5");
    common::write_store(&old, fp(), WINDOWS, options(None));
    let file = hdf5::File::open_rw(&old).unwrap();
    file.delete_attr("embeddings_sha256").unwrap();
    file.unlink("window_sha256").unwrap();
    drop(file);
    assert_eq!(verify(&old).unwrap(), Verification::NoChecksum);
    assert_eq!(StoreReader::open(&old).unwrap().checksum(), None);
}

#[test]
fn merge_refuses_a_damaged_shard() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let inputs = shards(dir.path());
    damage_window(&inputs[1], 10);
    let out = dir.path().join("merged.h5");
    let err = merge(&inputs, &out, false).unwrap_err();
    assert!(
        matches!(&err, StoreError::ChecksumMismatch { window: 10, path } if *path == inputs[1]),
        "{err}"
    );
    assert!(!out.exists());
}
