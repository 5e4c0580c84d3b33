//! `timekd extract` end to end on the CPU with the repository's tiny GPT-2 and ETTh1:
//! stored embeddings equal the teacher's one-by-one output, and the store does not depend on
//! batch sizes, shards or an interruption.

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::tensor::Device;
use timekd_data::{Dataset, DatasetOptions, SplitKind};
use timekd_store::StoreReader;
use timekd_teacher::{
    BatchOptions, Gpt2, PromptBuilder, PromptTemplate, Sca, Teacher, ValueFormat, WindowInput,
};

const WINDOWS: usize = 24;
const H: usize = 24;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn etth1() -> PathBuf {
    repo().join("datasets/ETTh1.csv")
}

fn tiny_model() -> PathBuf {
    repo().join("models/tiny-gpt2")
}

/// `timekd extract` of the first `windows` train windows (H = 24) into `out`.
fn extract_command(windows: usize, out: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_timekd"));
    command
        .args([
            "extract",
            "--split",
            "train",
            "--output-len",
            &H.to_string(),
        ])
        .arg("--data")
        .arg(etth1())
        .arg("--model")
        .arg(tiny_model())
        .args(["--max-windows", &windows.to_string(), "--out"])
        .arg(out);
    command
}

/// Runs [`extract_command`] plus `extra` flags to success; returns the store's path.
fn extract_first(windows: usize, out: &Path, extra: &[&str]) -> PathBuf {
    let status = extract_command(windows, out).args(extra).status().unwrap();
    assert!(status.success(), "timekd extract {extra:?} failed");
    out.join("ETTh1").join(H.to_string()).join("train.h5")
}

/// [`extract_first`] of WINDOWS windows.
fn extract(out: &Path, extra: &[&str]) -> PathBuf {
    extract_first(WINDOWS, out, extra)
}

fn all_values(path: &Path) -> Vec<f32> {
    let reader = StoreReader::open(path).unwrap();
    assert!(reader.is_finished(), "{}", path.display());
    let windows: Vec<usize> = reader.window_range().collect();
    reader.read_batch(&windows).unwrap()
}

fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
    let den: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum();
    (num / den).sqrt()
}

#[test]
fn stored_embeddings_equal_the_teachers_one_by_one_output() {
    let dir = tempfile::tempdir().unwrap();
    let store = extract(dir.path(), &[]);
    let reader = StoreReader::open(&store).unwrap();

    let device = Device::flex();
    let data = Dataset::load(
        &etth1(),
        &DatasetOptions {
            output_len: H,
            ..Default::default()
        },
    )
    .unwrap();
    let gpt2 = Gpt2::load_dir(&tiny_model(), None, &device).unwrap();
    let sca = Sca::init(data.n_vars(), 4 * gpt2.d_model(), 2024, &device);
    // One prompt per pass, full prompts: no batching, padding or prefix cache at all.
    let one_by_one = BatchOptions {
        max_prompts: 1,
        share_prefix: false,
        ..BatchOptions::default()
    };
    let template = PromptTemplate::for_preset(data.preset(), data.interval_seconds());
    let teacher = Teacher::new(
        gpt2,
        sca,
        PromptBuilder::new(template, ValueFormat::Int),
        one_by_one,
    )
    .unwrap();
    let train = data.split(SplitKind::Train);
    for window in [0, 7, WINDOWS - 1] {
        let input = WindowInput::from_window(&train.window(window), data.n_vars());
        let expected = teacher
            .embed(&[input])
            .unwrap()
            .try_into_vec_as::<f32>()
            .unwrap();
        let stored = reader.read(window).unwrap();
        let err = rel_l2(&stored, &expected);
        eprintln!("window {window}: stored vs one-by-one rel L2 {err:.3e}");
        assert!(err <= 1e-5, "window {window}: {err}");
    }
}

#[test]
fn batch_sizes_and_shards_give_identical_stores() {
    let dir = tempfile::tempdir().unwrap();
    let reference = all_values(&extract(&dir.path().join("default"), &[]));
    // Small passes: many more batches, other batch compositions.
    let small = all_values(&extract(
        &dir.path().join("small"),
        &["--batch-tokens", "600"],
    ));
    assert_eq!(small, reference, "--batch-tokens changed the stored values");

    // Two disjoint shards (two workers / hosts), merged.
    let shards: Vec<PathBuf> = (0..2)
        .map(|i| {
            extract(
                &dir.path().join(format!("shard{i}")),
                &["--shard", &format!("{i}/2")],
            )
        })
        .collect();
    let merged = dir.path().join("merged.h5");
    let status = Command::new(env!("CARGO_BIN_EXE_timekd"))
        .args(["store", "merge", "-o"])
        .arg(&merged)
        .args(&shards)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        all_values(&merged),
        reference,
        "shards + merge changed the values"
    );
}

#[test]
fn a_killed_extract_resumes_to_the_same_store() {
    let dir = tempfile::tempdir().unwrap();
    let reference = all_values(&extract(&dir.path().join("reference"), &[]));
    let out = dir.path().join("killed");
    let store = out.join("ETTh1").join(H.to_string()).join("train.h5");
    let parts = out.join("ETTh1").join(H.to_string()).join("train.h5.parts");
    // Small passes so that parts are written well before the end.
    let mut child = extract_command(200, &out)
        .args(["--batch-tokens", "600"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let has_part = || {
        std::fs::read_dir(&parts).is_ok_and(|entries| {
            entries
                .filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().starts_with("part-"))
        })
    };
    while !has_part() && child.try_wait().unwrap().is_none() {
        assert!(started.elapsed().as_secs() < 300, "no part written");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let killed_early = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(killed_early, "the run finished before it could be killed");
    assert!(
        !store.exists(),
        "a killed run must not leave a finished store"
    );

    // The rerun (default batch sizes) resumes; the first WINDOWS windows are compared.
    let resumed = extract_first(200, &out, &[]);
    let reader = StoreReader::open(&resumed).unwrap();
    let windows: Vec<usize> = (0..WINDOWS).collect();
    assert_eq!(reader.read_batch(&windows).unwrap(), reference);
}
