//! Train / validation / test row ranges, by the benchmark's split rules.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use crate::{DataError, Preset, SplitFamily};

/// One of the three splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SplitKind {
    /// Rows the model and the scaler are fitted on.
    Train,
    /// Rows for model selection (early stopping).
    Val,
    /// Held-out rows for the final score.
    Test,
}

impl SplitKind {
    /// All splits in order.
    pub const ALL: [SplitKind; 3] = [SplitKind::Train, SplitKind::Val, SplitKind::Test];

    /// `train`, `val` or `test`.
    pub fn name(&self) -> &'static str {
        match self {
            SplitKind::Train => "train",
            SplitKind::Val => "val",
            SplitKind::Test => "test",
        }
    }

    pub(crate) fn position(&self) -> usize {
        *self as usize
    }
}

impl fmt::Display for SplitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SplitKind {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SplitKind::ALL
            .into_iter()
            .find(|k| k.name() == s.to_ascii_lowercase())
            .ok_or_else(|| DataError::UnknownName {
                what: "split",
                name: s.to_string(),
                expected: "train, val, test",
            })
    }
}

/// Row ranges (end-exclusive) of train, val and test for a file of `rows` rows.
///
/// ETT: month m = 30·24 (hourly) or 30·24·4 (15-min) rows; train [0, 12m),
/// val [12m − L, 16m), test [16m − L, 20m). Others: a = ⌊0.7·T⌋, b = ⌊0.2·T⌋,
/// v = T − a − b; train [0, a), val [a − L, a + v), test [T − b − L, T).
/// Val and test start L rows early so that their first window's history is real data.
pub(crate) fn split_ranges(
    preset: Preset,
    rows: usize,
    input_len: usize,
) -> Result<[Range<usize>; 3], PresetRowsError> {
    let month = match preset.family() {
        SplitFamily::EttHourly => Some(30 * 24),
        SplitFamily::EttMinute => Some(30 * 24 * 4),
        SplitFamily::Custom => None,
    };
    if let Some(m) = month {
        let needed = 20 * m;
        if rows < needed {
            return Err(PresetRowsError { needed });
        }
        return Ok([
            0..12 * m,
            (12 * m).saturating_sub(input_len)..16 * m,
            (16 * m).saturating_sub(input_len)..20 * m,
        ]);
    }
    let train = rows * 7 / 10;
    let test = rows * 2 / 10;
    let val = rows - train - test;
    Ok([
        0..train,
        train.saturating_sub(input_len)..train + val,
        (rows - test).saturating_sub(input_len)..rows,
    ])
}

/// The file is shorter than a preset's fixed borders.
pub(crate) struct PresetRowsError {
    pub needed: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ett_hourly_borders() {
        let [train, val, test] = split_ranges(Preset::Etth1, 17420, 96).ok().unwrap();
        assert_eq!((train, val, test), (0..8640, 8544..11520, 11424..14400));
    }

    #[test]
    fn custom_ratios_floor_like_the_release() {
        // T = 966 (national_illness), L = 36: a = 676, b = 193, v = 97.
        let [train, val, test] = split_ranges(Preset::Custom, 966, 36).ok().unwrap();
        assert_eq!((train, val, test), (0..676, 640..773, 737..966));
    }

    #[test]
    fn split_names_parse() {
        assert_eq!("VAL".parse::<SplitKind>().unwrap(), SplitKind::Val);
        assert!(
            "dev"
                .parse::<SplitKind>()
                .unwrap_err()
                .to_string()
                .contains("train, val, test")
        );
    }
}
