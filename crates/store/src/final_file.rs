//! The finished store: one HDF5 file with `embeddings` `[windows, n_vars, d_model]`
//! (chunked one window per chunk), `complete` `[windows]` (u8, 1 = written) and the header
//! as attributes of the root group.

use std::path::{Path, PathBuf};

use hdf5::types::{TypeDescriptor, VarLenUnicode};
use ndarray::{ArrayView1, ArrayView3, Ix3};

use crate::durable::{commit, remove_if_exists, tmp_path};
use crate::error::{Result, StoreError};
use crate::fingerprint::{Dtype, Fingerprint, SCHEMA_VERSION};
use crate::layout::Header;

/// Name of the embeddings dataset.
pub(crate) const EMBEDDINGS: &str = "embeddings";
/// Name of the per-window completion record.
const COMPLETE: &str = "complete";
/// Root attributes describing the window range (the rest are fingerprint fields).
const LAYOUT_ATTRS: [&str; 3] = ["windows_total", "window_start", "window_end"];
/// Values written per HDF5 call when assembling: about 4 MiB of f32.
const BLOCK_VALUES: usize = 1 << 20;

/// Writes the final file for `header` at `path` (through `<path>.tmp`, fsync, rename).
/// `fill(window, out)` provides window `window`'s values (`n_vars * d_model`, f32),
/// called in window order; memory stays at one block of windows.
pub(crate) fn write(
    path: &Path,
    header: &Header,
    fill: &mut dyn FnMut(usize, &mut [f32]) -> Result<()>,
) -> Result<()> {
    let tmp = tmp_path(path);
    remove_if_exists(&tmp)?;
    write_unsynced(&tmp, header, fill)?;
    commit(&tmp, path)
}

fn write_unsynced(
    tmp: &Path,
    header: &Header,
    fill: &mut dyn FnMut(usize, &mut [f32]) -> Result<()>,
) -> Result<()> {
    let h5 = |action| move |e| StoreError::hdf5(tmp, action, e);
    let file = hdf5::File::create(tmp).map_err(h5("create HDF5 file"))?;
    write_attributes(&file, header).map_err(h5("write attributes"))?;
    let dims = header.dims();
    let (n, d) = (dims.n_vars, dims.d_model);
    let dataset = match header.fingerprint.dtype {
        Dtype::F32 => file.new_dataset::<f32>(),
        Dtype::F16 => file.new_dataset::<half::f16>(),
    }
    .shape([dims.windows, n, d])
    .chunk([1, n, d])
    .obj_track_times(false)
    .create(EMBEDDINGS)
    .map_err(h5("create dataset `embeddings`"))?;

    let block = (BLOCK_VALUES / dims.window_len()).clamp(1, dims.windows);
    let mut values = vec![0f32; block * dims.window_len()];
    let mut local = 0;
    while local < dims.windows {
        let count = block.min(dims.windows - local);
        let buf = &mut values[..count * dims.window_len()];
        for (k, out) in buf.chunks_exact_mut(dims.window_len()).enumerate() {
            fill(header.window_start + local + k, out)?;
        }
        let selection = (local..local + count, .., ..);
        let shape = (count, n, d);
        let written = match header.fingerprint.dtype {
            Dtype::F32 => ArrayView3::from_shape(shape, &*buf)
                .map_err(|e| hdf5::Error::from(e.to_string()))
                .and_then(|view| dataset.write_slice(view, selection)),
            Dtype::F16 => {
                let halves: Vec<half::f16> = buf.iter().map(|v| half::f16::from_f32(*v)).collect();
                ArrayView3::from_shape(shape, &halves[..])
                    .map_err(|e| hdf5::Error::from(e.to_string()))
                    .and_then(|view| dataset.write_slice(view, selection))
            }
        };
        written.map_err(h5("write embeddings"))?;
        local += count;
    }

    let ones = vec![1u8; dims.windows];
    file.new_dataset_builder()
        .with_data(ArrayView1::from(&ones[..]))
        .obj_track_times(false)
        .create(COMPLETE)
        .map_err(h5("write dataset `complete`"))?;
    file.close().map_err(h5("close HDF5 file"))
}

fn write_attributes(file: &hdf5::File, header: &Header) -> hdf5::Result<()> {
    for (name, value) in header.fingerprint.to_json_map() {
        match value {
            serde_json::Value::String(s) => write_str(file, &name, &s)?,
            serde_json::Value::Number(v) => {
                let v = v
                    .as_u64()
                    .ok_or_else(|| format!("attribute {name}: {v} is not a u64"))?;
                write_u64(file, &name, v)?
            }
            serde_json::Value::Array(items) => {
                let strings = items
                    .iter()
                    .map(|item| unicode(item.as_str().unwrap_or_default()))
                    .collect::<hdf5::Result<Vec<_>>>()?;
                file.new_attr_builder()
                    .with_data(&strings[..])
                    .create(name.as_str())?;
            }
            other => return Err(format!("attribute {name}: unsupported value {other}").into()),
        }
    }
    write_u64(file, "windows_total", header.windows_total as u64)?;
    write_u64(file, "window_start", header.window_start as u64)?;
    write_u64(file, "window_end", header.window_end as u64)
}

fn unicode(s: &str) -> hdf5::Result<VarLenUnicode> {
    s.parse::<VarLenUnicode>()
        .map_err(|e| hdf5::Error::from(format!("string {s:?}: {e}")))
}

fn write_str(file: &hdf5::File, name: &str, value: &str) -> hdf5::Result<()> {
    file.new_attr::<VarLenUnicode>()
        .create(name)?
        .write_scalar(&unicode(value)?)
}

fn write_u64(file: &hdf5::File, name: &str, value: u64) -> hdf5::Result<()> {
    file.new_attr::<u64>().create(name)?.write_scalar(&value)
}

/// An open, validated final file.
pub(crate) struct FinalFile {
    path: PathBuf,
    dataset: hdf5::Dataset,
    header: Header,
    complete: Vec<bool>,
}

impl FinalFile {
    /// Opens `path` and checks attributes, shapes and types against each other.
    pub fn open(path: &Path) -> Result<Self> {
        let h5 = |action| move |e| StoreError::hdf5(path, action, e);
        let file = hdf5::File::open(path).map_err(h5("open HDF5 file"))?;
        let header = read_header(path, &file)?;
        let dims = header.dims();
        let dataset = file
            .dataset(EMBEDDINGS)
            .map_err(h5("open dataset `embeddings`"))?;
        let expected = [dims.windows, dims.n_vars, dims.d_model];
        if dataset.shape() != expected {
            return Err(StoreError::corrupt(
                path,
                format!(
                    "dataset `embeddings` has shape {:?}, attributes say {expected:?}",
                    dataset.shape()
                ),
            ));
        }
        let stored = dataset
            .dtype()
            .and_then(|t| t.to_descriptor())
            .map_err(h5("read type of `embeddings`"))?;
        let wanted = match header.fingerprint.dtype {
            Dtype::F32 => TypeDescriptor::Float(hdf5::types::FloatSize::U4),
            Dtype::F16 => TypeDescriptor::Float(hdf5::types::FloatSize::U2),
        };
        if stored != wanted {
            return Err(StoreError::corrupt(
                path,
                format!("dataset `embeddings` holds {stored:?}, attribute dtype says {wanted:?}"),
            ));
        }
        let complete_ds = file
            .dataset(COMPLETE)
            .map_err(h5("open dataset `complete`"))?;
        if complete_ds.shape() != [dims.windows] {
            return Err(StoreError::corrupt(
                path,
                format!(
                    "dataset `complete` has shape {:?}, expected [{}]",
                    complete_ds.shape(),
                    dims.windows
                ),
            ));
        }
        let complete = complete_ds
            .read_raw::<u8>()
            .map_err(h5("read dataset `complete`"))?
            .into_iter()
            .map(|flag| flag == 1)
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            dataset,
            header,
            complete,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Whether the completion record marks global window `window` as written.
    pub fn is_complete(&self, window: usize) -> bool {
        window
            .checked_sub(self.header.window_start)
            .and_then(|local| self.complete.get(local))
            .copied()
            .unwrap_or(false)
    }

    /// Number of windows marked written.
    pub fn completed(&self) -> usize {
        self.complete.iter().filter(|c| **c).count()
    }

    /// Reads global window `window` (must be complete) into `out`.
    pub fn read_window(&self, window: usize, out: &mut [f32]) -> Result<()> {
        let local = window - self.header.window_start;
        let selection = (local..local + 1, .., ..);
        let h5 = |e| StoreError::hdf5(&self.path, "read embeddings", e);
        match self.header.fingerprint.dtype {
            Dtype::F32 => {
                let array = self
                    .dataset
                    .read_slice::<f32, _, Ix3>(selection)
                    .map_err(h5)?;
                copy_into(&self.path, array.iter().copied(), out)
            }
            Dtype::F16 => {
                let array = self
                    .dataset
                    .read_slice::<half::f16, _, Ix3>(selection)
                    .map_err(h5)?;
                copy_into(&self.path, array.iter().map(|v| v.to_f32()), out)
            }
        }
    }
}

fn copy_into(
    path: &Path,
    values: impl ExactSizeIterator<Item = f32>,
    out: &mut [f32],
) -> Result<()> {
    if values.len() != out.len() {
        return Err(StoreError::corrupt(
            path,
            format!("read {} values, expected {}", values.len(), out.len()),
        ));
    }
    out.iter_mut().zip(values).for_each(|(o, v)| *o = v);
    Ok(())
}

fn read_header(path: &Path, file: &hdf5::File) -> Result<Header> {
    let h5 = |action| move |e| StoreError::hdf5(path, action, e);
    let mut map = serde_json::Map::new();
    for name in file.attr_names().map_err(h5("list attributes"))? {
        let attr = file.attr(&name).map_err(h5("open attribute"))?;
        let descriptor = attr
            .dtype()
            .and_then(|t| t.to_descriptor())
            .map_err(h5("read attribute type"))?;
        let value = match (descriptor, attr.ndim()) {
            (TypeDescriptor::Unsigned(_) | TypeDescriptor::Integer(_), 0) => {
                serde_json::Value::from(attr.read_scalar::<u64>().map_err(h5("read attribute"))?)
            }
            (TypeDescriptor::VarLenUnicode, 0) => serde_json::Value::from(
                attr.read_scalar::<VarLenUnicode>()
                    .map_err(h5("read attribute"))?
                    .as_str(),
            ),
            (TypeDescriptor::VarLenUnicode, 1) => serde_json::Value::from(
                attr.read_raw::<VarLenUnicode>()
                    .map_err(h5("read attribute"))?
                    .iter()
                    .map(|s| s.as_str().to_owned())
                    .collect::<Vec<_>>(),
            ),
            _ => continue,
        };
        map.insert(name, value);
    }
    let schema = map
        .get("schema_version")
        .and_then(|v| v.as_u64())
        .ok_or_else(|| StoreError::corrupt(path, "attribute `schema_version` is missing"))?;
    if schema != u64::from(SCHEMA_VERSION) {
        return Err(StoreError::UnsupportedSchema {
            path: path.to_path_buf(),
            found: schema,
            supported: SCHEMA_VERSION,
        });
    }
    let mut layout = [0usize; 3];
    for (slot, name) in layout.iter_mut().zip(LAYOUT_ATTRS) {
        *slot =
            map.remove(name).and_then(|v| v.as_u64()).ok_or_else(|| {
                StoreError::corrupt(path, format!("attribute `{name}` is missing"))
            })? as usize;
    }
    let fingerprint: Fingerprint = serde_json::from_value(serde_json::Value::Object(map))
        .map_err(|e| StoreError::corrupt(path, format!("fingerprint attributes: {e}")))?;
    let header = Header {
        fingerprint,
        windows_total: layout[0],
        window_start: layout[1],
        window_end: layout[2],
    };
    header
        .validate()
        .map_err(|reason| StoreError::corrupt(path, reason))?;
    Ok(header)
}
