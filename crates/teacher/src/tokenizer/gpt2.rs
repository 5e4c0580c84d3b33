//! GPT-2's byte-level BPE from the `r50k_base` ranks shipped with tiktoken-rs (no network).

use tiktoken_rs::CoreBPE;

use super::{EncodedPrompt, PromptTokenizer, SpanRule};
use crate::error::TeacherError;
#[cfg(test)]
use crate::prompt::PromptPair;

/// GPT-2's tokenizer plus the token-type rule (`Ġ<` opens a span, `>` closes it).
#[derive(Clone)]
pub struct Gpt2Tokenizer {
    bpe: CoreBPE,
    rule: SpanRule,
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
        let rule = SpanRule {
            open: single(" <")?,
            close: single(">")?,
        };
        Ok(Gpt2Tokenizer { bpe, rule })
    }

    /// Token ids of `text`, no special tokens added.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.bpe.encode_ordinary(text)
    }
}

impl PromptTokenizer for Gpt2Tokenizer {
    fn encode_ids(&self, text: &str) -> Result<Vec<u32>, TeacherError> {
        Ok(self.encode(text))
    }

    /// The text of a token in GPT-2's byte-to-unicode spelling (`Ġ` for a space), as
    /// Hugging Face's `convert_ids_to_tokens` writes it.
    fn token_text(&self, id: u32) -> Result<String, TeacherError> {
        let bytes = self
            .bpe
            .decode_bytes(&[id])
            .map_err(|e| TeacherError::Tokenizer(format!("unknown token id {id}: {e:?}")))?;
        Ok(bytes.into_iter().map(byte_to_unicode).collect())
    }

    fn span_rule(&self) -> SpanRule {
        self.rule
    }

    /// Encodes `head` once where that gives the same ids as each whole prompt: when `head`
    /// ends with a non-whitespace character and every continuation starts with whitespace.
    /// GPT-2's pre-tokenizer, which BPE never merges across, always splits there (no
    /// pre-token holds a non-space character followed by a space), so the ids of `head + c`
    /// are those of `head` followed by those of `c`. Otherwise each prompt is encoded whole.
    fn encode_pairs_after(
        &self,
        head: &str,
        continuations: &[(String, String)],
    ) -> Result<Vec<(EncodedPrompt, EncodedPrompt)>, TeacherError> {
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
        Ok(continuations
            .iter()
            .map(|(gt, hd)| self.rule.typed_pair(ids_of(gt), ids_of(hd)))
            .collect())
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
            let pairs = tok.encode_pairs_after(head, &continuations).unwrap();
            for ((gt, hd), (gt_text, hd_text)) in pairs.iter().zip(&continuations) {
                let whole = tok
                    .encode_pair(&PromptPair {
                        gt: format!("{head}{gt_text}"),
                        hd: format!("{head}{hd_text}"),
                    })
                    .unwrap();
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
            .span_rule()
            .types(&ids, &mut inside)
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
