//! Windowed multivariate time-series datasets for TimeKD.
//!
//! Reads a benchmark-style CSV (a `date` column plus numeric variables) with polars,
//! splits it by the benchmark's rules, fits a z-score scaler on the train rows and serves
//! windows (L history rows, H future rows, raw and scaled, with time marks) and batches.
//! No deep-learning or storage dependency: plain Rust slices, reusable anywhere.
//!
//! [`DataSource`] resolves what a user passes as `--data` (a CSV path or a dataset name;
//! ETTh1 is built in), names the dataset (stores and runs are filed under that name) and
//! hashes its bytes. One loaded dataset serves a split's windows at any output length its
//! rows allow ([`Split::window_at`]). [`seeded`] and [`files`] hold the workspace's one
//! seeded generator, PyTorch-default init and atomic safetensors writer.
//!
//! Values such as weather.csv's `-9999.0` sentinels are data, not errors: they are kept
//! as published. NaN, infinities, empty and non-numeric cells are errors naming the file,
//! line and column.
//!
//! ```no_run
//! use timekd_data::{Dataset, DatasetOptions, SplitKind};
//!
//! let options = DatasetOptions { output_len: 24, ..Default::default() };
//! let data = Dataset::load("datasets/ETTh1.csv".as_ref(), &options)?;
//! let train = data.split(SplitKind::Train);
//! let window = train.window(0);
//! println!("{} windows; first starts {}", train.num_windows(), window.history_start());
//! let (mut x, mut y) = (Vec::new(), Vec::new());
//! train.fill_scaled(&[0, 1, 2], &mut x, &mut y); // x [3, 96, 7], y [3, 24, 7]
//! # Ok::<(), timekd_data::DataError>(())
//! ```

#![warn(missing_docs)]

mod batch;
mod contract;
mod csv;
mod dataset;
mod digest;
mod error;
mod features;
pub mod files;
mod frame;
mod lengths;
mod preset;
mod scaler;
pub mod seeded;
mod source;
mod split;
mod time;

pub use batch::{BatchIter, BatchOrder};
pub use chrono::NaiveDateTime;
pub use contract::{Bound, FittedRows, SeriesContract};
pub use dataset::{Dataset, DatasetOptions, Split, Window};
pub use digest::sha256_hex;
pub use error::DataError;
pub use features::Features;
pub use frame::Frame;
pub use preset::{Preset, SplitFamily};
pub use scaler::Scaler;
pub use source::DataSource;
pub use split::SplitKind;
pub use time::{TimeMark, parse_timestamp};
