//! Out-of-memory halve-and-retry: a device that runs out of memory panics inside Burn; the
//! pass is retried with half the tokens, down to one prompt per pass.

use std::panic::{AssertUnwindSafe, catch_unwind};

use super::error::ExtractError;
use crate::pipeline::{EncodedLengths, Teacher};

/// The embeddings of one output length, on the host: `values` holds `[windows, N, D]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HostEmbeddings {
    /// The output length H.
    pub output_len: usize,
    /// The windows embedded for H, in the order of `values`.
    pub windows: Vec<usize>,
    /// Their embeddings, row-major.
    pub values: Vec<f32>,
}

/// Embeds `encoded` at every length it asks for; on a device out-of-memory panic, halves the
/// tokens per pass and retries (saying so through `notes`).
pub(crate) fn embed_with_retry(
    teacher: &mut Teacher,
    encoded: &EncodedLengths,
    notes: &dyn Fn(String),
) -> Result<Vec<HostEmbeddings>, ExtractError> {
    loop {
        let attempt = catch_unwind(AssertUnwindSafe(|| teacher.embed_encoded_lengths(encoded)));
        match attempt {
            Ok(result) => {
                return result?
                    .into_iter()
                    .map(|length| {
                        let values = length
                            .embeddings
                            .into_data()
                            .convert::<f32>()
                            .try_to_vec::<f32>()
                            .map_err(|e| {
                                ExtractError::ModelFailed(format!(
                                    "reading embeddings back from the device: {e:?}"
                                ))
                            })?;
                        Ok(HostEmbeddings {
                            output_len: length.output_len,
                            windows: length.windows,
                            values,
                        })
                    })
                    .collect();
            }
            Err(panic) => {
                let message = panic_message(&panic);
                let mut options = *teacher.batch_options();
                if !looks_like_oom(&message) || options.max_tokens <= 1 || options.max_prompts <= 1
                {
                    return Err(ExtractError::ModelFailed(message));
                }
                options.max_tokens /= 2;
                options.max_prompts = options.max_prompts.div_ceil(2);
                notes(format!(
                    "device out of memory; retrying with ≤ {} tokens per pass",
                    options.max_tokens
                ));
                teacher.set_batch_options(options);
            }
        }
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}

fn looks_like_oom(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    ["out of memory", "outofmemory", "oom", "alloc"]
        .iter()
        .any(|k| lower.contains(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_memory_panics_are_told_apart() {
        assert!(looks_like_oom("CUDA Out Of Memory"));
        assert!(looks_like_oom("failed to allocate 2 GiB"));
        assert!(!looks_like_oom("index out of bounds"));
        let panic: Box<dyn std::any::Any + Send> = Box::new("oom here");
        assert_eq!(panic_message(&panic), "oom here");
        let panic: Box<dyn std::any::Any + Send> = Box::new(7u8);
        assert_eq!(panic_message(&panic), "unknown panic");
    }
}
