//! GPT-2 byte-level BPE (the `r50k_base` ranks shipped with tiktoken-rs, no network) and
//! the release's token-type rule.
//!
//! Token types: the tokens are walked left to right with an "inside" flag. A token whose
//! text is exactly `Ġ<` is time-series and switches the flag on; otherwise a token exactly
//! `>` is time-series and switches it off; otherwise a token is time-series while the flag
//! is on, else language. The rule compares whole token texts, so a merged `>,` does not
//! close a span and `Ġ<-` does not open one. The HD prompt's walk continues with the flag
//! the GT walk left.

use serde::{Deserialize, Serialize};
use tiktoken_rs::CoreBPE;

use crate::error::TeacherError;
use crate::prompt::PromptPair;

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
    /// GPT-2 token ids, no BOS or EOS.
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

/// GPT-2's tokenizer plus the token-type rule.
#[derive(Clone)]
pub struct Gpt2Tokenizer {
    bpe: CoreBPE,
    /// Id of the token `Ġ<` (space, `<`), which opens a time-series span.
    open_id: u32,
    /// Id of the token `>`, which closes one.
    close_id: u32,
}

impl Gpt2Tokenizer {
    /// Loads the `r50k_base` ranks compiled into tiktoken-rs.
    pub fn new() -> Result<Self, TeacherError> {
        let bpe = tiktoken_rs::r50k_base().map_err(|e| TeacherError::Tokenizer(e.to_string()))?;
        let single = |text: &str| -> Result<u32, TeacherError> {
            match bpe.encode_ordinary(text).as_slice() {
                [id] => Ok(*id),
                other => Err(TeacherError::Tokenizer(format!(
                    "`{text}` should be one token, got {other:?}"
                ))),
            }
        };
        let open_id = single(" <")?;
        let close_id = single(">")?;
        Ok(Gpt2Tokenizer {
            bpe,
            open_id,
            close_id,
        })
    }

    /// Token ids of `text`, no special tokens added.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.bpe.encode_ordinary(text)
    }

    /// The text of a token in GPT-2's byte-to-unicode spelling (`Ġ` for a space), as
    /// Hugging Face's `convert_ids_to_tokens` writes it.
    pub fn token_text(&self, id: u32) -> Result<String, TeacherError> {
        let bytes = self
            .bpe
            .decode_bytes(&[id])
            .map_err(|e| TeacherError::Tokenizer(format!("unknown token id {id}: {e:?}")))?;
        Ok(bytes.into_iter().map(byte_to_unicode).collect())
    }

    /// Types of `ids` by the release's rule, starting with the flag `inside` and leaving it
    /// as the walk ends. Comparing ids is comparing whole token texts: the texts `Ġ<` and
    /// `>` are exactly the tokens `open_id` and `close_id`.
    pub fn token_types(&self, ids: &[u32], inside: &mut bool) -> Vec<TokenType> {
        ids.iter()
            .map(|&id| {
                if id == self.open_id {
                    *inside = true;
                    TokenType::TimeSeries
                } else if id == self.close_id {
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

    /// Tokenises and types the GT and HD prompts of one (window, variable): the GT walk
    /// starts with the flag off and the HD walk continues from where it ended.
    pub fn encode_pair(&self, pair: &PromptPair) -> (EncodedPrompt, EncodedPrompt) {
        self.typed_pair(self.encode(&pair.gt), self.encode(&pair.hd))
    }

    /// [`encode_pair`](Self::encode_pair) of the prompts `head + gt` and `head + hd` for each
    /// `(gt, hd)` of `continuations` (the GT/HD pairs of one (window, variable) at several
    /// output lengths), encoding `head` once where that gives the same ids.
    ///
    /// It does when `head` ends with a non-whitespace character and every continuation
    /// starts with whitespace: GPT-2's pre-tokenizer, which BPE never merges across, always
    /// splits there (no pre-token holds a non-space character followed by a space), so the
    /// ids of `head + c` are those of `head` followed by those of `c`. Otherwise each prompt
    /// is encoded whole.
    pub fn encode_pairs_after(
        &self,
        head: &str,
        continuations: &[(String, String)],
    ) -> Vec<(EncodedPrompt, EncodedPrompt)> {
        let splits = |c: &str| c.starts_with(char::is_whitespace);
        let head_splits = head.chars().next_back().is_some_and(|c| !c.is_whitespace());
        let head_ids = self.encode(head);
        let ids_of = |c: &str| {
            if head_splits && splits(c) {
                let mut ids = head_ids.clone();
                ids.extend(self.encode(c));
                ids
            } else {
                self.encode(&format!("{head}{c}"))
            }
        };
        continuations
            .iter()
            .map(|(gt, hd)| self.typed_pair(ids_of(gt), ids_of(hd)))
            .collect()
    }

    /// Types a GT and an HD prompt's ids: the HD walk continues the GT walk's flag.
    fn typed_pair(&self, gt_ids: Vec<u32>, hd_ids: Vec<u32>) -> (EncodedPrompt, EncodedPrompt) {
        let mut inside = false;
        let gt_types = self.token_types(&gt_ids, &mut inside);
        let hd_types = self.token_types(&hd_ids, &mut inside);
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

/// GPT-2's reversible map from bytes to printable characters: printable Latin-1 bytes map
/// to themselves, the others to U+0100 onwards in byte order (space → `Ġ`, newline → `Ċ`).
pub fn byte_to_unicode(byte: u8) -> char {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(byte) {
        return char::from(byte);
    }
    let offset = (0..byte).filter(|&b| !printable(b)).count() as u32;
    char::from_u32(256 + offset).expect("U+0100..U+0143 are valid chars")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_to_unicode_matches_gpt2() {
        assert_eq!(byte_to_unicode(b' '), 'Ġ');
        assert_eq!(byte_to_unicode(b'\n'), 'Ċ');
        assert_eq!(byte_to_unicode(0), '\u{100}');
        assert_eq!(byte_to_unicode(b'a'), 'a');
        assert_eq!(byte_to_unicode(0xAD), '\u{143}');
        let all: std::collections::HashSet<char> = (0..=255u8).map(byte_to_unicode).collect();
        assert_eq!(all.len(), 256, "the map is a bijection");
    }

    #[test]
    fn encodes_like_gpt2() {
        let tok = Gpt2Tokenizer::new().unwrap();
        let ids = tok.encode(
            "From 01/07/2016 00:00 to 04/07/2016 23:00, the values were <5, 5, 4, -1> every hour.",
        );
        assert_eq!(ids.len(), 35);
        assert_eq!(&ids[..4], &[4863, 5534, 14, 2998]);
        assert_eq!(&ids[31..], &[29, 790, 1711, 13]);
        assert_eq!(tok.token_text(1279).unwrap(), "Ġ<");
        assert_eq!(tok.token_text(29).unwrap(), ">");
    }

    #[test]
    fn encoding_the_head_once_gives_the_whole_prompts_ids() {
        let tok = Gpt2Tokenizer::new().unwrap();
        let heads = [
            "From <01/07/2016 00:00> to <04/07/2016 23:00>, the values were <5, -5, 4, -1> every hour.",
            "From <2016-07-01>, the exchange rates were <0, 1> every day.",
            "x <-7>",
            "ends with space ",
            "",
        ];
        let continuations = [
            (
                " The values for the next <24> hours are <-3, 5, 1008>".to_string(),
                " Forecast the values for the next <24> hours".to_string(),
            ),
            ("  two spaces".to_string(), "\ttab".to_string()),
            ("no space".to_string(), ">, glued".to_string()),
        ];
        for head in heads {
            let pairs = tok.encode_pairs_after(head, &continuations);
            for ((gt, hd), (gt_text, hd_text)) in pairs.iter().zip(&continuations) {
                let whole = tok.encode_pair(&PromptPair {
                    gt: format!("{head}{gt_text}"),
                    hd: format!("{head}{hd_text}"),
                });
                assert_eq!((gt, hd), (&whole.0, &whole.1), "{head:?} + {gt_text:?}");
            }
        }
    }

    #[test]
    fn merged_tokens_do_not_open_or_close_spans() {
        let tok = Gpt2Tokenizer::new().unwrap();
        let ids = tok.encode("a <1>, b <-2, 3> c <4> d");
        let texts: Vec<String> = ids.iter().map(|&i| tok.token_text(i).unwrap()).collect();
        let mut inside = false;
        let types: Vec<u8> = tok
            .token_types(&ids, &mut inside)
            .iter()
            .map(|t| t.code())
            .collect();
        let expected: Vec<u8> = texts
            .iter()
            .scan(false, |flag, t| {
                Some(match t.as_str() {
                    "Ġ<" => {
                        *flag = true;
                        1
                    }
                    ">" => {
                        *flag = false;
                        1
                    }
                    _ => u8::from(*flag),
                })
            })
            .collect();
        assert_eq!(types, expected, "tokens {texts:?}");
        assert!(texts.contains(&">,".to_string()) && texts.contains(&"Ġ<-".to_string()));
        assert!(!inside, "the final `>` closes the span");
    }
}
