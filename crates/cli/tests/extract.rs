//! `timekd extract` end to end on the CPU with the repository's tiny GPT-2 and ETTh1: the
//! command writes the stores the library writes, at every output length it is given. (The
//! library's own tests check one-by-one equality, pass sizes, shards and resumption.)

use std::path::{Path, PathBuf};
use std::process::Command;

use timekd_data::{DataSource, DatasetOptions, SplitKind};
use timekd_store::{StoreLayout, StoreReader};
use timekd_teacher::extract::{Extraction, PIPELINE_PROFILE_ENV};

const WINDOWS: usize = 12;
const LENGTHS: [usize; 2] = [24, 36];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tiny_model() -> PathBuf {
    repo().join("models/tiny-gpt2")
}

fn values(path: &Path) -> Vec<f32> {
    let reader = StoreReader::open(path).unwrap();
    assert!(reader.is_finished(), "{}", path.display());
    let windows: Vec<usize> = reader.window_range().collect();
    reader.read_batch(&windows).unwrap()
}

#[test]
fn the_command_writes_the_librarys_stores_at_every_length() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cli");
    let status = Command::new(env!("CARGO_BIN_EXE_timekd"))
        .args(["extract", "--split", "train", "--output-len", "24,36"])
        .arg("--model")
        .arg(tiny_model())
        .args(["--max-windows", &WINDOWS.to_string(), "--out"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "timekd extract failed");

    let source = DataSource::resolve("ETTh1").unwrap();
    let data = source
        .load(&DatasetOptions {
            output_len: 24,
            ..Default::default()
        })
        .unwrap();
    let library = Extraction::builder(&source, &data, dir.path().join("library"))
        .model(tiny_model().to_str().unwrap())
        .splits(&[SplitKind::Train])
        .lengths(&LENGTHS)
        .max_windows(Some(WINDOWS))
        .run(&mut ())
        .unwrap();
    let layout = StoreLayout::new(&out);
    for (h, store) in LENGTHS.iter().zip(&library.stores) {
        let cli = layout.store("ETTh1", *h, "train");
        assert_eq!(values(&cli), values(&store.path), "H = {h}");
    }
}

#[test]
fn the_pipeline_profile_is_printed_only_when_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let run = |setting: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_timekd"));
        command
            .args(["extract", "--split", "train", "--output-len", "24"])
            .args(["--max-windows", "4", "--overwrite", "--model"])
            .arg(tiny_model())
            .arg("--out")
            .arg(dir.path())
            .env_remove(PIPELINE_PROFILE_ENV);
        if let Some(value) = setting {
            command.env(PIPELINE_PROFILE_ENV, value);
        }
        let output = command.output().unwrap();
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(output.status.success(), "timekd extract failed: {stderr}");
        stderr
    };
    let stderr = run(Some("1"));
    let line = stderr
        .lines()
        .find(|l| l.starts_with("pipeline profile (cpu, "))
        .unwrap_or_else(|| panic!("no profile line in:\n{stderr}"));
    for part in [
        "encoding",
        "queueing passes",
        "reading back",
        "SCA: waiting",
    ] {
        assert!(line.contains(part), "{part} missing: {line}");
    }
    // A run that finished passed every chunk through all three threads.
    assert!(
        !line.contains("passed on"),
        "threads' counts differ: {line}"
    );
    assert!(!run(None).contains("pipeline profile"));
    assert!(!run(Some("0")).contains("pipeline profile"));
}
