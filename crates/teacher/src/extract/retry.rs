//! Out-of-memory halve-and-retry: a device that runs out of memory panics inside Burn or
//! returns a typed error from the CUDA engine; the language model's passes are retried
//! smaller, down to one prompt per pass. The SCA that follows ([`sca_to_host`]) runs on half
//! as many windows at a time, down to one.

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

/// The SCA of a chunk's states, read back to the host (see [`sca_with_retry`]).
pub(crate) fn sca_to_host(
    sca: &mut ScaStage,
    states: &ChunkStates,
    notes: &dyn Fn(String),
) -> Result<Vec<HostEmbeddings>, ExtractError> {
    sca_with_retry(sca, notes, |sca| {
        sca.embeddings(states.clone())
            .into_iter()
            .map(to_host)
            .collect()
    })?
}

/// Runs `attempt` with `sca`; when the device runs out of memory inside it (a panic inside
/// Burn), halves the windows the SCA runs at once, says so through `notes`, and tries again,
/// down to one window. Any other panic, or one at a single window, is an error.
fn sca_with_retry<T>(
    sca: &mut ScaStage,
    notes: &dyn Fn(String),
    mut attempt: impl FnMut(&ScaStage) -> T,
) -> Result<T, ExtractError> {
    loop {
        let message = match catch_unwind(AssertUnwindSafe(|| attempt(sca))) {
            Ok(value) => return Ok(value),
            Err(panic) => panic_message(&panic),
        };
        let windows = sca.windows_at_once();
        if !looks_like_oom(&message) || windows <= 1 {
            return Err(ExtractError::ModelFailed(format!(
                "the SCA failed at {windows} window(s) at once: {message}"
            )));
        }
        sca.set_windows_at_once(windows / 2);
        notes(format!(
            "device out of memory in the SCA; retrying with {} windows at once",
            windows / 2
        ));
    }
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
    fn an_sca_out_of_memory_halves_its_windows_until_it_fits() {
        let device = burn::tensor::Device::flex();
        let sca = crate::Sca::init(3, 16, 7, &device);
        let mut stage = ScaStage::new(sca, crate::Precision::F32);
        let notes = std::cell::RefCell::new(Vec::new());
        let note = |text: String| notes.borrow_mut().push(text);
        let fitted = sca_with_retry(&mut stage, &note, |sca| {
            assert!(sca.windows_at_once() > 3, "halved past the first that fits");
            if sca.windows_at_once() > 4 {
                std::panic::panic_any("CUDA out of memory".to_string());
            }
            sca.windows_at_once()
        })
        .unwrap();
        assert_eq!(fitted, 4);
        assert_eq!(stage.windows_at_once(), 4);
        assert_eq!(notes.borrow().len(), 3, "{:?}", notes.borrow()); // 32 → 16 → 8 → 4

        let other = sca_with_retry(&mut stage, &note, |_| -> () {
            std::panic::panic_any("index out of bounds".to_string())
        });
        let err = other.unwrap_err().to_string();
        assert!(err.contains("index out of bounds"), "{err}");
        assert_eq!(stage.windows_at_once(), 4, "only memory halves the windows");

        stage.set_windows_at_once(1);
        let at_one = sca_with_retry(&mut stage, &note, |_| -> () {
            std::panic::panic_any("CUDA out of memory".to_string())
        });
        let err = at_one.unwrap_err().to_string();
        assert!(err.contains("at 1 window(s)"), "{err}");
    }

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
