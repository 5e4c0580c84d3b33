//! The LLaMA family (LLaMA-2, LLaMA-3.x such as `meta-llama/Llama-3.2-1B` and `-3B`):
//! RMSNorm, rotary positions with the `llama3` scaling, SwiGLU MLP, grouped-query
//! attention, no biases, tied or untied embeddings. A decoder: shared prompt prefixes are
//! cached and one pass serves every output length, as for GPT-2. Tokenised with the
//! checkpoint's `tokenizer.json` (see [`HfTokenizer`](crate::HfTokenizer)).

mod config;
mod load;
mod model;
pub(crate) mod names;

pub use config::{Llama3Scaling, LlamaConfig};
pub use model::{LlamaBlock, LlamaModule};

use crate::burn_model::BurnModel;

/// LLaMA in Burn.
pub type Llama = BurnModel<LlamaModule>;
