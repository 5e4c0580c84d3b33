//! The dataset flags shared by every command, and where `--data` is looked up.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use sha2::{Digest, Sha256};
use timekd_data::{Dataset, DatasetOptions, Preset};
use timekd_student::CheckpointState;

/// ETTh1, shipped inside the binary so the tool works with no data at hand.
const EMBEDDED_ETTH1: &[u8] = include_bytes!("../../../datasets/ETTh1.csv");

/// Which data to use and how to window it.
#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// A CSV file (`date` column + numeric columns), or a dataset name. `ETTh1` is built in;
    /// other names (weather, ETTm1, exchange_rate, ...) are looked up as
    /// `datasets/<name>.csv` under the current directory.
    #[arg(long, default_value = "ETTh1", value_name = "CSV|NAME")]
    pub data: String,
    /// Split rules and prompt wording to apply (default: from the file name, else custom).
    #[arg(long, value_name = "NAME")]
    pub dataset: Option<Preset>,
    /// Variables to model, comma-separated, in this order (default: every value column).
    #[arg(long, value_delimiter = ',', value_name = "A,B,...")]
    pub columns: Option<Vec<String>>,
    /// Target column, moved last for datasets outside the ETT family.
    #[arg(long, default_value = "OT")]
    pub target: String,
    /// History length L (rows the model sees).
    #[arg(long, default_value_t = 96, value_name = "L")]
    pub input_len: usize,
    /// Forecast length H (rows to predict).
    #[arg(long, value_name = "H")]
    pub output_len: usize,
}

/// A dataset plus where it came from.
pub struct LoadedData {
    /// The windowed dataset.
    pub dataset: Dataset,
    /// The CSV's bytes' origin, for messages: a path or `built-in ETTh1`.
    pub origin: String,
    /// SHA-256 of the CSV's bytes, hex: recorded in every store made from it.
    pub sha256: String,
}

impl DataArgs {
    /// Options for the data crate.
    pub fn options(&self) -> DatasetOptions {
        DatasetOptions {
            preset: self.dataset,
            columns: self.columns.clone(),
            target: self.target.clone(),
            input_len: self.input_len,
            output_len: self.output_len,
        }
    }

    /// The data flags a trained student needs: its variables, L and H from the checkpoint,
    /// the file (`data`) and split rules (`dataset`) from the command line.
    pub fn for_checkpoint(
        data: String,
        dataset: Option<Preset>,
        state: &CheckpointState,
    ) -> DataArgs {
        DataArgs {
            data,
            dataset,
            columns: Some(state.data.var_names.clone()),
            target: "OT".into(),
            input_len: state.config.model.input_len,
            output_len: state.config.model.output_len,
        }
    }

    /// Resolves `--data` and loads it.
    pub fn load(&self) -> anyhow::Result<LoadedData> {
        let options = self.options();
        let path = Path::new(&self.data);
        if path.is_file() {
            let bytes = std::fs::read(path)
                .with_context(|| format!("--data {}: cannot read", path.display()))?;
            return from_bytes(&bytes, path, &options, path.display().to_string());
        }
        let Ok(preset) = Preset::from_name(&self.data) else {
            bail!(
                "--data {}: no such file, and not a dataset name (expected a CSV path or one of \
                 ETTh1, ETTh2, ETTm1, ETTm2, weather, exchange_rate, national_illness)",
                self.data
            );
        };
        if preset == Preset::Etth1 {
            return from_bytes(
                EMBEDDED_ETTH1,
                Path::new("ETTh1.csv"),
                &options,
                "built-in ETTh1".into(),
            );
        }
        let candidate = PathBuf::from("datasets").join(format!("{}.csv", preset.name()));
        let bytes = std::fs::read(&candidate).with_context(|| {
            format!(
                "--data {}: only ETTh1 is built in; looked for {} — pass the CSV's path instead",
                self.data,
                candidate.display()
            )
        })?;
        from_bytes(
            &bytes,
            &candidate,
            &options,
            candidate.display().to_string(),
        )
    }
}

fn from_bytes(
    bytes: &[u8],
    source: &Path,
    options: &DatasetOptions,
    origin: String,
) -> anyhow::Result<LoadedData> {
    let dataset = Dataset::from_csv_bytes(bytes, source, options)?;
    let sha256 = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(LoadedData {
        dataset,
        origin,
        sha256,
    })
}
