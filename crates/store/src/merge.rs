//! Combining finished shard stores (disjoint, adjacent window ranges) into one store.

use std::path::{Path, PathBuf};

use crate::error::{FieldDiff, Result, StoreError};
use crate::final_file;
use crate::fingerprint::now_rfc3339;
use crate::layout::Header;
use crate::reader::StoreReader;

/// Merges the finished stores `inputs` into `output`. Their fingerprints (all fields but
/// `created` and `tool_version`) and `windows_total` must agree, and their window ranges
/// must tile one contiguous range (normally the whole split) without gap or overlap.
/// An existing `output` is replaced only with `overwrite`. Memory: one block of windows.
pub fn merge(inputs: &[PathBuf], output: &Path, overwrite: bool) -> Result<PathBuf> {
    if inputs.is_empty() {
        return Err(StoreError::invalid(output, "no input stores to merge"));
    }
    if output.exists() && !overwrite {
        return Err(StoreError::invalid(
            output,
            "output exists; pass overwrite (`--overwrite`) to replace it",
        ));
    }
    let mut readers = Vec::with_capacity(inputs.len());
    for input in inputs {
        if input == output {
            return Err(StoreError::invalid(output, "output is also an input"));
        }
        let reader = StoreReader::open(input)?;
        if !reader.is_finished() || reader.completed() != reader.dims().windows {
            return Err(StoreError::invalid(
                input,
                "store is not finished; finish it before merging",
            ));
        }
        readers.push(reader);
    }
    let first = &readers[0];
    for reader in &readers[1..] {
        let mut fields = first.fingerprint().differences(reader.fingerprint());
        if first.windows_total() != reader.windows_total() {
            fields.push(FieldDiff {
                field: "windows_total".into(),
                stored: reader.windows_total().to_string(),
                requested: first.windows_total().to_string(),
            });
        }
        if !fields.is_empty() {
            return Err(StoreError::FingerprintMismatch {
                path: reader.path().to_path_buf(),
                fields,
            });
        }
    }
    readers.sort_by_key(|r| r.window_range().start);
    for pair in readers.windows(2) {
        let (a, b) = (pair[0].window_range(), pair[1].window_range());
        if a.end != b.start {
            let what = if a.end > b.start {
                "overlap"
            } else {
                "leave a gap"
            };
            return Err(StoreError::invalid(
                pair[1].path(),
                format!(
                    "window ranges {a:?} ({}) and {b:?} {what}",
                    pair[0].path().display()
                ),
            ));
        }
    }
    let mut fingerprint = readers[0].fingerprint().clone();
    fingerprint.created = now_rfc3339();
    let header = Header {
        fingerprint,
        windows_total: readers[0].windows_total(),
        window_start: readers[0].window_range().start,
        window_end: readers[readers.len() - 1].window_range().end,
    };
    let mut current = 0;
    final_file::write(output, &header, &mut |window, out| {
        while !readers[current].window_range().contains(&window) {
            current += 1;
        }
        readers[current].read_into(window, out)
    })?;
    Ok(output.to_path_buf())
}
