//! The worker pool: one worker per device pulls chunks of windows from one queue. Each worker
//! is a pipeline of three threads, a chunk at each stage: one builds and tokenises the prompts
//! of the next chunk ([`PromptEncoder::encode_lengths`]), one runs the language model on the
//! current one ([`Teacher::queue_language_states`], queued before the chunk before is read
//! back), one runs the SCA on the chunk before and reads its embeddings back
//! ([`ScaStage::embeddings`]), so the device's model passes do not wait for the SCA, its
//! copies or the host. Results go back to the caller's thread, which alone
//! writes the stores, so the stores do not depend on how many workers ran.

use std::sync::Mutex;
use std::sync::mpsc::{self, SyncSender};
use std::time::Instant;

use timekd_data::{Dataset, SplitKind};

use super::error::ExtractError;
use super::model::{TeacherSpec, load_teacher};
use super::pipeline_profile::{PipelineTimes, StageTimes, profile_requested};
use super::retry::{QueuedChunk, finish_chunk, queue_chunk, sca_to_host};
use crate::batch::BatchOptions;
use crate::device::WorkerDevice;
use crate::encode::{EncodedLengths, LengthsInput, PromptEncoder, WindowInput};
use crate::error::TeacherError;
use crate::pipeline::{ChunkStates, HostEmbeddings, ScaStage, Teacher};

/// A unit of work: windows of one split, each with the output lengths whose stores still miss
/// it (ascending).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WorkItem {
    /// The split the windows belong to.
    pub split: SplitKind,
    /// (window index, output lengths to embed it for).
    pub windows: Vec<(usize, Vec<usize>)>,
}

/// A chunk's embeddings, one entry per output length.
#[derive(Debug)]
pub(crate) struct ChunkDone {
    /// The split of the chunk.
    pub split: SplitKind,
    /// Per output length, the embeddings of the chunk's windows that asked for it.
    pub lengths: Vec<HostEmbeddings>,
    /// Prompt tokens embedded (each prompt counted whole).
    pub tokens: usize,
    /// When the language model finished the chunk (before its SCA).
    pub computed_at: Instant,
}

/// What a worker sends back.
#[derive(Debug)]
pub(crate) enum WorkerMessage {
    /// A line for the user.
    Note(String),
    /// A chunk is embedded.
    Done(ChunkDone),
}

/// What the pool needs to run.
pub(crate) struct Pool<'a> {
    /// The teacher every worker loads.
    pub spec: &'a TeacherSpec,
    /// One worker per device.
    pub devices: &'a [WorkerDevice],
    /// The memory budget per device (sizes the CUDA engine).
    pub budget_bytes: u64,
    /// Batching of the teacher.
    pub options: BatchOptions,
    /// The windows' data.
    pub data: &'a Dataset,
}

type Message = Result<WorkerMessage, ExtractError>;

impl Pool<'_> {
    /// Runs `items` on the workers; `receive` sees every message on this thread, in arrival
    /// order. The first error (a worker's or `receive`'s) ends the run.
    pub fn run(
        &self,
        items: Vec<WorkItem>,
        mut receive: impl FnMut(WorkerMessage) -> Result<(), ExtractError>,
    ) -> Result<(), ExtractError> {
        let queue = Mutex::new(items.into_iter());
        std::thread::scope(|scope| {
            let (sender, receiver) = mpsc::sync_channel::<Message>(self.devices.len() * 2);
            for target in self.devices {
                let (queue, sender) = (&queue, sender.clone());
                scope.spawn(move || self.worker(target, queue, &sender));
            }
            drop(sender);
            // Returning drops the receiver: workers stop at their next send.
            receiver
                .into_iter()
                .try_for_each(|message| receive(message?))
        })
    }

    /// One device's loop: load the teacher, take chunks until the queue is empty.
    fn worker(
        &self,
        target: &WorkerDevice,
        queue: &Mutex<std::vec::IntoIter<WorkItem>>,
        results: &SyncSender<Message>,
    ) {
        let notes = |text: String| send_note(results, text);
        let loaded = load_teacher(self.spec, target, self.budget_bytes, self.options, &notes);
        let mut teacher = match loaded {
            Ok(teacher) => teacher,
            Err(err) => {
                let _ = results.send(Err(err));
                return;
            }
        };
        let encoder = teacher.encoder().clone();
        let sca = teacher.sca_stage().clone();
        let started = Instant::now();
        let times = std::thread::scope(|scope| {
            let (encoded_tx, encoded_rx) = mpsc::sync_channel(1);
            let prompts = scope.spawn(move || {
                let mut times = StageTimes::default();
                while let Some(item) = next(queue) {
                    let encoded =
                        times.time(|t| &mut t.work, || encode(&encoder, self.data, &item));
                    let sent = times.time(
                        |t| &mut t.blocked,
                        || encoded_tx.send((item.split, encoded)).is_ok(),
                    );
                    if !sent {
                        break;
                    }
                    times.chunks += 1;
                }
                times
            });
            let (states_tx, states_rx) = mpsc::sync_channel(1);
            let sca = scope.spawn(move || finish_chunks(sca, states_rx, results));
            let model = run_model(&mut teacher, encoded_rx, &states_tx, &notes);
            // The SCA thread ends when the model thread's sender is gone.
            drop(states_tx);
            // A thread's panic goes on as the scope would have sent it on unjoined.
            let join = |times: std::thread::Result<StageTimes>| {
                times.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            };
            PipelineTimes {
                prompts: join(prompts.join()),
                model,
                sca: join(sca.join()),
            }
        });
        if profile_requested() {
            notes(times.report(&target.spec().to_string(), started.elapsed()));
        }
    }
}

/// The model thread's loop: one chunk in flight, the next queued on the device before this
/// one is read back, so the device does not wait for the host in between. Stops at the first
/// error (sent on) or when the SCA stage stops listening.
fn run_model(
    teacher: &mut Teacher,
    encoded: mpsc::Receiver<(SplitKind, Result<EncodedLengths, TeacherError>)>,
    states: &SyncSender<StatesMessage>,
    notes: &dyn Fn(String),
) -> StageTimes {
    let mut times = StageTimes::default();
    let mut in_flight: Option<InFlight> = None;
    while let Some((split, encoded)) = times.time(|t| &mut t.starved, || encoded.recv().ok()) {
        let next = encoded.map(|encoded| {
            let queued = times.time(|t| &mut t.work, || queue_chunk(teacher, &encoded));
            (split, encoded, queued)
        });
        if let Some(chunk) = in_flight.take()
            && !finish(teacher, chunk, states, notes, &mut times)
        {
            return times;
        }
        match next {
            Ok(chunk) => in_flight = Some(chunk),
            Err(e) => {
                let _ = states.send((split, Err(e.into())));
                return times;
            }
        }
    }
    if let Some(chunk) = in_flight {
        finish(teacher, chunk, states, notes, &mut times);
    }
    times
}

/// A chunk queued on the device: its split, prompts and queued states.
type InFlight = (SplitKind, EncodedLengths, QueuedChunk);

/// Reads a queued chunk's states (see [`finish_chunk`]) and sends them to the SCA stage,
/// timed into `times`; false when the worker should stop (an error sent, or nobody
/// listening).
fn finish(
    teacher: &mut Teacher,
    (split, encoded, queued): InFlight,
    states: &SyncSender<StatesMessage>,
    notes: &dyn Fn(String),
    times: &mut StageTimes,
) -> bool {
    let done = times
        .time(
            |t| &mut t.reading_back,
            || finish_chunk(teacher, queued, &encoded, notes),
        )
        .map(|chunk| (encoded.prompt_tokens(), chunk, Instant::now()));
    let failed = done.is_err();
    let sent = times.time(|t| &mut t.blocked, || states.send((split, done)).is_ok());
    times.chunks += 1;
    sent && !failed
}

/// A chunk between the language model and the SCA: its split, prompt tokens, states and when
/// the model finished it.
type StatesMessage = (
    SplitKind,
    Result<(usize, ChunkStates, Instant), ExtractError>,
);

/// The SCA stage of a worker: each chunk's states to host embeddings, sent on in order; stops
/// at the first error (after sending it) or when the caller stops listening. Returns its
/// times.
fn finish_chunks(
    mut sca: ScaStage,
    states: mpsc::Receiver<StatesMessage>,
    results: &SyncSender<Message>,
) -> StageTimes {
    let notes = |text: String| send_note(results, text);
    let mut times = StageTimes::default();
    while let Some((split, chunk)) = times.time(|t| &mut t.starved, || states.recv().ok()) {
        let done = times.time(
            |t| &mut t.work,
            || {
                chunk.and_then(|(tokens, states, computed_at)| {
                    Ok(ChunkDone {
                        split,
                        lengths: sca_to_host(&mut sca, &states, &notes)?,
                        tokens,
                        computed_at,
                    })
                })
            },
        );
        let failed = done.is_err();
        let sent = times.time(
            |t| &mut t.blocked,
            || results.send(done.map(WorkerMessage::Done)).is_ok(),
        );
        times.chunks += 1;
        if !sent || failed {
            break;
        }
    }
    times
}

/// A line for the user; a caller that stopped listening misses it (the run is ending).
fn send_note(results: &SyncSender<Message>, text: String) {
    let _ = results.send(Ok(WorkerMessage::Note(text)));
}

fn next(queue: &Mutex<std::vec::IntoIter<WorkItem>>) -> Option<WorkItem> {
    // A poisoned queue means another worker panicked; that panic ends the run anyway.
    queue.lock().ok()?.next()
}

/// The prompts of `item`'s windows at their lengths.
fn encode(
    encoder: &PromptEncoder,
    data: &Dataset,
    item: &WorkItem,
) -> Result<EncodedLengths, TeacherError> {
    let split = data.split(item.split);
    let inputs = item
        .windows
        .iter()
        .map(|(index, lengths)| {
            let longest = lengths.last().copied().unwrap_or(0);
            let window = split.window_at(*index, longest).ok_or_else(|| {
                TeacherError::Input(format!(
                    "window {index} of the {} split does not exist at H = {longest}",
                    item.split
                ))
            })?;
            Ok(LengthsInput {
                window: WindowInput::from_window(&window, data.n_vars()),
                lengths: lengths.clone(),
            })
        })
        .collect::<Result<Vec<_>, TeacherError>>()?;
    encoder.encode_lengths(&inputs)
}
