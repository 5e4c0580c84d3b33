//! A checkpoint's `tokenizer.json` through Hugging Face's `tokenizers`.

use std::path::{Path, PathBuf};

use super::{PromptTokenizer, SpanRule};
use crate::error::TeacherError;

/// The tokenizer a checkpoint ships as `tokenizer.json` (LLaMA, BERT, ...), with its
/// token-type rule found from its own tokens (see the `tokenizer` module docs). Prompts start
/// with the special tokens the file's post-processor puts before the text (LLaMA-3's
/// `<|begin_of_text|>`, BERT's `[CLS]`), as `tokenizer(text)` gives them in Python; special
/// tokens it puts after the text (BERT's `[SEP]`) are left off, so that a prompt's last token
/// is the last token of its text for every family, as for GPT-2. That last token's state is
/// the teacher's embedding, and a special token is a language token: under the calibration
/// it would see only the prompt's language tokens, which are the same words for every window
/// (a BERT teacher ending in `[SEP]` gave every window the same embedding).
#[derive(Clone)]
pub struct HfTokenizer {
    inner: tokenizers::Tokenizer,
    rule: SpanRule,
    path: PathBuf,
}

impl HfTokenizer {
    /// Loads `path` and finds its opening token (what it gives for `<` in `a <`) and its
    /// closing token `>`; a tokenizer without a single token for either is refused.
    pub fn from_file(path: &Path) -> Result<Self, TeacherError> {
        let bad = |reason: String| TeacherError::TokenizerFile {
            path: path.to_path_buf(),
            reason,
        };
        if !path.is_file() {
            return Err(bad(
                "not found: a model other than GPT-2 needs the tokenizer.json it was trained with"
                    .into(),
            ));
        }
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| bad(e.to_string()))?;
        let probe = inner
            .encode("a <", false)
            .map_err(|e| bad(format!("cannot encode `a <`: {e}")))?;
        let open = probe
            .get_ids()
            .last()
            .copied()
            .filter(|&id| inner.id_to_token(id).is_some_and(|t| t.ends_with('<')))
            .ok_or_else(|| {
                bad(format!(
                    "no single token for the `<` of `a <` (tokens {:?}): the token-type rule \
                     needs one to open time-series spans",
                    probe.get_tokens()
                ))
            })?;
        let close = inner.token_to_id(">").ok_or_else(|| {
            bad("no token `>`: the token-type rule needs one to close time-series spans".into())
        })?;
        Ok(HfTokenizer {
            inner,
            rule: SpanRule { open, close },
            path: path.to_path_buf(),
        })
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl PromptTokenizer for HfTokenizer {
    fn encode_ids(&self, text: &str) -> Result<Vec<u32>, TeacherError> {
        let encoding = self
            .inner
            .encode(text, true)
            .map_err(|e| TeacherError::TokenizerFile {
                path: self.path.clone(),
                reason: format!("cannot encode a prompt: {e}"),
            })?;
        // Special tokens after the text (BERT's `[SEP]`) are left off; see the type's docs.
        let specials = encoding.get_special_tokens_mask();
        let end = specials.iter().rposition(|&m| m == 0).map_or(0, |i| i + 1);
        Ok(encoding.get_ids()[..end].to_vec())
    }

    fn token_text(&self, id: u32) -> Result<String, TeacherError> {
        self.inner
            .id_to_token(id)
            .ok_or_else(|| TeacherError::TokenizerFile {
                path: self.path.clone(),
                reason: format!("unknown token id {id}"),
            })
    }

    fn span_rule(&self) -> SpanRule {
        self.rule
    }
}
