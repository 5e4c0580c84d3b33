//! The whole teacher for extraction: windows → prompts → tokens and types (`encode`) →
//! batched calibrated GPT-2 → SCA → one [N, D] embedding per window.

use std::sync::Arc;
#[cfg(feature = "cuda")]
use std::sync::Mutex;

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::batch::BatchOptions;
use crate::encode::{EncodedLengths, EncodedWindows, LengthsInput, PromptEncoder, WindowInput};
use crate::error::TeacherError;
use crate::family::PromptFamily;
use crate::language_model::{LanguageModel, PendingStates};
use crate::precision::Precision;
use crate::prompt::PromptBuilder;
use crate::sca::Sca;
use crate::tokenizer::Tokenizer;

/// The embeddings of one output length from [`Teacher::embed_lengths`].
#[derive(Debug, Clone)]
pub struct LengthEmbeddings {
    /// The output length H.
    pub output_len: usize,
    /// The window indices ([`WindowInput::index`]) embedded for H, in input order.
    pub windows: Vec<usize>,
    /// Their embeddings: [windows, N, D].
    pub embeddings: Tensor<3>,
}

/// The teacher: prompt encoder, calibrated language model, SCA and batching.
pub struct Teacher {
    encoder: PromptEncoder,
    gpt2: LanguageModel,
    sca: ScaStage,
    batch: BatchOptions,
}

/// A chunk's last-token states from the language model, with which rows feed the SCA at
/// which output length: what [`Teacher::language_states`] gives and [`ScaStage::embeddings`]
/// finishes.
#[derive(Clone)]
pub struct ChunkStates {
    /// [Σ prompts, d], family by family.
    states: States,
    /// Per output length, ascending.
    lengths: Vec<LengthRows>,
}

/// Where a chunk's states are: on Burn's device, or on the host for the fused GPU SCA (which
/// uploads them itself: the CUDA engine reads them back anyway).
#[derive(Clone)]
enum States {
    Tensor(Box<Tensor<2>>),
    Host { values: Arc<Vec<f32>>, d: usize },
}

impl States {
    /// The states as a [Σ prompts, d] tensor on `device` (host states uploaded).
    fn tensor(&self, device: &Device) -> Tensor<2> {
        match self {
            States::Tensor(states) => (**states).clone(),
            States::Host { values, d } => Tensor::from_data(
                TensorData::new(values.to_vec(), [values.len() / d, *d]),
                device,
            ),
        }
    }
}

/// [`LengthEmbeddings`] read back to the host.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HostEmbeddings {
    /// The output length H.
    pub output_len: usize,
    /// The windows embedded for H, in the order of `values`.
    pub windows: Vec<usize>,
    /// Their embeddings, [windows, N, D] row-major.
    pub values: Vec<f32>,
}

/// A chunk's last-token states queued on the device
/// ([`Teacher::queue_language_states`]), with their layout for the SCA.
pub struct PendingChunk {
    states: PendingStates,
    lengths: Vec<LengthRows>,
}

/// The rows of one output length's GT and HD prompts in [`ChunkStates::states`], window-major.
#[derive(Clone)]
struct LengthRows {
    output_len: usize,
    windows: Vec<usize>,
    gt: Vec<i64>,
    hd: Vec<i64>,
}

/// The SCA half of a teacher: turns last-token states into stored embeddings. It is `Clone`
/// and `Send`, so the SCA of one chunk can run on another thread while the language model
/// runs the next.
#[derive(Clone)]
pub struct ScaStage {
    sca: Sca,
    /// The SCA is tiny: f32 accuracy whatever the model's precision (split products on a
    /// GPU, where plain f32 products are TF32).
    precision: Precision,
    /// Windows the SCA runs at once (see [`ScaStage::pairs`]).
    windows_at_once: usize,
    /// The fused GPU SCA ([`crate::cuda::CudaSca`]), when the teacher has one: it takes the
    /// chunks whose states are on the host.
    #[cfg(feature = "cuda")]
    fused: Option<Arc<Mutex<crate::cuda::CudaSca>>>,
}

impl ScaStage {
    pub(crate) fn new(sca: Sca, model_precision: Precision) -> Self {
        let precision = match model_precision {
            Precision::F32 => Precision::F32,
            _ => Precision::F32Split,
        };
        ScaStage {
            sca,
            precision,
            windows_at_once: SCA_WINDOWS,
            #[cfg(feature = "cuda")]
            fused: None,
        }
    }

    /// Whether the fused GPU SCA runs this stage (it then wants the states on the host).
    pub fn is_fused(&self) -> bool {
        #[cfg(feature = "cuda")]
        return self.fused.is_some();
        #[cfg(not(feature = "cuda"))]
        false
    }

    /// The host embeddings of every output length of `chunk` from the fused GPU SCA, or
    /// `None` where it does not run the chunk (no fused SCA, or states on Burn's device).
    pub(crate) fn fused_embeddings(
        &self,
        chunk: &ChunkStates,
    ) -> Option<Result<Vec<HostEmbeddings>, TeacherError>> {
        #[cfg(feature = "cuda")]
        if let (Some(fused), States::Host { values, d }) = (&self.fused, &chunk.states) {
            let rows: Vec<(&[i64], &[i64])> = chunk
                .lengths
                .iter()
                .map(|l| (l.gt.as_slice(), l.hd.as_slice()))
                .collect();
            let computed = fused
                .lock()
                .map_err(|_| TeacherError::Cuda("the fused SCA's lock is poisoned".into()))
                .and_then(|mut fused| fused.embeddings(values, *d, &rows));
            return Some(computed.map(|lengths| {
                chunk
                    .lengths
                    .iter()
                    .zip(lengths)
                    .map(|(length, values)| HostEmbeddings {
                        output_len: length.output_len,
                        windows: length.windows.clone(),
                        values,
                    })
                    .collect()
            }));
        }
        let _ = chunk;
        None
    }

    /// The SCA layer.
    pub fn sca(&self) -> &Sca {
        &self.sca
    }

    /// Windows the SCA runs at once (32 unless set).
    pub fn windows_at_once(&self) -> usize {
        self.windows_at_once
    }

    /// Runs the SCA on at most `windows` windows at once (at least 1): less device memory
    /// (its attention is [D, D] per window), the same embeddings.
    pub fn set_windows_at_once(&mut self, windows: usize) {
        self.windows_at_once = windows.max(1);
    }

    /// The embeddings of every output length of a chunk, ascending.
    pub fn embeddings(&self, chunk: ChunkStates) -> Vec<LengthEmbeddings> {
        let states = chunk.states.tensor(&self.sca.device());
        let d = states.dims()[1];
        let n = self.sca.n_vars();
        chunk
            .lengths
            .into_iter()
            .map(|length| {
                let count = length.windows.len();
                let gt = pick_rows(&states, length.gt, [count, n, d]);
                let hd = pick_rows(&states, length.hd, [count, n, d]);
                LengthEmbeddings {
                    output_len: length.output_len,
                    windows: length.windows,
                    embeddings: self.pairs(gt, hd),
                }
            })
            .collect()
    }

    /// The stored embeddings [w, N, D] of the GT and HD last-token states [w, N, D], at
    /// most [`windows_at_once`](Self::windows_at_once) windows at a time: the SCA's
    /// attention is [D, D] per window (2.4 MB at D = 768, several times over in
    /// temporaries), so a chunk of hundreds of windows at once would hold gigabytes.
    fn pairs(&self, gt: Tensor<3>, hd: Tensor<3>) -> Tensor<3> {
        let w = gt.dims()[0];
        let parts: Vec<Tensor<3>> = (0..w)
            .step_by(self.windows_at_once)
            .map(|start| {
                let len = self.windows_at_once.min(w - start);
                let (gt, hd) = (
                    gt.clone().narrow(0, start, len),
                    hd.clone().narrow(0, start, len),
                );
                self.sca
                    .forward_in(gt.swap_dims(1, 2), hd.swap_dims(1, 2), self.precision) // [len, d, n]
                    .swap_dims(1, 2)
            })
            .collect();
        Tensor::cat(parts, 0)
    }
}

impl Teacher {
    /// Assembles a teacher; loads the model's tokenizer (GPT-2's ranks, or the checkpoint's
    /// `tokenizer.json` for other families; see [`Tokenizer::for_model_dir`]).
    pub fn new(
        gpt2: impl Into<LanguageModel>,
        sca: Sca,
        prompts: PromptBuilder,
        batch: BatchOptions,
    ) -> Result<Self, TeacherError> {
        let gpt2 = gpt2.into();
        Ok(Teacher {
            encoder: PromptEncoder {
                tokenizer: Tokenizer::for_model_dir(gpt2.model_dir())?,
                builder: prompts,
                n_vars: sca.n_vars(),
                max_tokens: gpt2.max_tokens(),
                threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            },
            sca: ScaStage::new(sca, gpt2.precision()),
            gpt2,
            batch,
        })
    }

    /// The language model.
    pub fn gpt2(&self) -> &LanguageModel {
        &self.gpt2
    }

    /// The SCA layer.
    pub fn sca(&self) -> &Sca {
        &self.sca.sca
    }

    /// The SCA half (clone it to run the SCA on another thread).
    pub fn sca_stage(&self) -> &ScaStage {
        &self.sca
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.encoder.tokenizer
    }

    /// The prompt wording and value format.
    pub fn prompt_builder(&self) -> &PromptBuilder {
        &self.encoder.builder
    }

    /// The prompt encoder (clone it to prepare prompts on another thread).
    pub fn encoder(&self) -> &PromptEncoder {
        &self.encoder
    }

    /// The batching options.
    pub fn batch_options(&self) -> &BatchOptions {
        &self.batch
    }

    /// Changes the batching options.
    pub fn set_batch_options(&mut self, options: BatchOptions) {
        self.batch = options;
    }

    /// Smaller passes after a device ran out of memory (see
    /// [`LanguageModel::shrink_passes`]): what it plans for now, or `None` at the minimum.
    pub fn shrink_passes(&mut self) -> Result<Option<String>, TeacherError> {
        self.gpt2.shrink_passes(&mut self.batch)
    }

    /// The stored embeddings of `windows`: [windows, N, D], each window's SCA output with
    /// its axes swapped. Errors name the window and variable of a prompt that is too long
    /// for the model. Same as [`embed_encoded`](Self::embed_encoded) of
    /// [`PromptEncoder::encode`].
    pub fn embed(&self, windows: &[WindowInput<'_>]) -> Result<Tensor<3>, TeacherError> {
        self.embed_encoded(&self.encoder.encode(windows)?)
    }

    /// The embeddings of windows at several output lengths: one entry per H that at least one
    /// window asks for, ascending. Each equals [`embed`](Self::embed) of the windows that ask
    /// for that H, with their futures cut to H. Same as
    /// [`embed_encoded_lengths`](Self::embed_encoded_lengths) of
    /// [`PromptEncoder::encode_lengths`].
    pub fn embed_lengths(
        &self,
        windows: &[LengthsInput<'_>],
    ) -> Result<Vec<LengthEmbeddings>, TeacherError> {
        self.embed_encoded_lengths(&self.encoder.encode_lengths(windows)?)
    }

    /// The embeddings of windows encoded for several output lengths, one entry per H,
    /// ascending. All prompts of a (window, variable) form one [`PromptFamily`]: its history
    /// sentence runs once for every H (unless [`BatchOptions::share_prefix`] is off). The
    /// same as [`ScaStage::embeddings`] of [`language_states`](Self::language_states).
    pub fn embed_encoded_lengths(
        &self,
        encoded: &EncodedLengths,
    ) -> Result<Vec<LengthEmbeddings>, TeacherError> {
        Ok(self.sca.embeddings(self.language_states(encoded)?))
    }

    /// The language model's half of [`embed_encoded_lengths`](Self::embed_encoded_lengths):
    /// the last-token states of every prompt, laid out for the SCA. The same as
    /// [`finish_language_states`](Self::finish_language_states) of
    /// [`queue_language_states`](Self::queue_language_states).
    pub fn language_states(&self, encoded: &EncodedLengths) -> Result<ChunkStates, TeacherError> {
        self.finish_language_states(self.queue_language_states(encoded)?)
    }

    /// [`language_states`](Self::language_states), queued on the device (see
    /// [`LanguageModel::queue_states`]): queue the next chunk, then finish this one, and the
    /// device need not wait for the host in between.
    pub fn queue_language_states(
        &self,
        encoded: &EncodedLengths,
    ) -> Result<PendingChunk, TeacherError> {
        let n = self.sca.sca.n_vars();
        if encoded.prompts.len() != encoded.windows.len() * n {
            return Err(TeacherError::Input(format!(
                "{} prompt families for {} windows of {n} variables",
                encoded.prompts.len(),
                encoded.windows.len()
            )));
        }
        let families: Vec<PromptFamily> = encoded
            .prompts
            .iter()
            .map(|prompts| PromptFamily::new(prompts.iter().collect(), self.batch.share_prefix))
            .collect();
        let states = self.gpt2.queue_states(&families, &self.batch)?;
        // Row of family f's first prompt in `states`.
        let mut first = Vec::with_capacity(families.len());
        let mut rows = 0i64;
        for family in &families {
            first.push(rows);
            rows += family.prompts().len() as i64;
        }
        let mut lengths = Vec::new();
        for (h, count) in encoded.lengths() {
            let mut length = LengthRows {
                output_len: h,
                windows: Vec::with_capacity(count),
                gt: Vec::with_capacity(count * n),
                hd: Vec::with_capacity(count * n),
            };
            for (w, (index, window_lengths)) in encoded.windows.iter().enumerate() {
                let Some(slot) = window_lengths.iter().position(|&l| l == h) else {
                    continue;
                };
                length.windows.push(*index);
                for v in 0..n {
                    let row = first[w * n + v] + 2 * slot as i64;
                    length.gt.push(row);
                    length.hd.push(row + 1);
                }
            }
            lengths.push(length);
        }
        Ok(PendingChunk { states, lengths })
    }

    /// The states of a [`queue_language_states`](Self::queue_language_states) call on this
    /// teacher: on the host when the fused GPU SCA takes them, else on the model's device.
    pub fn finish_language_states(&self, chunk: PendingChunk) -> Result<ChunkStates, TeacherError> {
        let states = if self.sca.is_fused() {
            States::Host {
                values: Arc::new(self.gpt2.finish_host_states(chunk.states)?),
                d: self.gpt2.d_model(),
            }
        } else {
            States::Tensor(Box::new(self.gpt2.finish_states(chunk.states)?))
        };
        Ok(ChunkStates {
            states,
            lengths: chunk.lengths,
        })
    }

    /// Runs the SCA stage of this teacher on `fused` (the same SCA on the model's GPU).
    #[cfg(feature = "cuda")]
    pub fn use_fused_sca(&mut self, fused: crate::cuda::CudaSca) {
        self.sca.fused = Some(Arc::new(Mutex::new(fused)));
    }

    /// The stored embeddings of encoded windows: [windows, N, D]. All 2·W·N prompts go
    /// through the language model together, batched by length, each GT/HD pair's shared
    /// prefix once (unless [`BatchOptions::share_prefix`] is off).
    pub fn embed_encoded(&self, encoded: &EncodedWindows) -> Result<Tensor<3>, TeacherError> {
        let (w, n, d) = (encoded.windows, self.sca.sca.n_vars(), self.gpt2.d_model());
        if encoded.prompts.len() != w * n {
            return Err(TeacherError::Input(format!(
                "{} prompt pairs for {w} windows of {n} variables",
                encoded.prompts.len()
            )));
        }
        if w == 0 {
            return Ok(Tensor::zeros([0, n, d], self.gpt2.device()));
        }
        let families: Vec<PromptFamily> = encoded
            .prompts
            .iter()
            .map(|p| PromptFamily::new(vec![&p.gt, &p.hd], self.batch.share_prefix))
            .collect();
        let states = self.gpt2.family_last_token_states(&families, &self.batch)?; // [2·w·n, d]
        let gt = pick_rows(
            &states,
            (0..w * n).map(|i| 2 * i as i64).collect(),
            [w, n, d],
        );
        let hd = pick_rows(
            &states,
            (0..w * n).map(|i| 2 * i as i64 + 1).collect(),
            [w, n, d],
        );
        Ok(self.sca.pairs(gt, hd))
    }
}

/// Windows the SCA runs at once unless set (see [`ScaStage::pairs`]).
const SCA_WINDOWS: usize = 32;

/// Rows `rows` of `states` [rows, d], reshaped to `shape` ([w, n, d]).
fn pick_rows(states: &Tensor<2>, rows: Vec<i64>, shape: [usize; 3]) -> Tensor<3> {
    let len = rows.len();
    let index = Tensor::<1, Int>::from_data(TensorData::new(rows, [len]), &states.device());
    states.clone().select(0, index).reshape(shape)
}
