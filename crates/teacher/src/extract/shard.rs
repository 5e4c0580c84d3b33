//! `--shard i/n`: this host's share of the windows when several hosts extract one split.
//! Merge the shards' stores with `timekd store merge` ([`timekd_store::merge`]).

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use super::error::ExtractError;

/// Shard `index` of `count` (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard, `0..count`.
    pub index: usize,
    /// Shards in all.
    pub count: usize,
}

impl FromStr for Shard {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || format!("invalid shard `{text}`: expected i/n with 0 <= i < n, e.g. 0/4");
        let (i, n) = text.trim().split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// From a Slurm array job: SLURM_ARRAY_TASK_ID of SLURM_ARRAY_TASK_COUNT, if both set.
    pub fn from_slurm_env() -> Result<Option<Shard>, ExtractError> {
        let (Ok(id), Ok(count)) = (
            std::env::var("SLURM_ARRAY_TASK_ID"),
            std::env::var("SLURM_ARRAY_TASK_COUNT"),
        ) else {
            return Ok(None);
        };
        let shard =
            format!("{id}/{count}")
                .parse::<Shard>()
                .map_err(|reason| ExtractError::Setting {
                    setting: "SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT",
                    reason: format!("{reason} (array indices must start at 0)"),
                })?;
        Ok(Some(shard))
    }

    /// The windows of `0..windows` this shard covers.
    pub fn range(&self, windows: usize) -> Result<Range<usize>, ExtractError> {
        Ok(timekd_store::shard_range(windows, self.index, self.count)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        assert_eq!(
            "1/4".parse::<Shard>().unwrap(),
            Shard { index: 1, count: 4 }
        );
        assert!("4/4".parse::<Shard>().is_err());
        assert!("x".parse::<Shard>().unwrap_err().contains("i/n"));
        let s = Shard { index: 3, count: 4 };
        assert_eq!(s.range(10).unwrap(), 8..10);
    }
}
