//! One part file: a durable batch of completed windows, written while a store is in progress.
//!
//! Layout (little-endian):
//! `b"TKDPART1"`, `n_vars: u64`, `d_model: u64`, `dtype: u64` (0 = f32, 1 = f16),
//! `count: u64`, `windows: [u64; count]` (global indices), payload `[count, n_vars, d_model]`
//! in `dtype`, then the SHA-256 of every preceding byte.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::durable::write_atomic;
use crate::error::{Result, StoreError};
use crate::fingerprint::Dtype;

const MAGIC: &[u8; 8] = b"TKDPART1";
const FIXED_HEADER: usize = 8 + 4 * 8;
const CHECKSUM: usize = 32;

/// Shape and element type every part of a store must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PartShape {
    pub n_vars: usize,
    pub d_model: usize,
    pub dtype: Dtype,
}

impl PartShape {
    pub fn window_values(&self) -> usize {
        self.n_vars * self.d_model
    }

    pub fn window_bytes(&self) -> usize {
        self.window_values() * self.dtype.size()
    }

    fn dtype_code(&self) -> u64 {
        match self.dtype {
            Dtype::F32 => 0,
            Dtype::F16 => 1,
        }
    }
}

/// A validated part file: which windows it holds and where their values start.
#[derive(Clone, Debug)]
pub(crate) struct Part {
    pub path: PathBuf,
    pub windows: Vec<usize>,
    payload_offset: u64,
}

impl Part {
    /// Reads the `position`-th window of this part into `out` (`shape.window_values()` long).
    pub fn read_window(&self, shape: &PartShape, position: usize, out: &mut [f32]) -> Result<()> {
        let file = File::open(&self.path).map_err(|e| {
            StoreError::io(
                &self.path,
                "open part file (if the writer just finished, reopen the store)",
                e,
            )
        })?;
        let mut bytes = vec![0u8; shape.window_bytes()];
        let offset = self.payload_offset + (position * shape.window_bytes()) as u64;
        file.read_exact_at(&mut bytes, offset)
            .map_err(|e| StoreError::io(&self.path, "read part file", e))?;
        shape.dtype.decode(&bytes, out);
        Ok(())
    }
}

/// Writes a part holding `windows` (global indices) whose encoded values are `payload`,
/// durably and atomically.
pub(crate) fn write(
    path: &Path,
    shape: &PartShape,
    windows: &[usize],
    payload: &[u8],
) -> Result<Part> {
    debug_assert_eq!(payload.len(), windows.len() * shape.window_bytes());
    let mut bytes = Vec::with_capacity(FIXED_HEADER + 8 * windows.len() + payload.len() + CHECKSUM);
    bytes.extend_from_slice(MAGIC);
    for v in [
        shape.n_vars as u64,
        shape.d_model as u64,
        shape.dtype_code(),
        windows.len() as u64,
    ] {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    for &w in windows {
        bytes.extend_from_slice(&(w as u64).to_le_bytes());
    }
    let payload_offset = bytes.len() as u64;
    bytes.extend_from_slice(payload);
    let digest = Sha256::digest(&bytes);
    bytes.extend_from_slice(&digest);
    write_atomic(path, &bytes)?;
    Ok(Part {
        path: path.to_path_buf(),
        windows: windows.to_vec(),
        payload_offset,
    })
}

/// Opens and validates a part file against `shape`: magic, header, exact size, and (with
/// `verify`) the checksum. `Err` holds why the file is unusable.
pub(crate) fn open(
    path: &Path,
    shape: &PartShape,
    verify: bool,
) -> std::result::Result<Part, String> {
    let mut file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let size = file
        .metadata()
        .map_err(|e| format!("cannot stat: {e}"))?
        .len();
    let mut fixed = [0u8; FIXED_HEADER];
    file.read_exact(&mut fixed)
        .map_err(|_| format!("truncated header ({size} bytes)"))?;
    if &fixed[..8] != MAGIC {
        return Err("not a part file (bad magic)".into());
    }
    let field =
        |i: usize| u64::from_le_bytes(fixed[8 + 8 * i..16 + 8 * i].try_into().unwrap_or([0; 8]));
    let (n_vars, d_model, dtype, count) = (field(0), field(1), field(2), field(3));
    if n_vars != shape.n_vars as u64
        || d_model != shape.d_model as u64
        || dtype != shape.dtype_code()
    {
        return Err(format!(
            "shape/dtype ({n_vars}, {d_model}, code {dtype}) differ from the store's ({}, {}, code {})",
            shape.n_vars,
            shape.d_model,
            shape.dtype_code()
        ));
    }
    let expected = count
        .checked_mul(8 + shape.window_bytes() as u64)
        .and_then(|v| v.checked_add((FIXED_HEADER + CHECKSUM) as u64));
    if expected != Some(size) {
        return Err(format!(
            "size {size} bytes does not match its header ({count} windows)"
        ));
    }
    let mut index = vec![0u8; 8 * count as usize];
    file.read_exact(&mut index)
        .map_err(|e| format!("cannot read window list: {e}"))?;
    let windows: Vec<usize> = index
        .chunks_exact(8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as usize)
        .collect();
    if verify {
        verify_checksum(path, size)?;
    }
    Ok(Part {
        path: path.to_path_buf(),
        windows,
        payload_offset: (FIXED_HEADER + index.len()) as u64,
    })
}

fn verify_checksum(path: &Path, size: u64) -> std::result::Result<(), String> {
    let mut file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let mut hasher = Sha256::new();
    let mut remaining = size - CHECKSUM as u64;
    let mut buf = vec![0u8; 1 << 20];
    while remaining > 0 {
        let n = remaining.min(buf.len() as u64) as usize;
        file.read_exact(&mut buf[..n])
            .map_err(|e| format!("cannot read: {e}"))?;
        hasher.update(&buf[..n]);
        remaining -= n as u64;
    }
    let mut stored = [0u8; CHECKSUM];
    file.read_exact(&mut stored)
        .map_err(|e| format!("cannot read checksum: {e}"))?;
    if hasher.finalize().as_slice() != stored {
        return Err("checksum mismatch".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> PartShape {
        PartShape {
            n_vars: 2,
            d_model: 3,
            dtype: Dtype::F32,
        }
    }

    fn sample(dir: &Path) -> (PathBuf, Vec<f32>) {
        let path = dir.join("part-00000000.bin");
        let values: Vec<f32> = (0..12).map(|v| v as f32 * 0.5).collect();
        let mut payload = Vec::new();
        Dtype::F32.encode(&values, &mut payload);
        write(&path, &shape(), &[4, 9], &payload).unwrap();
        (path, values)
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let (path, values) = sample(dir.path());
        let part = open(&path, &shape(), true).unwrap();
        assert_eq!(part.windows, [4, 9]);
        let mut out = vec![0f32; 6];
        part.read_window(&shape(), 1, &mut out).unwrap();
        assert_eq!(out, values[6..]);
    }

    #[test]
    fn damage_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = sample(dir.path());
        let bytes = std::fs::read(&path).unwrap();

        std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
        assert!(open(&path, &shape(), false).unwrap_err().contains("size"));

        let mut flipped = bytes.clone();
        flipped[60] ^= 0xff;
        std::fs::write(&path, &flipped).unwrap();
        assert!(open(&path, &shape(), false).is_ok());
        assert!(
            open(&path, &shape(), true)
                .unwrap_err()
                .contains("checksum")
        );

        std::fs::write(&path, b"garbage").unwrap();
        assert!(
            open(&path, &shape(), false)
                .unwrap_err()
                .contains("truncated")
        );

        let other = PartShape {
            dtype: Dtype::F16,
            ..shape()
        };
        std::fs::write(&path, &bytes).unwrap();
        assert!(open(&path, &other, false).unwrap_err().contains("differ"));
    }
}
