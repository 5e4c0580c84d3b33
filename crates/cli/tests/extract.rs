//! `timekd extract` end to end on the CPU with the repository's tiny GPT-2 and ETTh1: the
//! command writes the stores the library writes, at every output length it is given. (The
//! library's own tests check one-by-one equality, pass sizes, shards and resumption.)

use std::path::{Path, PathBuf};
use std::process::Command;

use timekd_data::{DataSource, DatasetOptions, SplitKind};
use timekd_store::{StoreLayout, StoreReader};
use timekd_teacher::extract::Extraction;

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
