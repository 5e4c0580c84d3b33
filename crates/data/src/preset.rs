//! Dataset presets: the benchmark files' split family and prompt wording key.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use crate::DataError;

/// A known benchmark dataset, or `Custom` for any other CSV.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Preset {
    /// ETT hourly, transformer 1.
    Etth1,
    /// ETT hourly, transformer 2.
    Etth2,
    /// ETT 15-minute, transformer 1.
    Ettm1,
    /// ETT 15-minute, transformer 2.
    Ettm2,
    /// Max-Planck weather station, 10-minute, 21 variables.
    Weather,
    /// Daily exchange rates of 8 countries.
    ExchangeRate,
    /// Weekly influenza-like illness counts.
    NationalIllness,
    /// Any other CSV: ratio splits (70/10/20).
    Custom,
}

/// How a preset's rows are split into train, validation and test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitFamily {
    /// Fixed borders in months of 30·24 hourly rows.
    EttHourly,
    /// Fixed borders in months of 30·24·4 quarter-hour rows.
    EttMinute,
    /// 70% / rest / 20% of the rows.
    Custom,
}

const NAMES: &str = "ETTh1, ETTh2, ETTm1, ETTm2, weather, exchange_rate, national_illness, custom";

impl Preset {
    /// Every preset, in a fixed order.
    pub const ALL: [Preset; 8] = [
        Preset::Etth1,
        Preset::Etth2,
        Preset::Ettm1,
        Preset::Ettm2,
        Preset::Weather,
        Preset::ExchangeRate,
        Preset::NationalIllness,
        Preset::Custom,
    ];

    /// Parses a dataset name, case-insensitively (`ETTh1`, `weather`, `exchange_rate`, ...).
    pub fn from_name(name: &str) -> Result<Preset, DataError> {
        Preset::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| DataError::UnknownName {
                what: "dataset",
                name: name.to_string(),
                expected: NAMES,
            })
    }

    /// The preset a file's stem names (`.../ETTh1.csv` is ETTh1), else `Custom`.
    pub fn detect(path: &Path) -> Preset {
        path.file_stem()
            .and_then(|stem| stem.to_str())
            .and_then(|stem| Preset::from_name(stem).ok())
            .unwrap_or(Preset::Custom)
    }

    /// The canonical name, as the benchmark files are called.
    pub fn name(&self) -> &'static str {
        match self {
            Preset::Etth1 => "ETTh1",
            Preset::Etth2 => "ETTh2",
            Preset::Ettm1 => "ETTm1",
            Preset::Ettm2 => "ETTm2",
            Preset::Weather => "weather",
            Preset::ExchangeRate => "exchange_rate",
            Preset::NationalIllness => "national_illness",
            Preset::Custom => "custom",
        }
    }

    /// The split rules this preset follows.
    pub fn family(&self) -> SplitFamily {
        match self {
            Preset::Etth1 | Preset::Etth2 => SplitFamily::EttHourly,
            Preset::Ettm1 | Preset::Ettm2 => SplitFamily::EttMinute,
            _ => SplitFamily::Custom,
        }
    }

    /// Whether the target column is moved last (every dataset outside the ETT family).
    pub fn moves_target_last(&self) -> bool {
        self.family() == SplitFamily::Custom
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Preset {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Preset::from_name(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_detect_from_file_stem() {
        for preset in Preset::ALL {
            assert_eq!(Preset::from_name(preset.name()).unwrap(), preset);
        }
        assert_eq!(Preset::detect(Path::new("/x/ETTm2.csv")), Preset::Ettm2);
        assert_eq!(Preset::detect(Path::new("weather.csv")), Preset::Weather);
        assert_eq!(Preset::detect(Path::new("sales.csv")), Preset::Custom);
        let err = Preset::from_name("ETTh9").unwrap_err().to_string();
        assert!(err.contains("ETTh9") && err.contains("ETTh1"), "{err}");
    }
}
