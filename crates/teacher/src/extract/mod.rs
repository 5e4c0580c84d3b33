//! Extraction as a library (feature `store`, on by default): teacher embeddings of a
//! dataset's splits at one or several output lengths into resumable HDF5 stores, on one worker
//! per device, within a memory budget.
//!
//! ```no_run
//! use timekd_data::{DataSource, DatasetOptions, SplitKind};
//! use timekd_teacher::DeviceSpec;
//! use timekd_teacher::extract::Extraction;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let source = DataSource::resolve("ETTh1")?; // built in; or a CSV path
//! let data = source.load(&DatasetOptions { output_len: 24, ..Default::default() })?;
//! Extraction::builder(&source, &data, "runs/embeddings")
//!     .model("models/tiny-gpt2")
//!     .devices("cpu".parse::<DeviceSpec>()?)
//!     .lengths(&[24, 36, 48, 96, 192])
//!     .splits(&[SplitKind::Train, SplitKind::Val])
//!     .run(&mut ())?;
//! # Ok(())
//! # }
//! ```
//!
//! - One store per (H, split) at [`StoreLayout`](timekd_store::StoreLayout)'s path
//!   `<out>/<dataset>/<H>/<split>.h5`, each resumable on its own: its own writer,
//!   fingerprint and missing windows. Window i of a split has the same history for every H
//!   and exists for H while i < the split's windows at H.
//! - The unit of work is a chunk of window indices, each window with the lengths whose
//!   stores still miss it; one worker per device pulls chunks from one queue, a pipeline of
//!   three threads: prompts for the next chunk, the language model on the current one, the
//!   SCA and read-back of the one before ([`workers`](self) docs). The caller's thread
//!   alone writes the stores, a part per chunk, so a crash loses at most the chunks in flight
//!   and the result does not depend on the number of devices, the pass sizes or shards.
//! - Pass sizes come from a [`MemoryBudget`] and the longest prompt ([`budget`] docs); a
//!   device that runs out of memory halves its passes and retries.
//! - An [`ExtractObserver`] sees the plan, the stores and the progress (`()` sees nothing).

pub mod budget;
mod builder;
mod error;
mod fingerprint;
mod model;
mod observer;
mod pipeline_profile;
mod plan;
mod precision;
mod retry;
mod shard;
mod stores;
mod workers;

pub use budget::{MemSize, MemoryBudget};
pub use builder::{Extraction, ExtractionBuilder, ExtractionSummary};
pub use error::ExtractError;
pub use model::Engine;
pub use observer::{ExtractObserver, Progress, RunStart, StoreStatus};
pub use pipeline_profile::PIPELINE_PROFILE_ENV;
pub use plan::{EnginePlan, ExtractionPlan, PassPlan, StorePlan, TokenSurvey};
pub use precision::RequestedPrecision;
pub use shard::Shard;
