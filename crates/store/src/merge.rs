//! Combining finished shard stores (disjoint, adjacent window ranges) into one store.

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::durable::{remove_if_exists, tmp_path};
use crate::error::{FieldDiff, Result, StoreError};
use crate::final_file;
use crate::fingerprint::now_rfc3339;
use crate::journal;
use crate::layout::Header;
use crate::reader::StoreReader;
use crate::verify::check_window;

/// Merges the finished stores `inputs` into `output`. Their fingerprints (all fields but
/// `created` and `tool_version`) and `windows_total` must agree, and their window ranges
/// must cover the whole split exactly once: missing and doubly covered windows are
/// [`StoreError::Coverage`], naming the ranges (and the inputs that overlap). Each window
/// read is checked against its input's recorded digest.
///
/// The output is locked like a store being written, so a second merge (or an extraction)
/// into it is refused with [`StoreError::Locked`]; an existing output, finished or in
/// progress, is replaced only with `overwrite`. Memory: one block of windows.
pub fn merge(inputs: &[PathBuf], output: &Path, overwrite: bool) -> Result<PathBuf> {
    if inputs.is_empty() {
        return Err(StoreError::invalid(output, "no input stores to merge"));
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
    readers.sort_by_key(|r| (r.window_range().start, r.window_range().end));
    check_coverage(output, &readers)?;

    if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| StoreError::io(parent, "create directory", e))?;
    }
    let dir = journal::parts_dir(output);
    let _lock = journal::lock(&dir)?;
    let result = write_merged(&readers, output, &dir, overwrite);
    if result.is_err() && matches!(journal::read_manifest(&dir), Ok(None)) {
        // Only the lock this merge created: leave no empty parts directory behind.
        let _ = journal::remove(&dir);
    }
    result
}

/// The missing and doubly covered ranges of `readers` (sorted by range) over the split.
fn check_coverage(output: &Path, readers: &[StoreReader]) -> Result<()> {
    let mut missing: Vec<Range<usize>> = Vec::new();
    let mut duplicate = Vec::new();
    // The reader reaching furthest so far, and how far.
    let mut furthest: Option<&StoreReader> = None;
    let mut covered = 0;
    for reader in readers {
        let range = reader.window_range();
        if range.start > covered {
            missing.push(covered..range.start);
        }
        if let Some(earlier) = furthest.filter(|_| range.start < covered) {
            duplicate.push((
                range.start..covered.min(range.end),
                earlier.path().to_path_buf(),
                reader.path().to_path_buf(),
            ));
        }
        if range.end > covered {
            covered = range.end;
            furthest = Some(reader);
        }
    }
    let total = readers[0].windows_total();
    if covered < total {
        missing.push(covered..total);
    }
    if missing.is_empty() && duplicate.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Coverage {
            path: output.to_path_buf(),
            missing,
            duplicate,
        })
    }
}

/// Replaces (with `overwrite`) what is at `output` and assembles the merged file, holding
/// the lock of its parts directory `dir`.
fn write_merged(
    readers: &[StoreReader],
    output: &Path,
    dir: &Path,
    overwrite: bool,
) -> Result<PathBuf> {
    let in_progress = journal::read_manifest(dir)?.is_some();
    if (output.exists() || in_progress) && !overwrite {
        let what = if in_progress {
            "an unfinished store is at the output (an extraction in progress or interrupted)"
        } else {
            "output exists"
        };
        return Err(StoreError::invalid(
            output,
            format!("{what}; pass overwrite (`--overwrite`) to replace it"),
        ));
    }
    journal::clear(dir)?;
    remove_if_exists(&tmp_path(output))?;
    let mut digests = Vec::with_capacity(readers.len());
    for reader in readers {
        digests.push(reader.window_digests()?);
    }
    let mut fingerprint = readers[0].fingerprint().clone();
    fingerprint.created = now_rfc3339();
    let header = Header {
        fingerprint,
        windows_total: readers[0].windows_total(),
        window_start: 0,
        window_end: readers[0].windows_total(),
    };
    let mut current = 0;
    let mut encoded = Vec::new();
    final_file::write(output, &header, &mut |window, out| {
        while !readers[current].window_range().contains(&window) {
            current += 1;
        }
        let reader = &readers[current];
        reader.read_into(window, out)?;
        check_window(
            reader,
            digests[current].as_deref(),
            window,
            out,
            &mut encoded,
        )
    })?;
    journal::remove(dir)?;
    Ok(output.to_path_buf())
}
