//! Out-of-memory halve-and-retry: a device that runs out of memory panics inside Burn or
//! returns a typed error from the CUDA engine; the language model's passes are retried
//! smaller, down to one prompt per pass (a chunk queued on the device and failed is computed
//! again). The SCA that follows ([`sca_to_host`]) runs on half as many windows at a time,
//! down to one.

use std::panic::{AssertUnwindSafe, catch_unwind};

use super::error::ExtractError;
use crate::encode::EncodedLengths;
use crate::error::TeacherError;
use crate::pipeline::{
    ChunkStates, HostEmbeddings, LengthEmbeddings, PendingChunk, ScaStage, Teacher,
};

/// A chunk's states queued on the device ([`queue_chunk`]), or the failure of queueing them.
pub(crate) struct QueuedChunk(Result<PendingChunk, Failure>);

/// How an attempt at a chunk's states failed.
enum Failure {
    /// The device ran out of memory (a typed error from the CUDA engine, a panic inside
    /// Burn): smaller passes may fit.
    OutOfMemory(String),
    Other(ExtractError),
}

/// Queues the language model's states of `encoded` at every length it asks for (see
/// [`Teacher::queue_language_states`]); a failure is kept for [`finish_chunk`] to answer.
pub(crate) fn queue_chunk(teacher: &Teacher, encoded: &EncodedLengths) -> QueuedChunk {
    QueuedChunk(attempt(|| teacher.queue_language_states(encoded)))
}

/// The states of a [`queue_chunk`] call of `encoded`; when the device ran out of memory,
/// makes the passes smaller (see [`Teacher::shrink_passes`]), says so through `notes`, and
/// computes them again, down to one prompt per pass.
pub(crate) fn finish_chunk(
    teacher: &mut Teacher,
    queued: QueuedChunk,
    encoded: &EncodedLengths,
    notes: &dyn Fn(String),
) -> Result<ChunkStates, ExtractError> {
    let mut result = queued
        .0
        .and_then(|pending| attempt(|| teacher.finish_language_states(pending)));
    loop {
        let failure = match result {
            Ok(states) => return Ok(states),
            Err(Failure::Other(e)) => return Err(e),
            Err(Failure::OutOfMemory(message)) => message,
        };
        match teacher.shrink_passes()? {
            Some(plan) => notes(format!("device out of memory; retrying with {plan}")),
            None => {
                return Err(ExtractError::ModelFailed(format!(
                    "{failure}; the passes are already as small as they go (one prompt)"
                )));
            }
        }
        result = attempt(|| teacher.language_states(encoded));
    }
}

/// Runs `step`, telling an out-of-memory failure (typed or a panic) from any other.
fn attempt<T>(step: impl FnOnce() -> Result<T, TeacherError>) -> Result<T, Failure> {
    match catch_unwind(AssertUnwindSafe(step)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e @ TeacherError::DeviceOutOfMemory { .. })) => {
            Err(Failure::OutOfMemory(e.to_string()))
        }
        Ok(Err(e)) => Err(Failure::Other(e.into())),
        Err(panic) => {
            let message = panic_message(&panic);
            if looks_like_oom(&message) {
                Err(Failure::OutOfMemory(message))
            } else {
                Err(Failure::Other(ExtractError::ModelFailed(message)))
            }
        }
    }
}

/// The SCA of a chunk's states, read back to the host: the fused GPU SCA's where it runs the
/// chunk, else Burn's (see [`sca_with_retry`]).
pub(crate) fn sca_to_host(
    sca: &mut ScaStage,
    states: &ChunkStates,
    notes: &dyn Fn(String),
) -> Result<Vec<HostEmbeddings>, ExtractError> {
    if let Some(fused) = sca.fused_embeddings(states) {
        return Ok(fused?);
    }
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
    fn an_attempt_tells_running_out_of_memory_from_other_failures() {
        let oom = || -> Result<(), TeacherError> {
            Err(TeacherError::DeviceOutOfMemory {
                what: "CUDA engine buffer".into(),
                bytes: 1 << 30,
            })
        };
        assert!(matches!(attempt(oom), Err(Failure::OutOfMemory(m)) if m.contains("GiB")));
        let panicked = || -> Result<(), TeacherError> { panic!("CUDA out of memory") };
        assert!(matches!(attempt(panicked), Err(Failure::OutOfMemory(_))));
        let input = || -> Result<(), TeacherError> { Err(TeacherError::Input("bad".into())) };
        assert!(matches!(attempt(input), Err(Failure::Other(_))));
        let bug = || -> Result<(), TeacherError> { panic!("index out of bounds") };
        assert!(
            matches!(attempt(bug), Err(Failure::Other(ExtractError::ModelFailed(m))) if m.contains("bounds"))
        );
        assert!(attempt(|| Ok(7)).is_ok_and(|v| v == 7));
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
