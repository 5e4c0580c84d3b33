//! [`Features`]: which variables a model reads and which it is scored on, as
//! Time-Series-Library's `--features` flag says it.

use std::fmt;
use std::str::FromStr;

use crate::DataError;

/// Time-Series-Library's feature modes.
///
/// - `M`: every variable in, every variable forecast and scored (the default).
/// - `S`: the target column alone (`--target`), in and out.
/// - `MS`: every variable in, the target scored: the target is moved last (for every
///   dataset; Time-Series-Library moves it only outside the ETT family, where `OT` is last
///   anyway) and losses and metrics use the last variable (TSLib's `f_dim = -1`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub enum Features {
    /// Multivariate in, multivariate out.
    #[default]
    M,
    /// Univariate: the target alone.
    S,
    /// Multivariate in, the target scored.
    MS,
}

impl Features {
    /// `M`, `S` or `MS`.
    pub fn name(self) -> &'static str {
        match self {
            Features::M => "M",
            Features::S => "S",
            Features::MS => "MS",
        }
    }

    /// Whether losses and metrics score the last variable (the target) alone: `MS`. (In `S`
    /// the target is the only variable.)
    pub fn scores_last_only(self) -> bool {
        self == Features::MS
    }
}

impl fmt::Display for Features {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Features {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "M" => Ok(Features::M),
            "S" => Ok(Features::S),
            "MS" => Ok(Features::MS),
            _ => Err(DataError::UnknownName {
                what: "feature mode",
                name: s.to_string(),
                expected: "M, S, MS",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_case_insensitively() {
        for f in [Features::M, Features::S, Features::MS] {
            assert_eq!(f.name().to_lowercase().parse::<Features>().unwrap(), f);
        }
        let err = "SM".parse::<Features>().unwrap_err().to_string();
        assert!(err.contains("M, S, MS"), "{err}");
        assert!(Features::MS.scores_last_only() && !Features::S.scores_last_only());
    }
}
