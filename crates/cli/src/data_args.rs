//! The dataset flags shared by every command; `--data` is resolved by
//! [`DataSource::resolve`](timekd_data::DataSource::resolve).

use std::path::{Path, PathBuf};

use anyhow::bail;
use clap::Args;
use timekd_data::{DataSource, Dataset, DatasetOptions, Preset};
use timekd_student::CheckpointState;

/// Which data to use and how to window it.
#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// A CSV file (`date` column + numeric columns), or a dataset name. `ETTh1` is built in;
    /// other names (weather, ETTm1, exchange_rate, ...) are looked up as
    /// `datasets/<name>.csv` under the current directory.
    #[arg(
        long,
        visible_alias = "data_path",
        default_value = "ETTh1",
        value_name = "CSV|NAME"
    )]
    pub data: String,
    /// Directory that --data is relative to (Time-Series-Library's `--root_path`:
    /// `--root_path ./dataset/ETT-small/ --data_path ETTh1.csv`).
    #[arg(long, visible_alias = "root_path", value_name = "DIR")]
    pub root_path: Option<PathBuf>,
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
    #[arg(
        long,
        visible_alias = "seq_len",
        default_value_t = 96,
        value_name = "L"
    )]
    pub input_len: usize,
    /// Forecast length H (rows to predict); `timekd extract` and `timekd train` take a list
    /// (24,36,48).
    #[arg(
        long,
        visible_alias = "pred_len",
        value_name = "H",
        value_delimiter = ',',
        required = true
    )]
    pub output_len: Vec<usize>,
}

/// A dataset plus where it came from.
pub struct LoadedData {
    /// The windowed dataset (at the shortest `--output-len`).
    pub dataset: Dataset,
    /// Its bytes' origin, name and hash.
    pub source: DataSource,
}

impl DataArgs {
    /// The one output length of a command that takes one.
    pub fn output_len(&self) -> anyhow::Result<usize> {
        match self.output_len.as_slice() {
            [h] => Ok(*h),
            many => bail!(
                "--output-len {many:?}: this command takes one length (`timekd extract` and `timekd train` take a list)"
            ),
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
            root_path: None,
            dataset,
            columns: Some(state.data.var_names.clone()),
            target: "OT".into(),
            input_len: state.config.model.input_len,
            output_len: vec![state.config.model.output_len],
        }
    }

    /// Resolves `--data` and loads it; an error unless `--output-len` is one length.
    pub fn load(&self) -> anyhow::Result<LoadedData> {
        self.output_len()?;
        self.load_lengths()
    }

    /// Resolves `--data` and loads it, windowed at the shortest `--output-len` (a dataset
    /// serves every H its rows allow, see `Split::window_at`).
    pub fn load_lengths(&self) -> anyhow::Result<LoadedData> {
        let source = self.source()?;
        let shortest = self.output_len.iter().copied().min().unwrap_or(0);
        let dataset = source.load(&self.options(shortest))?;
        say_notes(dataset.notes());
        Ok(LoadedData { dataset, source })
    }

    /// `--data`'s bytes, name and hash.
    pub fn source(&self) -> anyhow::Result<DataSource> {
        resolve(self.root_path.as_deref(), &self.data)
    }

    /// How to window the data at H = `output_len`, with every variable (`M`; `timekd train`
    /// sets its `--features`).
    pub fn options(&self, output_len: usize) -> DatasetOptions {
        DatasetOptions {
            preset: self.dataset,
            columns: self.columns.clone(),
            target: self.target.clone(),
            features: Default::default(),
            input_len: self.input_len,
            output_len,
        }
    }
}

/// `data` (a CSV path or a dataset name) under `root` when given, resolved: the one reading
/// of `--data` / `--root_path` for every command.
pub fn resolve(root: Option<&Path>, data: &str) -> anyhow::Result<DataSource> {
    let text = match root {
        Some(root) => root.join(data).to_string_lossy().into_owned(),
        None => data.to_string(),
    };
    Ok(DataSource::resolve(&text)?)
}

/// Prints what is accepted but worth knowing (`Dataset::notes`, `Frame::notes`, a
/// backtest's notes), one `note:` line each.
pub fn say_notes(notes: &[String]) {
    for note in notes {
        eprintln!("note: {note}");
    }
}
