//! Tokenisers of the teacher's prompts and the release's token-type rule.
//!
//! - [`Gpt2Tokenizer`]: GPT-2's byte-level BPE from the `r50k_base` ranks compiled into
//!   tiktoken-rs (no file, no network); its ids are those of GPT-2's `tokenizer.json`.
//! - [`HfTokenizer`]: any checkpoint's `tokenizer.json`, through Hugging Face's `tokenizers`
//!   (LLaMA's byte-level or SentencePiece BPE, BERT's WordPiece, ...).
//! - [`Tokenizer`]: either, chosen from a model directory ([`Tokenizer::for_model_dir`]).
//!
//! **Token types** ([`SpanRule`]). The tokens are walked left to right with an "inside" flag:
//! the *opening* token switches it on and is time-series, the *closing* token `>` switches
//! it off and is time-series, any other token is time-series while the flag is on, else
//! language. The opening token is the tokenizer's own spelling of a space followed by `<`,
//! the token it gives for `<` in `a <`: `Ġ<` for byte-level BPE (GPT-2, LLaMA-3), `▁<` for
//! SentencePiece (LLaMA-1/2), `<` for WordPiece (BERT drops spaces). Tokens are compared
//! whole, as the release does for GPT-2: a merged `>,` closes nothing and `Ġ<-` opens
//! nothing. The HD prompt's walk continues with the flag the GT walk left.
//!
//! ```text
//! GPT-2:     From | Ġ< | 01 | / ... | > | Ġto | Ġ< | 04 ...     types 0 1 1 1 1 0 1 1
//! WordPiece: from | <  | 01 | / ... | > | to  | <  | 04 ...     types 0 1 1 1 1 0 1 1
//! ```

mod gpt2;
mod hf;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::TeacherError;
use crate::prompt::PromptPair;

pub use gpt2::{Gpt2Tokenizer, byte_to_unicode};
pub use hf::HfTokenizer;

/// The kind of a token for the calibration mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum TokenType {
    /// Natural-language token (type 0 in the fixtures).
    Language = 0,
    /// Time-series token: inside a `<...>` span (type 1 in the fixtures).
    TimeSeries = 1,
}

impl TokenType {
    /// 0 for language, 1 for time-series, as in the fixtures.
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// A tokenised prompt: ids and their types, one each per token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncodedPrompt {
    /// Token ids, with the special tokens the tokenizer puts before the text (BOS, CLS, ...;
    /// none for GPT-2).
    pub ids: Vec<u32>,
    /// The type of each token.
    pub types: Vec<TokenType>,
}

impl EncodedPrompt {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the prompt has no token.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// The token-type rule of one tokenizer (see the module docs): the ids of its opening and
/// closing tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanRule {
    /// The token a time-series span opens with (`Ġ<`, `▁<`, `<`).
    pub open: u32,
    /// The token it closes with (`>`).
    pub close: u32,
}

impl SpanRule {
    /// Types of `ids`, starting with the flag `inside` and leaving it as the walk ends.
    pub fn types(&self, ids: &[u32], inside: &mut bool) -> Vec<TokenType> {
        ids.iter()
            .map(|&id| {
                if id == self.open {
                    *inside = true;
                    TokenType::TimeSeries
                } else if id == self.close {
                    *inside = false;
                    TokenType::TimeSeries
                } else if *inside {
                    TokenType::TimeSeries
                } else {
                    TokenType::Language
                }
            })
            .collect()
    }

    /// Types a GT and an HD prompt's ids: the HD walk continues the GT walk's flag.
    pub fn typed_pair(&self, gt_ids: Vec<u32>, hd_ids: Vec<u32>) -> (EncodedPrompt, EncodedPrompt) {
        let mut inside = false;
        let gt_types = self.types(&gt_ids, &mut inside);
        let hd_types = self.types(&hd_ids, &mut inside);
        (
            EncodedPrompt {
                ids: gt_ids,
                types: gt_types,
            },
            EncodedPrompt {
                ids: hd_ids,
                types: hd_types,
            },
        )
    }
}

/// What the teacher needs of a tokenizer: ids (with the special tokens the checkpoint's
/// tokenizer puts before the text), each token's text, and the token-type rule; GT/HD pairs
/// are built from those.
pub trait PromptTokenizer {
    /// Token ids of `text`, with the special tokens the tokenizer puts before it (none for
    /// GPT-2); the last id is the text's last token.
    fn encode_ids(&self, text: &str) -> Result<Vec<u32>, TeacherError>;

    /// The text of a token as the checkpoint's vocabulary spells it (`Ġ<`, `▁<`, `##ly`).
    fn token_text(&self, id: u32) -> Result<String, TeacherError>;

    /// The tokenizer's token-type rule.
    fn span_rule(&self) -> SpanRule;

    /// Tokenises and types the GT and HD prompts of one (window, variable): the GT walk
    /// starts with the flag off and the HD walk continues from where it ended.
    fn encode_pair(
        &self,
        pair: &PromptPair,
    ) -> Result<(EncodedPrompt, EncodedPrompt), TeacherError> {
        Ok(self
            .span_rule()
            .typed_pair(self.encode_ids(&pair.gt)?, self.encode_ids(&pair.hd)?))
    }

    /// [`encode_pair`](Self::encode_pair) of the prompts `head + gt` and `head + hd` for
    /// each `(gt, hd)` of `continuations` (one (window, variable) at several output
    /// lengths). Each prompt is encoded whole unless a tokenizer knows a shortcut that gives
    /// the same ids.
    fn encode_pairs_after(
        &self,
        head: &str,
        continuations: &[(String, String)],
    ) -> Result<Vec<(EncodedPrompt, EncodedPrompt)>, TeacherError> {
        continuations
            .iter()
            .map(|(gt, hd)| {
                self.encode_pair(&PromptPair {
                    gt: format!("{head}{gt}"),
                    hd: format!("{head}{hd}"),
                })
            })
            .collect()
    }
}

/// GPT-2's tokenizer or a checkpoint's `tokenizer.json`.
#[derive(Clone)]
pub enum Tokenizer {
    /// GPT-2's byte-level BPE (tiktoken ranks).
    Gpt2(Gpt2Tokenizer),
    /// A `tokenizer.json`.
    HuggingFace(Box<HfTokenizer>),
}

impl Tokenizer {
    /// GPT-2's tokenizer.
    pub fn gpt2() -> Result<Self, TeacherError> {
        Ok(Tokenizer::Gpt2(Gpt2Tokenizer::new()?))
    }

    /// The tokenizer of the checkpoint in `dir`: GPT-2's for a `config.json` whose
    /// `model_type` is `gpt2` (its ids are those of GPT-2's `tokenizer.json`), else the
    /// directory's `tokenizer.json`.
    pub fn for_model_dir(dir: &Path) -> Result<Self, TeacherError> {
        match crate::families::model_type(dir)?.as_deref() {
            Some("gpt2") | None => Self::gpt2(),
            Some(_) => Ok(Tokenizer::HuggingFace(Box::new(HfTokenizer::from_file(
                &dir.join("tokenizer.json"),
            )?))),
        }
    }

    fn inner(&self) -> &dyn PromptTokenizer {
        match self {
            Tokenizer::Gpt2(t) => t,
            Tokenizer::HuggingFace(t) => t.as_ref(),
        }
    }
}

impl PromptTokenizer for Tokenizer {
    fn encode_ids(&self, text: &str) -> Result<Vec<u32>, TeacherError> {
        self.inner().encode_ids(text)
    }

    fn token_text(&self, id: u32) -> Result<String, TeacherError> {
        self.inner().token_text(id)
    }

    fn span_rule(&self) -> SpanRule {
        self.inner().span_rule()
    }

    fn encode_pairs_after(
        &self,
        head: &str,
        continuations: &[(String, String)],
    ) -> Result<Vec<(EncodedPrompt, EncodedPrompt)>, TeacherError> {
        self.inner().encode_pairs_after(head, continuations)
    }
}
