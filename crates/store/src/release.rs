//! The Python release's per-window layout: `{dir}/{i}.h5`, each with dataset `embeddings`
//! `[n_vars, d_model]` f32, `i` the window index within the split.

use std::path::{Path, PathBuf};

use ndarray::ArrayView2;

use crate::durable::{commit, remove_if_exists, tmp_path};
use crate::error::{Result, StoreError};
use crate::final_file::{EMBEDDINGS, close, disk_full_or};
use crate::fingerprint::Fingerprint;
use crate::reader::StoreReader;
use crate::verify::check_window;
use crate::writer::{StoreWriter, WriterOptions};

/// Writes every window of the finished store `store` to `dir` (created if needed) as
/// `{i}.h5`, each through a temporary name, fsync and rename, after checking the window
/// against the store's recorded digest. Returns the number of files written. An
/// interrupted export leaves complete files and at most one temporary file; rerun it.
pub fn export_release(store: &Path, dir: &Path) -> Result<usize> {
    let reader = StoreReader::open(store)?;
    if !reader.is_finished() {
        return Err(StoreError::invalid(
            store,
            "store is still being written; finish it before exporting",
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, "create export directory", e))?;
    let dims = reader.dims();
    let digests = reader.window_digests()?;
    let mut values = vec![0f32; dims.window_len()];
    let mut encoded = Vec::new();
    for window in reader.window_range() {
        reader.read_into(window, &mut values)?;
        check_window(&reader, digests.as_deref(), window, &values, &mut encoded)?;
        let path = dir.join(format!("{window}.h5"));
        let tmp = tmp_path(&path);
        let written = write_release_file(&tmp, (dims.n_vars, dims.d_model), &values);
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            let bytes = (values.len() * 4 + RELEASE_FILE_OVERHEAD) as u64;
            return Err(disk_full_or(e, &path, bytes));
        }
        commit(&tmp, &path)?;
        timekd_fault::point("store.export.window");
    }
    Ok(dims.windows)
}

/// About how many bytes a release file takes beyond its values (superblock, headers).
const RELEASE_FILE_OVERHEAD: usize = 2048;

/// Writes one release file: dataset `embeddings` `[n_vars, d_model]` f32, without object
/// times (so an export is byte for byte reproducible).
fn write_release_file(tmp: &Path, shape: (usize, usize), values: &[f32]) -> Result<()> {
    let h5 = |action| move |e| StoreError::hdf5(tmp, action, e);
    remove_if_exists(tmp)?;
    let file = hdf5::File::create(tmp).map_err(h5("create HDF5 file"))?;
    let view = ArrayView2::from_shape(shape, values)
        .map_err(|e| StoreError::invalid(tmp, e.to_string()))?;
    let dataset = file
        .new_dataset_builder()
        .with_data(view)
        .obj_track_times(false)
        .create(EMBEDDINGS)
        .map_err(h5("write dataset `embeddings`"))?;
    close(file, dataset).map_err(h5("flush and close HDF5 file"))
}

/// Builds the store `store` from release files `{dir}/{i}.h5`, which must be numbered
/// contiguously (`start..end`; a shard when `start > 0`). `windows_total` defaults to
/// `end`. Each file's `embeddings` must hold `n_vars * d_model` values in shape
/// `[n_vars, d_model]` (leading axes of length 1 are accepted); values are read as f32.
/// The import goes through [`StoreWriter`], so an interrupted import resumes.
pub fn import_release(
    dir: &Path,
    store: &Path,
    fingerprint: Fingerprint,
    windows_total: Option<usize>,
    overwrite: bool,
) -> Result<PathBuf> {
    let mut indices = Vec::new();
    let entries =
        std::fs::read_dir(dir).map_err(|e| StoreError::io(dir, "list release directory", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io(dir, "list release directory", e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(index) = name
            .strip_suffix(".h5")
            .and_then(|stem| stem.parse::<usize>().ok())
        {
            indices.push(index);
        }
    }
    indices.sort_unstable();
    let (Some(&start), Some(&last)) = (indices.first(), indices.last()) else {
        return Err(StoreError::invalid(dir, "no `{i}.h5` files here"));
    };
    if last - start + 1 != indices.len() {
        let gap = indices
            .windows(2)
            .find(|p| p[1] != p[0] + 1)
            .map_or(start, |p| p[0] + 1);
        return Err(StoreError::invalid(
            dir,
            format!("window files are not contiguous: {gap}.h5 is missing"),
        ));
    }
    let shape = [fingerprint.n_vars, fingerprint.d_model];
    let options = WriterOptions {
        overwrite,
        part_windows: None,
        range: Some(start..last + 1),
    };
    let mut writer = StoreWriter::open(
        store,
        fingerprint,
        windows_total.unwrap_or(last + 1),
        options,
    )?;
    for window in writer.missing() {
        let values = read_release_file(&dir.join(format!("{window}.h5")), shape)?;
        writer.put(window, &values)?;
    }
    writer.finish()
}

fn read_release_file(path: &Path, shape: [usize; 2]) -> Result<Vec<f32>> {
    let h5 = |action| move |e| StoreError::hdf5(path, action, e);
    let file = hdf5::File::open(path).map_err(h5("open HDF5 file"))?;
    let dataset = file
        .dataset(EMBEDDINGS)
        .map_err(h5("open dataset `embeddings`"))?;
    let stored = dataset.shape();
    let split = stored.len().saturating_sub(2);
    if stored.len() < 2 || stored[split..] != shape || stored[..split].iter().any(|&n| n != 1) {
        return Err(StoreError::corrupt(
            path,
            format!(
                "dataset `embeddings` has shape {stored:?}, expected {shape:?} (n_vars, d_model)"
            ),
        ));
    }
    dataset
        .read_raw::<f32>()
        .map_err(h5("read dataset `embeddings` as f32"))
}
