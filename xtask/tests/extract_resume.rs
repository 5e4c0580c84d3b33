//! A killed `cargo xtask extract --all-lengths` resumes and ends with the same stores as an
//! uninterrupted run (CPU, tiny model, ETTh1, two lengths, a slice of each split). The one
//! `timekd extract` it runs does train (both lengths), then val.
//!
//! Uses the debug `timekd` that `cargo test --workspace` builds beside this xtask binary.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use timekd_store::StoreReader;

const LENGTHS: [usize; 2] = [24, 48];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn timekd() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_xtask")).with_file_name("timekd");
    assert!(
        path.is_file(),
        "{} is missing: run this test through `cargo test --workspace` (or build timekd-cli first)",
        path.display()
    );
    path
}

fn xtask_extract(out: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command
        .current_dir(repo())
        .args(["extract", "--all-lengths", "--lengths", "24,48"])
        // Small passes: a chunk of a few windows at a time, so val is killed part-way.
        .args(["--max-windows", "60", "--batch-tokens", "600", "--timekd"])
        .arg(timekd())
        .arg("--out")
        .arg(out);
    command
}

fn store(out: &Path, h: usize, split: &str) -> PathBuf {
    out.join("ETTh1")
        .join(h.to_string())
        .join(format!("{split}.h5"))
}

fn values(path: &Path) -> Vec<f32> {
    let reader = StoreReader::open(path).unwrap();
    assert!(reader.is_finished(), "{} is not finished", path.display());
    let windows: Vec<usize> = reader.window_range().collect();
    reader.read_batch(&windows).unwrap()
}

/// Whether `parts` holds a part renamed into place (not a `part-*.tmp` being written).
fn has_durable_part(parts: &Path) -> bool {
    std::fs::read_dir(parts).is_ok_and(|entries| {
        entries.filter_map(Result::ok).any(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("part-") && !name.ends_with(".tmp")
        })
    })
}

fn wait_for(child: &mut Child, what: &str, ready: impl Fn() -> bool) {
    let started = Instant::now();
    while !ready() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before {what}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn killed_all_lengths_extraction_resumes_to_the_same_stores() {
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("reference");
    assert!(xtask_extract(&reference).status().unwrap().success());

    let out = dir.path().join("killed");
    let mut child = xtask_extract(&out)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill xtask itself (not its process group) once a chunk of val is durable (every store
    // is opened at the start; train's chunks all come first): its timekd child must die with
    // it, or the rerun would find the store locked.
    let parts = store(&out, 48, "val").with_extension("h5.parts");
    wait_for(&mut child, "a durable val part", || {
        has_durable_part(&parts)
    });
    child.kill().unwrap();
    child.wait().unwrap();
    for h in LENGTHS {
        assert!(
            store(&out, h, "train").exists(),
            "H = {h} train should be finished"
        );
        assert!(
            !store(&out, h, "val").exists(),
            "H = {h} val should not be finished"
        );
    }

    assert!(
        xtask_extract(&out).status().unwrap().success(),
        "the rerun failed"
    );
    for h in LENGTHS {
        for split in ["train", "val"] {
            assert_eq!(
                values(&store(&out, h, split)),
                values(&store(&reference, h, split)),
                "H = {h} {split}"
            );
        }
    }
}
