//! The whole teacher for extraction: windows → prompts → tokens and types → batched
//! calibrated GPT-2 → SCA → one [N, D] embedding per window.

use burn::tensor::{Int, Tensor, TensorData};
use chrono::NaiveDateTime;
use timekd_data::Window;

use crate::batch::BatchOptions;
use crate::error::TeacherError;
use crate::family::PromptFamily;
use crate::language_model::{LanguageModel, PendingStates};
use crate::parallel::map_in_threads;
use crate::precision::Precision;
use crate::prompt::{PromptBuilder, PromptPair};
use crate::sca::Sca;
use crate::tokenizer::{EncodedPrompt, PromptTokenizer, Tokenizer};

/// The unscaled values and history timestamps of one window: what its prompts need.
#[derive(Debug, Clone)]
pub struct WindowInput<'a> {
    /// The window's index in its split (for messages and labels).
    pub index: usize,
    /// Timestamp of the first history row.
    pub start: NaiveDateTime,
    /// Timestamp of the last history row.
    pub end: NaiveDateTime,
    /// Per variable, the L history values.
    pub history: Vec<&'a [f64]>,
    /// Per variable, the H future values.
    pub future: Vec<&'a [f64]>,
}

impl<'a> WindowInput<'a> {
    /// The first `n_vars` variables of a data window (all of them: `Dataset::n_vars`).
    pub fn from_window(window: &Window<'a>, n_vars: usize) -> Self {
        WindowInput {
            index: window.index(),
            start: window.history_start(),
            end: window.history_end(),
            history: (0..n_vars).map(|v| window.history_raw(v)).collect(),
            future: (0..n_vars).map(|v| window.future_raw(v)).collect(),
        }
    }

    /// Number of variables.
    pub fn n_vars(&self) -> usize {
        self.history.len()
    }
}

/// One window wanted at several output lengths H (`timekd extract --output-len 24,48,...`).
///
/// Window i of a split has the same history rows for every H; its future holds at least the
/// longest H asked for (the values after the history, as many as that H needs).
#[derive(Debug, Clone)]
pub struct LengthsInput<'a> {
    /// History and future; every `future[v]` has at least `max(lengths)` values.
    pub window: WindowInput<'a>,
    /// The output lengths to embed the window for: ascending, distinct, each ≥ 1.
    pub lengths: Vec<usize>,
}

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

/// The prompts of one (window, variable), as text and as typed tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariablePrompts {
    /// Window index in its split.
    pub window: usize,
    /// Variable index (model order).
    pub variable: usize,
    /// The two prompt strings.
    pub text: PromptPair,
    /// The GT prompt's tokens and types.
    pub gt: EncodedPrompt,
    /// The HD prompt's tokens and types (type walk continued from the GT prompt).
    pub hd: EncodedPrompt,
}

/// Builds and tokenises the prompts of every (window, variable), window-major; windows are
/// split over the machine's threads.
pub fn encode_windows(
    tokenizer: &(impl PromptTokenizer + Sync + ?Sized),
    builder: &PromptBuilder,
    windows: &[WindowInput<'_>],
) -> Result<Vec<VariablePrompts>, TeacherError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_window = map_in_threads(windows, threads, |w| {
        if w.future.len() != w.history.len() {
            return Err(TeacherError::Input(format!(
                "window {} has history for {} variables but future for {}",
                w.index,
                w.history.len(),
                w.future.len()
            )));
        }
        w.history
            .iter()
            .zip(&w.future)
            .enumerate()
            .map(|(v, (history, future))| {
                let text = builder.build(history, future, w.start, w.end);
                let (gt, hd) = tokenizer.encode_pair(&text)?;
                Ok(VariablePrompts {
                    window: w.index,
                    variable: v,
                    text,
                    gt,
                    hd,
                })
            })
            .collect::<Result<Vec<_>, TeacherError>>()
    })?;
    Ok(per_window.into_iter().flatten().collect())
}

/// Windows → checked, tokenised prompt pairs: the CPU half of the teacher. It is `Clone` and
/// `Send`, so prompts for the next windows can be prepared on another thread while the
/// language model runs.
#[derive(Clone)]
pub struct PromptEncoder {
    tokenizer: Tokenizer,
    builder: PromptBuilder,
    n_vars: usize,
    max_tokens: usize,
    /// Threads [`encode_lengths`](Self::encode_lengths) splits windows over.
    threads: usize,
}

/// The prompts of a run of windows, ready for [`Teacher::embed_encoded`].
#[derive(Debug, Clone)]
pub struct EncodedWindows {
    windows: usize,
    prompts: Vec<VariablePrompts>,
}

impl EncodedWindows {
    /// Number of windows.
    pub fn windows(&self) -> usize {
        self.windows
    }

    /// The prompts, window-major.
    pub fn prompts(&self) -> &[VariablePrompts] {
        &self.prompts
    }
}

/// The prompts of windows for several output lengths, ready for
/// [`Teacher::embed_encoded_lengths`].
#[derive(Debug, Clone)]
pub struct EncodedLengths {
    /// Per window: its index and the output lengths it asks for (ascending).
    windows: Vec<(usize, Vec<usize>)>,
    /// Per (window, variable), window-major: `[GT_h, HD_h]` for each of the window's lengths.
    prompts: Vec<Vec<EncodedPrompt>>,
}

impl EncodedLengths {
    /// The output lengths, ascending, each with how many windows ask for it.
    pub fn lengths(&self) -> Vec<(usize, usize)> {
        let mut all: Vec<usize> = self.windows.iter().flat_map(|(_, l)| l.clone()).collect();
        all.sort_unstable();
        let mut counted: Vec<(usize, usize)> = Vec::new();
        for h in all {
            match counted.last_mut() {
                Some((last, n)) if *last == h => *n += 1,
                _ => counted.push((h, 1)),
            }
        }
        counted
    }

    /// Number of windows.
    pub fn windows(&self) -> usize {
        self.windows.len()
    }

    /// Tokens of every prompt, as if each ran whole (for rates).
    pub fn prompt_tokens(&self) -> usize {
        self.prompts.iter().flatten().map(EncodedPrompt::len).sum()
    }
}

impl PromptEncoder {
    /// The encoder with [`encode_lengths`](Self::encode_lengths) split over `threads`
    /// threads (default: the machine's available parallelism).
    pub fn with_threads(self, threads: usize) -> Self {
        PromptEncoder {
            threads: threads.max(1),
            ..self
        }
    }

    /// [`encode`](Self::encode) for several output lengths: the GT and HD prompts of every
    /// (window, variable) at each H the window asks for (its future cut to H). Each
    /// variable's history sentence is tokenised once for all of them; windows are split over
    /// the encoder's threads. Errors name a window whose future is shorter than an H it asks
    /// for, or a prompt longer than the model takes.
    pub fn encode_lengths(
        &self,
        windows: &[LengthsInput<'_>],
    ) -> Result<EncodedLengths, TeacherError> {
        let n = self.n_vars;
        for w in windows {
            let input = &w.window;
            if input.n_vars() != n || input.future.len() != n {
                return Err(TeacherError::Input(format!(
                    "window {} has {} variables but the SCA was built for {n}",
                    input.index,
                    input.n_vars()
                )));
            }
            if w.lengths.is_empty()
                || !w.lengths.windows(2).all(|p| p[0] < p[1])
                || w.lengths[0] == 0
            {
                return Err(TeacherError::Input(format!(
                    "window {}: output lengths {:?} must be one or more, ascending, distinct and ≥ 1",
                    input.index, w.lengths
                )));
            }
            if let Some(&h) = w.lengths.last()
                && let Some(short) = input.future.iter().find(|f| f.len() < h)
            {
                return Err(TeacherError::Input(format!(
                    "window {} has {} future values, fewer than H = {h}",
                    input.index,
                    short.len()
                )));
            }
        }
        let per_window = map_in_threads(windows, self.threads, |w| self.window_lengths(w))?;
        let mut prompts = Vec::with_capacity(windows.len() * n);
        for window in per_window {
            prompts.extend(window.chunks(window.len() / n).map(<[_]>::to_vec));
        }
        Ok(EncodedLengths {
            windows: windows
                .iter()
                .map(|w| (w.window.index, w.lengths.clone()))
                .collect(),
            prompts,
        })
    }

    /// The prompts of one window at its lengths: per variable `[GT_h, HD_h]` for each h,
    /// variables one after another.
    fn window_lengths(&self, w: &LengthsInput<'_>) -> Result<Vec<EncodedPrompt>, TeacherError> {
        let input = &w.window;
        let mut out = Vec::with_capacity(2 * w.lengths.len() * input.n_vars());
        for (v, (history, future)) in input.history.iter().zip(&input.future).enumerate() {
            let head = self
                .builder
                .history_sentence(history, input.start, input.end);
            let continuations: Vec<(String, String)> = w
                .lengths
                .iter()
                .map(|&h| {
                    (
                        self.builder.gt_continuation(&future[..h]),
                        self.builder.hd_continuation(h),
                    )
                })
                .collect();
            let pairs = self.tokenizer.encode_pairs_after(&head, &continuations)?;
            for (&h, (gt, hd)) in w.lengths.iter().zip(pairs) {
                for (kind, prompt) in [("GT", &gt), ("HD", &hd)] {
                    if prompt.len() > self.max_tokens {
                        return Err(TeacherError::PromptTooLong {
                            what: format!(
                                "the {kind} prompt of window {}, variable {v}, H = {h}",
                                input.index
                            ),
                            tokens: prompt.len(),
                            limit: self.max_tokens,
                        });
                    }
                }
                out.push(gt);
                out.push(hd);
            }
        }
        Ok(out)
    }

    /// Builds, tokenises and checks the prompts of `windows`: each must have `n_vars`
    /// variables and every prompt must fit the model (errors name window and variable).
    pub fn encode(&self, windows: &[WindowInput<'_>]) -> Result<EncodedWindows, TeacherError> {
        let n = self.n_vars;
        if let Some(w) = windows.iter().find(|w| w.n_vars() != n) {
            return Err(TeacherError::Input(format!(
                "window {} has {} variables but the SCA was built for {n}",
                w.index,
                w.n_vars()
            )));
        }
        let prompts = encode_windows(&self.tokenizer, &self.builder, windows)?;
        for p in &prompts {
            for (kind, prompt) in [("GT", &p.gt), ("HD", &p.hd)] {
                let what = || {
                    format!(
                        "the {kind} prompt of window {}, variable {}",
                        p.window, p.variable
                    )
                };
                if prompt.len() > self.max_tokens {
                    return Err(TeacherError::PromptTooLong {
                        what: what(),
                        tokens: prompt.len(),
                        limit: self.max_tokens,
                    });
                }
                if prompt.is_empty() {
                    return Err(TeacherError::EmptyPrompt { what: what() });
                }
            }
        }
        Ok(EncodedWindows {
            windows: windows.len(),
            prompts,
        })
    }
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
    states: Tensor<2>,
    /// Per output length, ascending.
    lengths: Vec<LengthRows>,
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
        }
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
        let d = chunk.states.dims()[1];
        let n = self.sca.n_vars();
        chunk
            .lengths
            .into_iter()
            .map(|length| {
                let count = length.windows.len();
                let gt = pick_rows(&chunk.states, length.gt, [count, n, d]);
                let hd = pick_rows(&chunk.states, length.hd, [count, n, d]);
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
    /// teacher.
    pub fn finish_language_states(&self, chunk: PendingChunk) -> Result<ChunkStates, TeacherError> {
        Ok(ChunkStates {
            states: self.gpt2.finish_states(chunk.states)?,
            lengths: chunk.lengths,
        })
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
