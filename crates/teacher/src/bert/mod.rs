//! The BERT family (`bert-base-uncased` and its relatives): post-LayerNorm, absolute and
//! token-type embeddings, exact GELU, bidirectional attention with the calibration.
//!
//! **Which state is the embedding.** The teacher keeps each prompt's LAST token's final
//! state, for every family. For BERT that token is `[SEP]`, which the tokenizer appends: in
//! a bidirectional encoder it attends to the whole prompt, as `[CLS]` does, so it summarises
//! the prompt as well as `[CLS]` would, and keeping the last token keeps one extraction
//! contract for every family (the stores, the CUDA engine and `timekd prompts --states`). Prompts run whole (no prefix cache: an earlier token sees the
//! later ones, so a shared prefix has no states of its own). bert-base takes at most 512
//! tokens; longer prompts are refused with their length.

mod config;
mod model;

pub use config::BertConfig;
pub use model::{BertBlock, BertModule};

use crate::burn_model::BurnModel;

/// BERT in Burn.
pub type Bert = BurnModel<BertModule>;
