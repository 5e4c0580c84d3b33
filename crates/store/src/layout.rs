//! Which windows a store holds: [`Dims`], the header shared by the final file and the
//! parts directory, and shard ranges.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::error::{FieldDiff, Result, StoreError};
use crate::fingerprint::Fingerprint;

/// Shape of a store: `embeddings` is `[windows, n_vars, d_model]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Dims {
    /// Windows this store covers (the length of its window range).
    pub windows: usize,
    /// Variables per window, N.
    pub n_vars: usize,
    /// Embedding width, d.
    pub d_model: usize,
}

impl Dims {
    /// Values per window, `n_vars * d_model`.
    pub fn window_len(&self) -> usize {
        self.n_vars * self.d_model
    }
}

/// Fingerprint plus the window range a store covers. A whole split covers
/// `0..windows_total`; a shard covers a sub-range, with global window indices.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Header {
    pub fingerprint: Fingerprint,
    pub windows_total: usize,
    pub window_start: usize,
    pub window_end: usize,
}

impl Header {
    pub fn range(&self) -> Range<usize> {
        self.window_start..self.window_end
    }

    pub fn dims(&self) -> Dims {
        Dims {
            windows: self.window_end - self.window_start,
            n_vars: self.fingerprint.n_vars,
            d_model: self.fingerprint.d_model,
        }
    }

    /// Checks internal consistency; `Err` says what is inconsistent.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let f = &self.fingerprint;
        if f.n_vars == 0 || f.d_model == 0 {
            Err(format!(
                "n_vars ({}) and d_model ({}) must be positive",
                f.n_vars, f.d_model
            ))
        } else if f.columns.len() != f.n_vars {
            Err(format!(
                "{} column names for n_vars = {}",
                f.columns.len(),
                f.n_vars
            ))
        } else if self.window_start >= self.window_end || self.window_end > self.windows_total {
            Err(format!(
                "window range {}..{} is empty or exceeds windows_total {}",
                self.window_start, self.window_end, self.windows_total
            ))
        } else {
            Ok(())
        }
    }

    /// Differences between `self` (stored) and `requested`: fingerprint fields, then layout.
    pub fn differences(&self, requested: &Header) -> Vec<FieldDiff> {
        let mut diffs = self.fingerprint.differences(&requested.fingerprint);
        for (field, stored, asked) in [
            ("windows_total", self.windows_total, requested.windows_total),
            ("window_start", self.window_start, requested.window_start),
            ("window_end", self.window_end, requested.window_end),
        ] {
            if stored != asked {
                diffs.push(FieldDiff {
                    field: field.into(),
                    stored: stored.to_string(),
                    requested: asked.to_string(),
                });
            }
        }
        diffs
    }
}

/// Window range of shard `index` of `count` over `windows` windows: contiguous, disjoint,
/// covering `0..windows`, sizes differing by at most one (the first shards get the extra).
pub fn shard_range(windows: usize, index: usize, count: usize) -> Result<Range<usize>> {
    if count == 0 || index >= count || count > windows {
        return Err(StoreError::InvalidShard {
            index,
            count,
            windows,
        });
    }
    let base = windows / count;
    let extra = windows % count;
    let start = index * base + index.min(extra);
    let len = base + usize::from(index < extra);
    Ok(start..start + len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_all_windows_once() {
        for windows in [1usize, 7, 10, 101] {
            for count in 1..=windows.min(9) {
                let mut next = 0;
                for index in 0..count {
                    let r = shard_range(windows, index, count).unwrap();
                    assert_eq!(r.start, next);
                    assert!(!r.is_empty());
                    next = r.end;
                }
                assert_eq!(next, windows);
            }
        }
        assert!(shard_range(5, 5, 5).is_err());
        assert!(shard_range(5, 0, 6).is_err());
    }
}
