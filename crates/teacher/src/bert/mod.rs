//! The BERT family (`bert-base-uncased` and its relatives): post-LayerNorm, absolute and
//! token-type embeddings, exact GELU, bidirectional attention with the calibration.
//!
//! **Which state is the embedding.** The teacher keeps each prompt's LAST token's final
//! state, for every family, and for BERT that is the last token of the prompt's text: the
//! tokenizer's `[CLS]` stays in front, its trailing `[SEP]` is left off (see
//! [`HfTokenizer`](crate::HfTokenizer)). `[SEP]` or `[CLS]` would not do: both are language
//! tokens, and under the calibration (−100 across types, in both directions here) a language
//! token sees only the prompt's language tokens — the same words for every window — so every
//! window got the same embedding. The GT prompt's last token is the `>` closing its values, a
//! time-series token that sees them, as GPT-2's does. Prompts run whole (no prefix cache: an
//! earlier token sees the later ones, so a shared prefix has no states of its own).
//! bert-base takes at most 512 tokens; longer prompts are refused with their length.

mod config;
mod model;

pub use config::BertConfig;
pub use model::{BertBlock, BertModule};

use crate::burn_model::BurnModel;

/// BERT in Burn.
pub type Bert = BurnModel<BertModule>;
