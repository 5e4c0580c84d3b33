//! Where a dataset's bytes come from: the one place that resolves `--data`, names the
//! dataset (the name its embedding stores and runs are filed under) and hashes its bytes.

use std::path::{Path, PathBuf};

use crate::digest::sha256_hex;
use crate::{DataError, Dataset, DatasetOptions, Frame, Preset};

/// ETTh1, built into the crate (feature `builtin-etth1`) so tools work with no data at hand.
#[cfg(feature = "builtin-etth1")]
const BUILTIN_ETTH1: &[u8] = include_bytes!("../../../datasets/ETTh1.csv");

/// A dataset's CSV bytes with their name, origin and SHA-256.
///
/// The name is the benchmark preset a file is named after (`weather.csv` → `weather`,
/// whatever `--dataset` rules are applied to it), else the file's stem (`mine.csv` →
/// `mine`). Extraction files stores under it and training looks for them under it, so the
/// two always agree.
#[derive(Debug, Clone)]
pub struct DataSource {
    name: String,
    origin: String,
    path: PathBuf,
    bytes: Vec<u8>,
    sha256: String,
}

impl DataSource {
    /// `text` as the tools take it: a CSV file's path, or a dataset name. `ETTh1` is built
    /// in (with the `builtin-etth1` feature); other names are looked up as
    /// `datasets/<name>.csv` under the current directory.
    pub fn resolve(text: &str) -> Result<DataSource, DataError> {
        let path = Path::new(text);
        if path.is_file() {
            return DataSource::file(path);
        }
        let Ok(preset) = Preset::from_name(text) else {
            return Err(DataError::UnknownSource {
                text: text.to_string(),
            });
        };
        #[cfg(feature = "builtin-etth1")]
        if preset == Preset::Etth1 {
            return Ok(DataSource::builtin_etth1());
        }
        let candidate = PathBuf::from("datasets").join(format!("{}.csv", preset.name()));
        DataSource::file(&candidate).map_err(|_| DataError::DatasetFileMissing {
            name: text.to_string(),
            looked: candidate,
        })
    }

    /// The CSV file at `path`.
    pub fn file(path: &Path) -> Result<DataSource, DataError> {
        let bytes = std::fs::read(path).map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(DataSource::from_bytes(
            path,
            bytes,
            path.display().to_string(),
        ))
    }

    /// CSV content already in memory; `path` names it (it picks the name and, unless told
    /// otherwise, the preset) and `origin` says where it came from in messages.
    pub fn from_bytes(path: &Path, bytes: Vec<u8>, origin: String) -> DataSource {
        DataSource {
            name: name_of(path),
            origin,
            path: path.to_path_buf(),
            sha256: sha256_hex(&bytes),
            bytes,
        }
    }

    /// The built-in copy of ETTh1.
    #[cfg(feature = "builtin-etth1")]
    pub fn builtin_etth1() -> DataSource {
        DataSource::from_bytes(
            Path::new("ETTh1.csv"),
            BUILTIN_ETTH1.to_vec(),
            "built-in ETTh1".to_string(),
        )
    }

    /// The dataset's name: what stores and runs are filed under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the bytes came from, for messages: a path or `built-in ETTh1`.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The path that names the data (for the built-in copy, `ETTh1.csv`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Lower-case hex SHA-256 of the CSV bytes, recorded in every store made from them.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Reads and windows the data.
    pub fn load(&self, options: &DatasetOptions) -> Result<Dataset, DataError> {
        Dataset::from_csv_bytes(&self.bytes, &self.path, options)
    }

    /// Reads the data as it is, unsplit (what a trained model forecasts from).
    pub fn frame(&self) -> Result<Frame, DataError> {
        Frame::from_csv_bytes(&self.bytes, &self.path)
    }
}

/// The preset a file is named after, else its stem.
fn name_of(path: &Path) -> String {
    match Preset::detect(path) {
        Preset::Custom => path
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .filter(|stem| !stem.is_empty())
            .unwrap_or_else(|| Preset::Custom.name().to_string()),
        preset => preset.name().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_file_not_the_rules_applied() {
        for (path, name) in [
            ("/data/mine.csv", "mine"),
            ("some/dir/weather.csv", "weather"),
            ("etth1.csv", "ETTh1"),
            ("exchange_rate.CSV", "exchange_rate"),
            ("noext", "noext"),
        ] {
            let source = DataSource::from_bytes(Path::new(path), Vec::new(), path.into());
            assert_eq!(source.name(), name, "{path}");
        }
    }

    #[test]
    fn unknown_names_and_missing_files_say_what_to_pass() {
        let err = DataSource::resolve("no/such/file.csv")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no/such/file.csv") && err.contains("ETTh1"),
            "{err}"
        );
        let cwd = std::env::current_dir().unwrap();
        // `datasets/weather.csv` under the current directory, which this test does not have.
        assert!(!cwd.join("datasets/weather.csv").exists());
        let err = DataSource::resolve("weather").unwrap_err().to_string();
        assert!(err.contains("datasets/weather.csv"), "{err}");
        assert!(err.contains("pass the CSV's path"), "{err}");
    }

    #[cfg(feature = "builtin-etth1")]
    #[test]
    fn the_builtin_etth1_is_the_repository_file() {
        let builtin = DataSource::resolve("ETTh1").unwrap();
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/ETTh1.csv");
        let on_disk = DataSource::file(&file).unwrap();
        assert_eq!(builtin.name(), "ETTh1");
        assert_eq!(on_disk.name(), "ETTh1");
        assert_eq!(builtin.sha256(), on_disk.sha256());
        assert_eq!(builtin.origin(), "built-in ETTh1");
    }
}
