//! The finished store: one HDF5 file with `embeddings` `[windows, n_vars, d_model]`
//! (chunked one window per chunk), `complete` `[windows]` (u8, 1 = written),
//! `window_sha256` `[windows, 32]` (u8, each window's digest), and the header plus
//! `embeddings_sha256` as attributes of the root group.

use std::path::{Path, PathBuf};

use hdf5::types::{TypeDescriptor, VarLenUnicode};
use ndarray::{ArrayView1, ArrayView2, ArrayView3, Ix2, Ix3};
use sha2::{Digest, Sha256};

use crate::durable::{check_free_space, commit, remove_if_exists, tmp_path};
use crate::error::{DiskFull, Result, StoreError};
use crate::fingerprint::{Dtype, Fingerprint, SCHEMA_VERSION, hex};
use crate::layout::Header;

/// Name of the embeddings dataset.
pub(crate) const EMBEDDINGS: &str = "embeddings";
/// Name of the per-window completion record.
const COMPLETE: &str = "complete";
/// Name of the per-window digests: SHA-256 of each window's stored bytes (little-endian).
const WINDOW_SHA256: &str = "window_sha256";
/// Root attribute: lower-case hex SHA-256 of every window's stored bytes (little-endian
/// values in the store's dtype), in window order; absent in stores finished before it was
/// recorded.
pub(crate) const CHECKSUM: &str = "embeddings_sha256";
/// Bytes of a SHA-256 digest.
pub(crate) const DIGEST_LEN: usize = 32;
/// Root attributes describing the window range (the rest are fingerprint fields).
const LAYOUT_ATTRS: [&str; 3] = ["windows_total", "window_start", "window_end"];
/// Values written per HDF5 call when assembling: about 4 MiB of f32.
const BLOCK_VALUES: usize = 1 << 20;

/// Writes the final file for `header` at `path` (through `<path>.tmp`, fsync, rename).
/// `fill(window, out)` provides window `window`'s values (`n_vars * d_model`, f32),
/// called in window order; memory stays at one block of windows. Refused up front when the
/// file system has less free space than the file needs; a write that fails for want of
/// space (disk, quota, file-size limit) is [`StoreError::DiskFull`] naming `path` and that
/// size, and removes the temporary file.
pub(crate) fn write(
    path: &Path,
    header: &Header,
    fill: &mut dyn FnMut(usize, &mut [f32]) -> Result<()>,
) -> Result<()> {
    let tmp = tmp_path(path);
    remove_if_exists(&tmp)?;
    let bytes = estimated_size(header);
    check_free_space(path, bytes)?;
    if let Err(e) = write_unsynced(&tmp, header, fill) {
        let _ = std::fs::remove_file(&tmp);
        return Err(disk_full_or(e, path, bytes));
    }
    commit(&tmp, path)
}

/// About how many bytes the final file of `header` takes: values, digests, completion
/// record, chunk index and attributes.
pub(crate) fn estimated_size(header: &Header) -> u64 {
    let dims = header.dims();
    let values = dims.window_len() * header.fingerprint.dtype.size();
    (dims.windows * (values + DIGEST_LEN + 1 + 48) + (32 << 10)) as u64
}

/// `error`, or [`StoreError::DiskFull`] when it is an HDF5 error whose stack reports the
/// system error `ENOSPC`, `EDQUOT` or `EFBIG` (HDF5's file drivers write `errno = N`).
pub(crate) fn disk_full_or(error: StoreError, path: &Path, bytes: u64) -> StoreError {
    let StoreError::Hdf5 { source, .. } = &error else {
        return error;
    };
    let errno = source.stack().and_then(|stack| {
        stack.iter().find_map(|frame| {
            let (_, rest) = frame.desc().split_once("errno = ")?;
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<i32>().ok()
        })
    });
    match errno.map(std::io::Error::from_raw_os_error) {
        Some(os) => match DiskFull::from_io(path, bytes, os) {
            Ok(full) => StoreError::DiskFull(full),
            Err(_) => error,
        },
        None => error,
    }
}

fn write_unsynced(
    tmp: &Path,
    header: &Header,
    fill: &mut dyn FnMut(usize, &mut [f32]) -> Result<()>,
) -> Result<()> {
    let h5 = |action| move |e| StoreError::hdf5(tmp, action, e);
    let file = hdf5::File::create(tmp).map_err(h5("create HDF5 file"))?;
    write_attributes(&file, header).map_err(h5("write attributes"))?;
    timekd_fault::point("store.assemble.created");
    let dims = header.dims();
    let (n, d) = (dims.n_vars, dims.d_model);
    let dtype = header.fingerprint.dtype;
    let dataset = match dtype {
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
    let mut encoded = Vec::with_capacity(dims.window_len() * dtype.size());
    let mut digests = Vec::with_capacity(dims.windows * DIGEST_LEN);
    let mut total = Sha256::new();
    let mut local = 0;
    while local < dims.windows {
        let count = block.min(dims.windows - local);
        let buf = &mut values[..count * dims.window_len()];
        for (k, out) in buf.chunks_exact_mut(dims.window_len()).enumerate() {
            fill(header.window_start + local + k, out)?;
            digests.extend_from_slice(&window_digest(dtype, out, &mut encoded));
            total.update(&encoded);
        }
        let selection = (local..local + count, .., ..);
        let shape = (count, n, d);
        let written = match dtype {
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
        timekd_fault::point("store.assemble.block");
    }

    let ones = vec![1u8; dims.windows];
    file.new_dataset_builder()
        .with_data(ArrayView1::from(&ones[..]))
        .obj_track_times(false)
        .create(COMPLETE)
        .map_err(h5("write dataset `complete`"))?;
    let digests = ArrayView2::from_shape((dims.windows, DIGEST_LEN), &digests[..])
        .map_err(|e| StoreError::invalid(tmp, e.to_string()))?;
    file.new_dataset_builder()
        .with_data(digests)
        .obj_track_times(false)
        .create(WINDOW_SHA256)
        .map_err(h5("write dataset `window_sha256`"))?;
    write_str(&file, CHECKSUM, &hex(&total.finalize())).map_err(h5("write checksum"))?;
    timekd_fault::point("store.assemble.written");
    close(file, dataset).map_err(h5("flush and close HDF5 file"))
}

/// Flushes and closes `file`, closing `objects` of it first. HDF5 writes much of a file
/// from its caches only when the last handle closes; closed in `Drop`, that write's errors
/// (a full disk) would be lost and a truncated file taken for a finished one.
pub(crate) fn close<T>(file: hdf5::File, objects: T) -> hdf5::Result<()> {
    drop(objects);
    file.flush()?;
    file.close()
}

/// SHA-256 of `values` stored as `dtype` (little-endian); `encoded` is left holding those
/// bytes.
pub(crate) fn window_digest(
    dtype: Dtype,
    values: &[f32],
    encoded: &mut Vec<u8>,
) -> [u8; DIGEST_LEN] {
    encoded.clear();
    dtype.encode(values, encoded);
    Sha256::digest(&encoded[..]).into()
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
    file: hdf5::File,
    dataset: hdf5::Dataset,
    header: Header,
    complete: Vec<bool>,
    checksum: Option<String>,
}

impl FinalFile {
    /// Opens `path` and checks attributes, shapes and types against each other.
    pub fn open(path: &Path) -> Result<Self> {
        let h5 = |action| move |e| StoreError::hdf5(path, action, e);
        let file = hdf5::File::open(path).map_err(h5("open HDF5 file"))?;
        let (header, checksum) = read_header(path, &file)?;
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
            file,
            dataset,
            header,
            complete,
            checksum,
        })
    }

    /// The recorded checksum of all embeddings (hex), `None` in stores finished before
    /// checksums were recorded.
    pub fn checksum(&self) -> Option<&str> {
        self.checksum.as_deref()
    }

    /// The recorded digest of every window, in window order (`None` without a checksum).
    pub fn window_digests(&self) -> Result<Option<Vec<[u8; DIGEST_LEN]>>> {
        if self.checksum.is_none() {
            return Ok(None);
        }
        let h5 = |action| move |e| StoreError::hdf5(&self.path, action, e);
        let dataset = self
            .file
            .dataset(WINDOW_SHA256)
            .map_err(h5("open dataset `window_sha256`"))?;
        let expected = [self.header.dims().windows, DIGEST_LEN];
        if dataset.shape() != expected {
            return Err(StoreError::corrupt(
                &self.path,
                format!(
                    "dataset `window_sha256` has shape {:?}, expected {expected:?}",
                    dataset.shape()
                ),
            ));
        }
        let table = dataset
            .read::<u8, Ix2>()
            .map_err(h5("read dataset `window_sha256`"))?;
        Ok(Some(
            table
                .rows()
                .into_iter()
                .map(|row| {
                    let mut digest = [0u8; DIGEST_LEN];
                    digest.iter_mut().zip(row).for_each(|(d, v)| *d = *v);
                    digest
                })
                .collect(),
        ))
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

/// The header and the checksum attribute (if any) of a final file.
fn read_header(path: &Path, file: &hdf5::File) -> Result<(Header, Option<String>)> {
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
    let checksum = match map.remove(CHECKSUM) {
        Some(serde_json::Value::String(hex)) => Some(hex),
        Some(other) => {
            return Err(StoreError::corrupt(
                path,
                format!("attribute `{CHECKSUM}` is {other}, not a hex string"),
            ));
        }
        None => None,
    };
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
    Ok((header, checksum))
}
