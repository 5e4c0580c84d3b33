//! Extraction through the library on the CPU with the repository's tiny GPT-2 and ETTh1:
//! stored embeddings equal the teacher's one-by-one output, and the stores do not depend on
//! pass sizes, shards, several output lengths at once or an interruption.

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::tensor::Device;
use timekd_data::{DataSource, Dataset, DatasetOptions, SplitKind};
use timekd_store::{StoreLayout, StoreReader};
use timekd_teacher::extract::{Extraction, ExtractionBuilder, ExtractionPlan};
use timekd_teacher::{
    BatchOptions, Gpt2, PromptBuilder, PromptTemplate, Sca, Teacher, ValueFormat, WindowInput,
};

const WINDOWS: usize = 24;
const H: usize = 24;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tiny_model() -> PathBuf {
    repo().join("models/tiny-gpt2")
}

fn etth1() -> (DataSource, Dataset) {
    let source = DataSource::file(&repo().join("datasets/ETTh1.csv")).unwrap();
    let options = DatasetOptions {
        output_len: H,
        ..Default::default()
    };
    let data = source.load(&options).unwrap();
    (source, data)
}

/// Extracts the first WINDOWS train windows into `out` with `configure`'s settings; returns
/// the path of each store, in the order of the lengths.
fn extract(
    out: &Path,
    configure: impl FnOnce(ExtractionBuilder<'_>) -> ExtractionBuilder<'_>,
) -> Vec<PathBuf> {
    let (source, data) = etth1();
    let builder = Extraction::builder(&source, &data, out)
        .model(tiny_model().to_str().unwrap())
        .splits(&[SplitKind::Train])
        .max_windows(Some(WINDOWS));
    let summary = configure(builder).run(&mut ()).unwrap();
    summary.stores.into_iter().map(|s| s.path).collect()
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
    let store = extract(dir.path(), |b| b).remove(0);
    assert_eq!(
        store,
        StoreLayout::new(dir.path()).store("ETTh1", H, "train")
    );
    let reader = StoreReader::open(&store).unwrap();

    let device = Device::flex();
    let (_, data) = etth1();
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

/// Merges finished shard stores into `output`.
fn merge(shards: &[PathBuf], output: &Path) -> PathBuf {
    timekd_store::merge(shards, output, false).unwrap()
}

#[test]
fn batch_sizes_and_shards_give_identical_stores() {
    let dir = tempfile::tempdir().unwrap();
    let reference = all_values(&extract(&dir.path().join("default"), |b| b)[0]);
    // Small passes: many more batches, other batch compositions.
    let small = extract(&dir.path().join("small"), |b| b.batch_tokens(Some(600)));
    assert_eq!(
        all_values(&small[0]),
        reference,
        "batch tokens changed the stored values"
    );

    // Two disjoint shards (two workers / hosts), merged.
    let shards: Vec<PathBuf> = (0..2)
        .map(|i| {
            let shard = format!("{i}/2").parse().unwrap();
            extract(&dir.path().join(format!("shard{i}")), |b| {
                b.shard(Some(shard))
            })
            .remove(0)
        })
        .collect();
    let merged = merge(&shards, &dir.path().join("merged.h5"));
    assert_eq!(
        all_values(&merged),
        reference,
        "shards + merge changed the values"
    );
}

/// Max over windows of the relative L2 distance between two stores' windows.
fn max_window_rel_l2(a: &Path, b: &Path) -> f64 {
    let (a, b) = (StoreReader::open(a).unwrap(), StoreReader::open(b).unwrap());
    assert_eq!(a.window_range(), b.window_range());
    a.window_range()
        .map(|w| rel_l2(&a.read(w).unwrap(), &b.read(w).unwrap()))
        .fold(0.0, f64::max)
}

#[test]
fn several_lengths_at_once_equal_separate_runs() {
    // GPT-2, and LLaMA (rotary positions: a suffix's positions continue its prefix's).
    let llama = repo().join("crates/teacher/tests/fixtures/families/llama");
    for model in [tiny_model(), llama] {
        let model = model.to_str().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let lengths = [24, 36, 48];
        let together = extract(&dir.path().join("together"), |b| {
            b.lengths(&lengths).model(model)
        });
        assert_eq!(together.len(), lengths.len());
        for (h, store) in lengths.iter().zip(&together) {
            assert_eq!(
                *store,
                StoreLayout::new(dir.path().join("together")).store("ETTh1", *h, "train")
            );
            let alone = extract(&dir.path().join(format!("alone{h}")), |b| {
                b.lengths(&[*h]).model(model)
            });
            let fingerprint = |p: &Path| StoreReader::open(p).unwrap().fingerprint().clone();
            let (mut a, mut b) = (fingerprint(store), fingerprint(&alone[0]));
            assert_eq!(a.output_len, *h);
            (a.created, b.created) = (String::new(), String::new());
            assert_eq!(a, b, "{model} H = {h}: fingerprints differ");
            // The history sentence is tokenised once for all lengths: equal up to float
            // rounding.
            let err = max_window_rel_l2(store, &alone[0]);
            eprintln!(
                "{model} H = {h}: several lengths vs alone, max rel L2 over windows {err:.3e}"
            );
            assert!(err <= 1e-5, "{model} H = {h}: {err}");
        }
    }
}

#[test]
fn one_pass_over_several_lengths_plans_each_shared_prefix_once() {
    let (source, data) = etth1();
    let plan = |lengths: &[usize]| {
        Extraction::builder(&source, &data, "unused")
            .model(tiny_model().to_str().unwrap())
            .splits(&[SplitKind::Train, SplitKind::Val])
            .lengths(lengths)
            .build()
            .unwrap()
            .plan()
            .unwrap()
    };
    let one = plan(&[24]);
    let sum = |p: &ExtractionPlan| -> f64 { p.stores.iter().map(|s| s.flops_run).sum() };
    let (flops, _) = one.together();
    assert!(
        (flops - sum(&one)).abs() <= 1e-9 * flops,
        "one length: {flops} vs {}",
        sum(&one)
    );

    let lengths = [24, 36, 48, 96, 192];
    let several = plan(&lengths);
    let (flops, seconds) = several.together();
    // Every store but each split's most windowed one has its prefixes run for it already.
    let mut saved = 0.0;
    for split in [SplitKind::Train, SplitKind::Val] {
        let stores: Vec<_> = several.stores.iter().filter(|s| s.split == split).collect();
        assert_eq!(stores.len(), lengths.len());
        let widest = stores.iter().map(|s| s.windows).max().unwrap();
        assert_eq!(
            widest, stores[0].windows,
            "the shortest H has the most windows"
        );
        saved += stores[1..].iter().map(|s| s.prefix_flops).sum::<f64>();
        assert!(stores.iter().all(|s| s.prefix_flops > 0.0));
    }
    let expected = sum(&several) - saved;
    assert!(
        (flops - expected).abs() <= 1e-9 * flops,
        "{flops} vs {expected}"
    );
    let store_seconds: f64 = several.stores.iter().map(|s| s.seconds).sum();
    assert!(seconds > 0.0 && seconds < store_seconds);
}

#[test]
fn several_lengths_do_not_depend_on_pass_sizes_or_shards() {
    let dir = tempfile::tempdir().unwrap();
    let lengths = [24, 48];
    let reference = extract(&dir.path().join("default"), |b| b.lengths(&lengths));
    let small = extract(&dir.path().join("small"), |b| {
        b.lengths(&lengths).batch_tokens(Some(600))
    });
    let shards: Vec<Vec<PathBuf>> = (0..2)
        .map(|i| {
            let shard = format!("{i}/2").parse().unwrap();
            extract(&dir.path().join(format!("shard{i}")), |b| {
                b.lengths(&lengths).shard(Some(shard))
            })
        })
        .collect();
    for (l, h) in lengths.iter().enumerate() {
        let expected = all_values(&reference[l]);
        assert_eq!(all_values(&small[l]), expected, "H = {h}: pass sizes");
        let parts = [shards[0][l].clone(), shards[1][l].clone()];
        let merged = merge(&parts, &dir.path().join(format!("merged{h}.h5")));
        assert_eq!(all_values(&merged), expected, "H = {h}: shards");
    }
}

/// The `extract` example, built by `cargo test` beside this test's binary.
fn example() -> PathBuf {
    let deps = std::env::current_exe().unwrap();
    let path = deps.parent().unwrap().join("../examples/extract");
    assert!(
        path.is_file(),
        "{} is missing: run this test through `cargo test -p timekd-teacher` (which builds the examples)",
        path.display()
    );
    path
}

#[test]
fn the_example_killed_and_rerun_finishes_equal_to_an_uninterrupted_run() {
    const KILLED_WINDOWS: usize = 96;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("killed");
    let run_example = || {
        let mut command = Command::new(example());
        command.arg(&out).arg(KILLED_WINDOWS.to_string());
        command
    };
    let store = StoreLayout::new(&out).store("ETTh1", H, "val");
    let parts = store.with_extension("h5.parts");
    let mut child = run_example()
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    // A durable part: renamed into place, no longer `part-*.tmp`.
    let has_part = || {
        std::fs::read_dir(&parts).is_ok_and(|entries| {
            entries.filter_map(Result::ok).any(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.starts_with("part-") && !name.ends_with(".tmp")
            })
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

    let rerun = run_example().output().unwrap();
    assert!(rerun.status.success(), "the rerun failed");
    let resumed = String::from_utf8_lossy(&rerun.stdout);
    assert!(
        !resumed.contains(&format!("{KILLED_WINDOWS} windows to do")),
        "the rerun started from scratch:\n{resumed}"
    );

    // The same settings, uninterrupted, through the library in this process.
    let (source, data) = etth1();
    let reference = Extraction::builder(&source, &data, dir.path().join("whole"))
        .model(tiny_model().to_str().unwrap())
        .splits(&[SplitKind::Val])
        .max_windows(Some(KILLED_WINDOWS))
        .batch_tokens(Some(600))
        .run(&mut ())
        .unwrap();
    assert_eq!(all_values(&store), all_values(&reference.stores[0].path));
}
