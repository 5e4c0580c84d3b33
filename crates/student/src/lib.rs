//! TimeKD student: the dual model, privileged knowledge distillation, evaluation and
//! forecasting, in Burn.
//!
//! The [`Dual`] model has two branches of the same shape: a time-series branch
//! (RevIN → Linear(L→C) → post-norm encoder over variables → Linear(C→H) → de-norm) used
//! at test time, and a prompt branch that encodes the teacher's embeddings `[N, d_llm]`
//! during training only. [`distillation_loss`] ties them together with four terms
//! (forecast, reconstruction, feature and attention distillation). A [`Trainer`] runs AdamW with
//! global gradient-norm clipping and a per-epoch cosine schedule, validates every epoch,
//! stops early on the validation loss and writes checkpoints that a [`Trainer`] can
//! resume exactly; several seeds of one configuration train packed into one model
//! ([`Trainer::and_run`], [`Dual::pack`]: one kernel per operation for all of them), each
//! reaching the weights it reaches alone. [`evaluate`] and [`Forecaster`] (new data, with the scaler a checkpoint
//! records; backtests) use the time-series branch alone;
//! [`test_run`] writes a run's test results (NumPy arrays, MSE/MAE/RMSE/MAPE/MSPE overall,
//! per variable and per step, a forecast plot) and [`SweepResults`] tabulates seed sweeps
//! as mean ± std.
//!
//! With the `cuda` feature, the `cuda` module's `FusedStudent` trains a run's steps on an
//! NVIDIA GPU without Burn (forward, loss, backward, clipping and AdamW as about a hundred
//! launches, the splits resident on the GPU): `Trainer::cuda_engine(Some(ordinal))` uses it,
//! with the same batches, step seeds, checkpoints and resume (its dropout masks are its own).
//!
//! With the `store` feature (on by default), [`StoreEmbeddings`] reads the embedding stores
//! `timekd extract` writes, found by the same `StoreLayout` and dataset name. A finished run
//! writes a [`RunSummary`].
//!
//! Weights use the release's PyTorch state-dict names and layouts ([`load_safetensors`],
//! [`save_safetensors`]), so the release's `dual` checkpoints load directly.
//!
//! Tensors are Burn 0.22 dispatch tensors: pass a CPU or GPU [`burn::tensor::Device`];
//! training turns autodiff on itself.
//!
//! ```no_run
//! use burn::tensor::Device;
//! use timekd_student::{Dual, DualConfig};
//!
//! # fn cpu() -> Device { unimplemented!() }
//! let device: Device = cpu(); // e.g. Device::flex() with burn's `flex` feature
//! let config = DualConfig { output_len: 24, ..DualConfig::default() };
//! let model = Dual::init(&config, 2024, &device)?;
//! let history = burn::tensor::Tensor::<3>::zeros([1, 96, 7], &device); // [batch, L, N]
//! let forecast = model.forecast(history); // [1, 24, 7]
//! # Ok::<(), timekd_student::StudentError>(())
//! ```
//!
//! `examples/train_synthetic.rs` trains, evaluates and forecasts on ETTh1 with seeded random
//! embeddings standing in for a teacher.

#![warn(missing_docs)]

mod attention;
mod batches;
mod checkpoint;
mod config;
#[cfg(feature = "cuda")]
pub mod cuda;
mod data;
mod dropout;
mod embeddings;
mod encoder;
mod error;
mod eval;
mod flat;
mod forecast;
mod init;
mod interrupt;
mod loss;
mod metrics;
mod model;
mod module_path;
mod npy;
mod optim;
mod output;
mod pack;
mod paired;
mod parallel;
mod plot;
mod progress;
mod revin;
mod run_dir;
mod scores;
mod selection;
mod state_dict;
mod step_profile;
#[cfg(feature = "store")]
mod stores;
mod summary;
mod sweep;
mod test_run;
mod train_config;
mod trainer;
mod tslib;
mod validation;

#[cfg(test)]
mod parity_tests;

pub use checkpoint::{
    Checkpoint, CheckpointState, DataInfo, load_checkpoint, read_state, save_checkpoint,
};
pub use config::{DualConfig, LossConfig, LossKind, OptimConfig};
pub use data::{SplitData, TrainData};
pub use embeddings::{EmbeddingSource, InMemoryEmbeddings};
pub use error::{Result, SourceError, StudentError};
pub use eval::{Arrays, EvalReport, Predictions, evaluate, predict};
pub use forecast::{BacktestSummary, Forecast, Forecaster, Origins};
pub use interrupt::PartialEpoch;
pub use loss::{LossTerms, LossValues, distillation_loss, elementwise_loss};
pub use metrics::{EpochMetrics, append_metrics, read_metrics, write_metrics};
pub use model::{Dual, DualOutput};
pub use optim::cosine_lr;
pub use plot::{ForecastPlot, LossScale, plot_forecast, plot_losses, plot_losses_with};
pub use progress::TrainStep;
pub use revin::Revin;
pub use run_dir::RunDir;
pub use scores::{MetricSet, Metrics, Scorer, VariableMetrics};
pub use state_dict::{
    NamedTensor, load_safetensors, load_state_dict, read_safetensors, save_safetensors, state_dict,
    to_torch, write_safetensors,
};
#[cfg(feature = "store")]
pub use stores::StoreEmbeddings;
pub use summary::{RunSummary, TrainSummary};
pub use sweep::{RunResult, SweepResults};
pub use test_run::{TestOptions, TestResults, test_run};
pub use train_config::{Selection, TrainConfig};
pub use trainer::Trainer;
pub use tslib::{TSLIB_SUMMARY_FILE, TslibSetting, write_tslib};
pub use validation::validation_loss;
