//! What a store was computed from: the [`Fingerprint`], its comparison, and file hashing.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{FieldDiff, Result, StoreError};

/// Version of the on-disk layout (HDF5 attributes and datasets, part files) this build
/// writes and reads.
pub const SCHEMA_VERSION: u32 = 2;

/// Fields recorded for provenance but not compared when an existing store is reopened:
/// they do not change the embeddings.
const PROVENANCE_FIELDS: [&str; 2] = ["created", "tool_version"];

/// Element type of the stored embeddings. Readers always return `f32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// IEEE binary32 (default; lossless).
    F32,
    /// IEEE binary16: half the disk; values are rounded to nearest, ties to even.
    F16,
}

impl Dtype {
    /// Bytes per stored value.
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 => 2,
        }
    }

    /// Appends `values`, converted to this type, to `out` as little-endian bytes.
    pub(crate) fn encode(self, values: &[f32], out: &mut Vec<u8>) {
        match self {
            Dtype::F32 => values
                .iter()
                .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
            Dtype::F16 => values
                .iter()
                .for_each(|v| out.extend_from_slice(&half::f16::from_f32(*v).to_le_bytes())),
        }
    }

    /// Decodes little-endian bytes of this type into `out` (`out.len() * size() == bytes.len()`).
    pub(crate) fn decode(self, bytes: &[u8], out: &mut [f32]) {
        match self {
            Dtype::F32 => {
                for (v, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                    *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
            Dtype::F16 => {
                for (v, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *v = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
                }
            }
        }
    }
}

/// Everything the embeddings of one store depend on, stored as HDF5 attributes of the
/// file's root group (one attribute per field, same names as here).
///
/// Reopening a store compares every field except `created` and `tool_version`, which are
/// provenance. The writer sets `schema_version` to [`SCHEMA_VERSION`] and `created` to the
/// time the store was first created, whatever the caller put there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// On-disk layout version ([`SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// Dataset name, e.g. `ETTh1`.
    pub dataset: String,
    /// Lower-case hex SHA-256 of the data file (see [`sha256_file`]).
    pub data_sha256: String,
    /// Variable (column) names, in store order; `columns.len() == n_vars`.
    pub columns: Vec<String>,
    /// Split name: `train`, `val` or `test`.
    pub split: String,
    /// First data row of the split (inclusive).
    pub split_start: usize,
    /// One past the last data row of the split.
    pub split_end: usize,
    /// Input length L.
    pub input_len: usize,
    /// Output length H.
    pub output_len: usize,
    /// Variables per window, N.
    pub n_vars: usize,
    /// Embedding width, d.
    pub d_model: usize,
    /// How numbers are written into prompts (e.g. decimals), as an identifier.
    pub value_format: String,
    /// Prompt template identifier.
    pub prompt_template: String,
    /// Language-model identifier, e.g. `gpt2`.
    pub model_id: String,
    /// Lower-case hex SHA-256 of the weights file.
    pub weights_sha256: String,
    /// Transformer layers used.
    pub layers: usize,
    /// Seed of the subtractive cross attention.
    pub sca_seed: u64,
    /// Float type of the language model's matrix products, e.g. `f32` or `bf16`.
    pub compute_precision: String,
    /// Stored element type.
    pub dtype: Dtype,
    /// Version of the tool that created the store (provenance, not compared).
    pub tool_version: String,
    /// RFC 3339 UTC time the store was first created (provenance, not compared).
    pub created: String,
}

impl Fingerprint {
    /// Fields that differ between `self` (stored) and `requested`, ignoring provenance
    /// fields (`created`, `tool_version`), sorted by field name. Empty when the store may
    /// be reused.
    pub fn differences(&self, requested: &Fingerprint) -> Vec<FieldDiff> {
        let stored = to_map(self);
        let requested = to_map(requested);
        let mut diffs: Vec<FieldDiff> = stored
            .iter()
            .filter(|(field, _)| !PROVENANCE_FIELDS.contains(&field.as_str()))
            .filter_map(|(field, value)| {
                let other = requested
                    .get(field)
                    .cloned()
                    .unwrap_or(serde_json::Value::Null);
                (*value != other).then(|| FieldDiff {
                    field: field.clone(),
                    stored: value.to_string(),
                    requested: other.to_string(),
                })
            })
            .collect();
        diffs.sort_by(|a, b| a.field.cmp(&b.field));
        diffs
    }

    /// The fingerprint as a JSON object (field name to value).
    pub(crate) fn to_json_map(&self) -> serde_json::Map<String, serde_json::Value> {
        to_map(self)
    }
}

fn to_map(fingerprint: &Fingerprint) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(fingerprint) {
        Ok(serde_json::Value::Object(map)) => map,
        // A struct of strings, integers and a string list always serializes to an object.
        _ => unreachable!("Fingerprint serializes to a JSON object"),
    }
}

/// The current time as RFC 3339 UTC with whole seconds, the format of `created`.
pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Lower-case hex SHA-256 of a file's bytes, read in 1 MiB blocks.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(|e| StoreError::io(path, "open file to hash", e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| StoreError::io(path, "read file to hash", e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Lower-case hex of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small, valid fingerprint for tests.
    pub(crate) fn sample(n_vars: usize, d_model: usize, dtype: Dtype) -> Fingerprint {
        Fingerprint {
            schema_version: SCHEMA_VERSION,
            dataset: "synthetic".into(),
            data_sha256: "00".repeat(32),
            columns: (0..n_vars).map(|i| format!("v{i}")).collect(),
            split: "train".into(),
            split_start: 0,
            split_end: 100,
            input_len: 96,
            output_len: 24,
            n_vars,
            d_model,
            value_format: "plain".into(),
            prompt_template: "timekd-v1".into(),
            model_id: "gpt2".into(),
            weights_sha256: "11".repeat(32),
            layers: 12,
            sca_seed: 7,
            compute_precision: "f32".into(),
            dtype,
            tool_version: "0.1.0".into(),
            created: "2024-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn differences_name_fields_and_skip_provenance() {
        let a = sample(3, 8, Dtype::F32);
        let mut b = a.clone();
        b.created = "2030-01-01T00:00:00Z".into();
        b.tool_version = "9.9.9".into();
        assert!(a.differences(&b).is_empty());
        b.output_len = 48;
        b.dtype = Dtype::F16;
        let fields: Vec<_> = a.differences(&b).into_iter().map(|d| d.field).collect();
        assert_eq!(fields, ["dtype", "output_len"]);
    }

    #[test]
    fn f16_round_trip_is_exact_for_representable_values() {
        let values = [0.5f32, -2.0, 65504.0, 1.0 / 1024.0];
        let mut bytes = Vec::new();
        Dtype::F16.encode(&values, &mut bytes);
        let mut back = [0f32; 4];
        Dtype::F16.decode(&bytes, &mut back);
        assert_eq!(values, back);
    }

    #[test]
    fn sha256_of_known_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abc");
        std::fs::write(&path, b"abc").unwrap();
        assert_eq!(
            sha256_file(&path).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
