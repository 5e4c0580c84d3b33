//! What an extraction reports while it runs: an [`ExtractObserver`] sees the plan, each store
//! as it opens and finishes, progress after every durable chunk, and notes from the workers.
//! The `timekd` tool draws a progress bar from it; `()` observes nothing.

use std::path::PathBuf;
use std::time::Duration;

use timekd_data::SplitKind;

use super::budget::MemoryBudget;
use super::plan::PassPlan;

/// The settings a run chose, reported once before any store opens.
#[derive(Debug, Clone, PartialEq)]
pub struct RunStart {
    /// The memory budget per device.
    pub budget: MemoryBudget,
    /// How passes are sized.
    pub passes: PassPlan,
    /// Devices (one worker each).
    pub devices: usize,
    /// The output lengths, ascending.
    pub lengths: Vec<usize>,
}

/// One store of the run: a (split, output length).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreStatus {
    /// The split.
    pub split: SplitKind,
    /// The output length H.
    pub output_len: usize,
    /// The store's path (its final `.h5` file).
    pub path: PathBuf,
    /// Windows the store covers (all of the split, or this shard's).
    pub covered: usize,
    /// Windows still to extract when it was opened.
    pub missing: usize,
}

/// Progress of the run, after a chunk's embeddings are durable.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Embeddings (window × output length) written by this run so far.
    pub done: usize,
    /// Embeddings this run has to write in all.
    pub total: usize,
    /// Prompt tokens embedded so far (each prompt counted whole).
    pub tokens: usize,
    /// Time since the workers started.
    pub elapsed: Duration,
    /// When, since the workers started, the language model finished the last chunk counted
    /// in `done`. Its SCA and store writes come after it, and a worker's stages run a chunk
    /// or two apart, so a rate over a few chunks (a steady state after a warm-up) is read
    /// from this, not from `elapsed`.
    pub computed: Duration,
}

impl Progress {
    /// Embeddings per second so far.
    pub fn rate(&self) -> f64 {
        self.done as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Prompt tokens per second so far.
    pub fn tokens_per_second(&self) -> f64 {
        self.tokens as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Receives an extraction's events, on the thread that called
/// [`Extraction::run`](super::Extraction::run). Every method does nothing by default.
pub trait ExtractObserver {
    /// The run's budget, pass sizes and devices.
    fn run_started(&mut self, _start: &RunStart) {}

    /// A store was opened (or found finished); `status.missing` windows are still to do.
    fn store_opened(&mut self, _status: &StoreStatus) {}

    /// The workers start on `total` embeddings (window × output length) over all stores.
    fn work_started(&mut self, _total: usize) {}

    /// A chunk's embeddings are durable.
    fn progress(&mut self, _progress: &Progress) {}

    /// A store is complete and written at `status.path`.
    fn store_finished(&mut self, _status: &StoreStatus) {}

    /// A line from a worker worth showing: the engine it runs, a retry after running out of
    /// device memory.
    fn note(&mut self, _text: &str) {}
}

/// Observes nothing.
impl ExtractObserver for () {}
