//! Out-of-memory halve-and-retry: a device that runs out of memory panics inside Burn or
//! returns a typed error from the CUDA engine; the language model's passes are retried
//! smaller, down to one prompt per pass. The SCA that follows ([`sca_to_host`]) is bounded
//! by itself (a few windows at a time) and is not retried.

use std::panic::{AssertUnwindSafe, catch_unwind};

use super::error::ExtractError;
use crate::error::TeacherError;
use crate::pipeline::{ChunkStates, EncodedLengths, LengthEmbeddings, ScaStage, Teacher};

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

/// The language model's states of `encoded` at every length it asks for; when the device
/// runs out of memory (a typed error from the CUDA engine, a panic inside Burn), makes the
/// passes smaller (see [`Teacher::shrink_passes`]), says so through `notes`, and retries,
/// down to one prompt per pass.
pub(crate) fn states_with_retry(
    teacher: &mut Teacher,
    encoded: &EncodedLengths,
    notes: &dyn Fn(String),
) -> Result<ChunkStates, ExtractError> {
    loop {
        let attempt = catch_unwind(AssertUnwindSafe(|| teacher.language_states(encoded)));
        let failure = match attempt {
            Ok(Ok(states)) => return Ok(states),
            Ok(Err(e @ TeacherError::DeviceOutOfMemory { .. })) => e.to_string(),
            Ok(Err(e)) => return Err(e.into()),
            Err(panic) => {
                let message = panic_message(&panic);
                if !looks_like_oom(&message) {
                    return Err(ExtractError::ModelFailed(message));
                }
                message
            }
        };
        match teacher.shrink_passes()? {
            Some(plan) => notes(format!("device out of memory; retrying with {plan}")),
            None => {
                return Err(ExtractError::ModelFailed(format!(
                    "{failure}; the passes are already as small as they go (one prompt)"
                )));
            }
        }
    }
}

/// The SCA of a chunk's states, read back to the host; a panic inside Burn becomes an error.
pub(crate) fn sca_to_host(
    sca: &ScaStage,
    states: ChunkStates,
) -> Result<Vec<HostEmbeddings>, ExtractError> {
    catch_unwind(AssertUnwindSafe(|| {
        sca.embeddings(states).into_iter().map(to_host).collect()
    }))
    .unwrap_or_else(|panic| {
        Err(ExtractError::ModelFailed(format!(
            "the SCA failed: {}",
            panic_message(&panic)
        )))
    })
}

/// One length's embeddings read back to the host.
fn to_host(length: LengthEmbeddings) -> Result<HostEmbeddings, ExtractError> {
    let values = length
        .embeddings
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| {
            ExtractError::ModelFailed(format!("reading embeddings back from the device: {e:?}"))
        })?;
    Ok(HostEmbeddings {
        output_len: length.output_len,
        windows: length.windows,
        values,
    })
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
