//! Writer, reader, resume, fingerprint checks, corruption, release layout and merging.

mod common;

use std::path::{Path, PathBuf};

use timekd_store::{
    Dtype, StoreError, StoreReader, StoreWriter, WriterOptions, export_release, import_release,
    inspect, merge, shard_range,
};

const N: usize = 2;
const D: usize = 6;

fn fp() -> timekd_store::Fingerprint {
    common::fingerprint(N, D, Dtype::F32)
}

fn small_parts() -> WriterOptions {
    WriterOptions {
        part_windows: Some(3),
        ..Default::default()
    }
}

/// A store in progress with `done` of `windows` windows durable.
fn partial_store(path: &Path, windows: usize, done: usize) {
    let mut writer = StoreWriter::open(path, fp(), windows, small_parts()).unwrap();
    for w in 0..done {
        writer.put(w, &common::window_values(w, N * D)).unwrap();
    }
    writer.flush().unwrap();
}

fn finish_missing(path: &Path, windows: usize) -> PathBuf {
    let mut writer = StoreWriter::open(path, fp(), windows, small_parts()).unwrap();
    for w in writer.missing() {
        writer.put(w, &common::window_values(w, N * D)).unwrap();
    }
    writer.finish().unwrap()
}

#[test]
fn reader_sees_completed_windows_of_a_store_in_progress_and_resume_finishes_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.h5");
    partial_store(&path, 10, 4);
    let reader = StoreReader::open(&path).unwrap();
    assert!(!reader.is_finished());
    assert_eq!(reader.completed(), 4);
    assert!(reader.is_complete(3) && !reader.is_complete(4));
    assert_eq!(reader.read(2).unwrap(), common::window_values(2, N * D));
    let err = reader.read(7).unwrap_err();
    assert!(
        matches!(err, StoreError::MissingWindow { window: 7, .. }),
        "{err}"
    );
    assert!(inspect(&path).unwrap().to_string().contains("4/10 windows"));

    let writer = StoreWriter::open(&path, fp(), 10, small_parts()).unwrap();
    assert_eq!(writer.missing(), (4..10).collect::<Vec<_>>());
    drop(writer);
    finish_missing(&path, 10);
    let reference = dir.path().join("ref.h5");
    common::write_store(&reference, fp(), 10, WriterOptions::default());
    common::assert_same_content(
        &StoreReader::open(&reference).unwrap(),
        &StoreReader::open(&path).unwrap(),
    );
    assert!(!dir.path().join("s.h5.parts").exists());
}

#[test]
fn batches_and_prefetch_return_requested_windows_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.h5");
    common::write_store(&path, fp(), 20, small_parts());
    let reader = StoreReader::open(&path).unwrap();
    let picks = [13, 0, 13, 19];
    let batch = reader.read_batch(&picks).unwrap();
    let expected: Vec<f32> = picks
        .iter()
        .flat_map(|&w| common::window_values(w, N * D))
        .collect();
    assert_eq!(batch, expected);
    let order: Vec<usize> = (0..20).rev().collect();
    let batches: Vec<_> = reader
        .prefetch(order.clone(), 6, 2)
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        batches.iter().map(|b| b.windows.len()).collect::<Vec<_>>(),
        [6, 6, 6, 2]
    );
    let values: Vec<f32> = batches.iter().flat_map(|b| b.values.clone()).collect();
    let expected: Vec<f32> = order
        .iter()
        .flat_map(|&w| common::window_values(w, N * D))
        .collect();
    assert_eq!(values, expected);
}

#[test]
fn prefetch_yields_an_error_for_a_missing_window_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.h5");
    partial_store(&path, 10, 3);
    let reader = StoreReader::open(&path).unwrap();
    let results: Vec<_> = reader.prefetch((0..10).collect(), 2, 1).collect();
    assert_eq!(results.len(), 2);
    assert!(results[0].is_ok());
    assert!(matches!(
        results[1],
        Err(StoreError::MissingWindow { window: 3, .. })
    ));
}

#[test]
fn fingerprint_mismatch_names_the_fields_and_overwrite_replaces() {
    let dir = tempfile::tempdir().unwrap();
    for finished in [true, false] {
        let path = dir.path().join(format!("s{finished}.h5"));
        if finished {
            common::write_store(&path, fp(), 5, WriterOptions::default());
        } else {
            partial_store(&path, 5, 2);
        }
        let mut other = fp();
        other.output_len = 48;
        other.weights_sha256 = "ee".repeat(32);
        other.tool_version = "9.0.0".into(); // provenance: not compared
        let err = StoreWriter::open(&path, other.clone(), 5, WriterOptions::default())
            .err()
            .unwrap();
        let StoreError::FingerprintMismatch { fields, .. } = &err else {
            panic!("{err}")
        };
        let names: Vec<&str> = fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(names, ["output_len", "weights_sha256"]);
        let message = err.to_string();
        assert!(
            message.contains("output_len (store: 24, requested: 48)"),
            "{message}"
        );
        assert!(message.contains("--overwrite"), "{message}");

        let err = StoreWriter::open(&path, fp(), 6, WriterOptions::default())
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains("windows_total (store: 5, requested: 6)"),
            "{err}"
        );

        let options = WriterOptions {
            overwrite: true,
            ..Default::default()
        };
        let writer = StoreWriter::open(&path, other, 5, options).unwrap();
        assert_eq!(writer.missing().len(), 5);
        assert_eq!(writer.fingerprint().output_len, 48);
    }
}

#[test]
fn reopening_a_finished_store_needs_no_work_and_cleans_stale_parts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.h5");
    common::write_store(&path, fp(), 5, WriterOptions::default());
    // As if killed after the final rename but before the parts were removed.
    std::fs::create_dir(dir.path().join("s.h5.parts")).unwrap();
    std::fs::write(dir.path().join("s.h5.parts/part-00000000.bin"), b"stale").unwrap();
    let writer = StoreWriter::open(&path, fp(), 5, WriterOptions::default()).unwrap();
    assert!(writer.missing().is_empty());
    assert_eq!(writer.completed(), 5);
    writer.finish().unwrap();
    assert!(!dir.path().join("s.h5.parts").exists());
    assert_eq!(
        StoreReader::open(&path).unwrap().read(4).unwrap(),
        common::window_values(4, N * D)
    );
}

#[test]
fn leftovers_of_a_crash_are_cleaned_and_damaged_parts_recomputed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.h5");
    partial_store(&path, 12, 9); // parts 0, 1, 2 of 3 windows each
    let parts = dir.path().join("s.h5.parts");
    // A half-written temporary part, a half-written final file, and a truncated part.
    std::fs::write(parts.join("part-00000003.bin.tmp"), b"TKDPART1 half").unwrap();
    std::fs::write(dir.path().join("s.h5.tmp"), b"half an hdf5 file").unwrap();
    let part1 = parts.join("part-00000001.bin");
    let bytes = std::fs::read(&part1).unwrap();
    std::fs::write(&part1, &bytes[..bytes.len() / 2]).unwrap();

    let err = StoreReader::open(&path).err().unwrap();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("part-00000001.bin"), "{err}");

    let writer = StoreWriter::open(&path, fp(), 12, small_parts()).unwrap();
    assert_eq!(writer.discarded().len(), 1);
    assert_eq!(writer.missing(), [3, 4, 5, 9, 10, 11]);
    assert!(!parts.join("part-00000003.bin.tmp").exists());
    drop(writer);
    finish_missing(&path, 12);
    let reference = dir.path().join("ref.h5");
    common::write_store(&reference, fp(), 12, WriterOptions::default());
    common::assert_same_content(
        &StoreReader::open(&reference).unwrap(),
        &StoreReader::open(&path).unwrap(),
    );
    assert!(!dir.path().join("s.h5.tmp").exists());
}

#[test]
fn put_rejects_wrong_windows_and_finish_rejects_missing_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.h5");
    let mut writer = StoreWriter::open(&path, fp(), 4, WriterOptions::default()).unwrap();
    assert!(
        writer
            .put(4, &[0.0; N * D])
            .unwrap_err()
            .to_string()
            .contains("outside")
    );
    assert!(
        writer
            .put(0, &[0.0; 3])
            .unwrap_err()
            .to_string()
            .contains("expected n_vars * d_model")
    );
    writer.put(1, &[0.0; N * D]).unwrap();
    assert!(
        writer
            .put(1, &[0.0; N * D])
            .unwrap_err()
            .to_string()
            .contains("already written")
    );
    let second = StoreWriter::open(&path, fp(), 4, WriterOptions::default())
        .err()
        .unwrap();
    assert!(matches!(second, StoreError::Locked { .. }), "{second}");
    let err = writer.finish().unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Incomplete {
                missing: 3,
                first: 0,
                ..
            }
        ),
        "{err}"
    );
}

fn copy_of_store(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    common::write_store(&path, fp(), 6, WriterOptions::default());
    path
}

#[test]
fn corrupted_files_give_clear_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();

    let truncated = copy_of_store(dir.path(), "truncated.h5");
    let len = std::fs::metadata(&truncated).unwrap().len();
    for keep in [len - 1, len / 2, 100, 0] {
        let bytes = std::fs::read(dir.path().join("truncated.h5")).unwrap_or_default();
        std::fs::write(&truncated, &bytes[..keep.min(bytes.len() as u64) as usize]).unwrap();
        let err = StoreReader::open(&truncated).err().map(|e| e.to_string());
        let reads = StoreReader::open(&truncated)
            .ok()
            .map(|r| r.read_batch(&[0, 5]).is_ok());
        assert!(
            err.is_some() || reads == Some(false),
            "truncated to {keep} bytes but still readable"
        );
        if let Some(message) = err {
            assert!(message.contains("truncated.h5"), "{message}");
        }
    }

    let garbage = dir.path().join("garbage.h5");
    std::fs::write(&garbage, vec![0x5a; 4096]).unwrap();
    let err = StoreReader::open(&garbage).err().unwrap();
    assert!(matches!(err, StoreError::Hdf5 { .. }), "{err}");
    assert!(err.to_string().contains("garbage.h5"), "{err}");

    let reshaped = copy_of_store(dir.path(), "reshaped.h5");
    {
        let file = hdf5::File::open_rw(&reshaped).unwrap();
        file.unlink("embeddings").unwrap();
        file.new_dataset::<f32>()
            .shape([6, N, D + 1])
            .create("embeddings")
            .unwrap();
    }
    let err = StoreReader::open(&reshaped).err().unwrap();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("shape [6, 2, 7]"), "{err}");

    let no_attr = copy_of_store(dir.path(), "no_attr.h5");
    hdf5::File::open_rw(&no_attr)
        .unwrap()
        .delete_attr("model_id")
        .unwrap();
    let err = StoreReader::open(&no_attr).err().unwrap();
    assert!(err.to_string().contains("model_id"), "{err}");
    let err = StoreWriter::open(&no_attr, fp(), 6, WriterOptions::default())
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");

    let bad_manifest = dir.path().join("bad_manifest.h5");
    std::fs::create_dir(dir.path().join("bad_manifest.h5.parts")).unwrap();
    std::fs::write(
        dir.path().join("bad_manifest.h5.parts/manifest.json"),
        b"{ not json",
    )
    .unwrap();
    let err = StoreReader::open(&bad_manifest).err().unwrap();
    assert!(err.to_string().contains("manifest"), "{err}");
}

#[test]
fn release_layout_round_trip_is_lossless_for_f32() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.h5");
    common::write_store(&path, fp(), 9, small_parts());
    let release = dir.path().join("release");
    assert_eq!(export_release(&path, &release).unwrap(), 9);
    let file = hdf5::File::open(release.join("4.h5")).unwrap();
    let ds = file.dataset("embeddings").unwrap();
    assert_eq!(ds.shape(), [N, D]);
    assert_eq!(
        ds.read_raw::<f32>().unwrap(),
        common::window_values(4, N * D)
    );

    let fingerprint = inspect(&path).unwrap().fingerprint;
    let back = dir.path().join("back.h5");
    import_release(&release, &back, fingerprint, None, false).unwrap();
    common::assert_same_content(
        &StoreReader::open(&path).unwrap(),
        &StoreReader::open(&back).unwrap(),
    );

    std::fs::remove_file(release.join("5.h5")).unwrap();
    let err = import_release(&release, &dir.path().join("gap.h5"), fp(), None, false).unwrap_err();
    assert!(err.to_string().contains("5.h5 is missing"), "{err}");
}

#[test]
fn merged_shards_equal_a_single_run_and_bad_merges_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let windows = 11;
    let mut shards = Vec::new();
    for index in 0..3 {
        let path = dir.path().join(format!("shard{index}.h5"));
        let range = shard_range(windows, index, 3).unwrap();
        common::write_store(
            &path,
            fp(),
            windows,
            WriterOptions {
                range: Some(range),
                ..small_parts()
            },
        );
        shards.push(path);
    }
    let shard = StoreReader::open(&shards[1]).unwrap();
    assert_eq!(shard.window_range(), 4..8);
    assert!(shard.read(3).is_err());

    let merged = dir.path().join("merged.h5");
    merge(
        &[shards[2].clone(), shards[0].clone(), shards[1].clone()],
        &merged,
        false,
    )
    .unwrap();
    let single = dir.path().join("single.h5");
    common::write_store(&single, fp(), windows, WriterOptions::default());
    common::assert_same_content(
        &StoreReader::open(&single).unwrap(),
        &StoreReader::open(&merged).unwrap(),
    );

    let err = merge(
        &[shards[0].clone(), shards[2].clone()],
        &dir.path().join("gap.h5"),
        false,
    )
    .unwrap_err();
    assert!(err.to_string().contains("gap"), "{err}");
    let err = merge(
        &[shards[0].clone(), single.clone()],
        &dir.path().join("overlap.h5"),
        false,
    )
    .unwrap_err();
    assert!(err.to_string().contains("overlap"), "{err}");
    let err = merge(&shards, &merged, false).unwrap_err();
    assert!(err.to_string().contains("--overwrite"), "{err}");

    let odd = dir.path().join("odd.h5");
    let mut other = fp();
    other.sca_seed = 1;
    let range = shard_range(windows, 1, 3).unwrap();
    common::write_store(
        &odd,
        other,
        windows,
        WriterOptions {
            range: Some(range),
            ..Default::default()
        },
    );
    let err = merge(
        &[shards[0].clone(), odd, shards[2].clone()],
        &dir.path().join("x.h5"),
        false,
    )
    .unwrap_err();
    assert!(
        matches!(&err, StoreError::FingerprintMismatch { fields, .. } if fields[0].field == "sca_seed"),
        "{err}"
    );
}
