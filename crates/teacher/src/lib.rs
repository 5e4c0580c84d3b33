//! The TimeKD teacher: calibrated language model (GPT-2, LLaMA, BERT), prompts, token types
//! and subtractive cross attention, in Burn.
//!
//! For every window and variable the teacher writes two prompts ([`prompt`]): a
//! ground-truth (GT) prompt with history and future values, and a history-only (HD) one.
//! They are tokenised with the model's tokenizer and each token is typed language or
//! time-series ([`tokenizer`]). A frozen language model runs them with a calibration mask
//! that keeps the two kinds of token from attending to each other (−100 added to their
//! scores; [`mask`]); the last token's final state is kept. The model's family comes from
//! its `config.json` ([`families`]): [`gpt2`] (every size), [`llama`] (LLaMA-2/3.x), [`bert`];
//! each implements [`arch::Architecture`] and runs as a [`BurnModel`]. The subtractive cross attention ([`sca`]) combines the
//! N GT and N HD states of a window into the stored embedding, [N, D].
//!
//! Everything runs on the Burn device the caller picks (CPU `flex` in tests, CUDA in the
//! cli's `cuda` build): this crate enables no backend itself. Many prompts go through the
//! model per call, padded to length buckets ([`batch`]). [`device`] resolves `cpu`,
//! `cuda:N` and `cuda:all` to Burn devices.
//!
//! With the `store` feature (on by default), [`extract`] is extraction as a library: a
//! dataset's splits at one or several output lengths into resumable embedding stores, on one
//! worker per device, within a memory budget (`examples/extract.rs`).
//!
//! ```no_run
//! use burn::tensor::Device;
//! use timekd_data::{Dataset, DatasetOptions, SplitKind};
//! use timekd_teacher::{
//!     BatchOptions, Gpt2, PromptBuilder, PromptTemplate, Sca, Teacher, ValueFormat, WindowInput,
//! };
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let device = Device::default();
//! let data = Dataset::load(
//!     "datasets/ETTh1.csv".as_ref(),
//!     &DatasetOptions { output_len: 24, ..Default::default() },
//! )?;
//! let gpt2 = Gpt2::load("models/tiny-gpt2", None, &device)?;
//! let sca = Sca::init(data.n_vars(), 4 * gpt2.d_model(), 20250501, &device);
//! let template = PromptTemplate::for_preset(data.preset(), data.interval_seconds());
//! let teacher = Teacher::new(
//!     gpt2,
//!     sca,
//!     PromptBuilder::new(template, ValueFormat::Int),
//!     BatchOptions::default(),
//! )?;
//! let train = data.split(SplitKind::Train);
//! let windows: Vec<WindowInput> =
//!     (0..4).map(|i| WindowInput::from_window(&train.window(i), data.n_vars())).collect();
//! let embeddings = teacher.embed(&windows)?; // [4, N, D]
//! println!("{:?}", embeddings.dims());
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

pub mod arch;
mod attention;
pub mod batch;
pub mod bert;
mod burn_model;
pub mod device;
pub mod encode;
mod error;
#[cfg(feature = "store")]
pub mod extract;
pub mod families;
pub mod family;
pub mod gpt2;
pub mod kv;
mod language_model;
pub mod llama;
pub mod mask;
mod parallel;
pub mod pipeline;
pub mod precision;
pub mod prompt;
mod random_model;
pub mod sca;
pub mod shape;
pub mod tokenizer;
pub mod weights;

#[cfg(feature = "cuda")]
pub mod cuda;

pub use batch::{BatchOptions, PairLengths, PlannedBatch, plan_batches};
pub use bert::{Bert, BertConfig};
pub use burn_model::BurnModel;
pub use device::{DeviceError, DeviceSpec, Gpus, WorkerDevice};
pub use encode::{
    EncodedLengths, EncodedWindows, LengthsInput, PromptEncoder, VariablePrompts, WindowInput,
    encode_windows,
};
pub use error::TeacherError;
pub use families::ModelConfig;
pub use family::PromptFamily;
pub use gpt2::{Gpt2, Gpt2Config};
pub use language_model::{LanguageModel, PendingStates};
pub use llama::{Llama, LlamaConfig};
pub use pipeline::{ChunkStates, LengthEmbeddings, PendingChunk, ScaStage, Teacher};
pub use precision::Precision;
pub use prompt::{DateFormat, PromptBuilder, PromptPair, PromptTemplate, ValueFormat};
pub use random_model::write_random_gpt2;
pub use sca::Sca;
pub use shape::ModelShape;
pub use tokenizer::{
    EncodedPrompt, Gpt2Tokenizer, HfTokenizer, PromptTokenizer, SpanRule, TokenType, Tokenizer,
};
