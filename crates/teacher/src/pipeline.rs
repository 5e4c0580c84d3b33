//! The whole teacher for extraction: windows → prompts → tokens and types → batched
//! calibrated GPT-2 → SCA → one [N, D] embedding per window.

use burn::tensor::Tensor;
use chrono::NaiveDateTime;
use timekd_data::Window;

use crate::batch::BatchOptions;
use crate::error::TeacherError;
use crate::gpt2::Gpt2;
use crate::precision::Precision;
use crate::prompt::{PromptBuilder, PromptPair};
use crate::sca::Sca;
use crate::tokenizer::{EncodedPrompt, Gpt2Tokenizer};

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

/// Builds and tokenises the prompts of every (window, variable), window-major.
pub fn encode_windows(
    tokenizer: &Gpt2Tokenizer,
    builder: &PromptBuilder,
    windows: &[WindowInput<'_>],
) -> Result<Vec<VariablePrompts>, TeacherError> {
    let mut out = Vec::with_capacity(windows.iter().map(WindowInput::n_vars).sum());
    for w in windows {
        if w.future.len() != w.history.len() {
            return Err(TeacherError::Input(format!(
                "window {} has history for {} variables but future for {}",
                w.index,
                w.history.len(),
                w.future.len()
            )));
        }
        for (v, (history, future)) in w.history.iter().zip(&w.future).enumerate() {
            let text = builder.build(history, future, w.start, w.end);
            let (gt, hd) = tokenizer.encode_pair(&text);
            out.push(VariablePrompts {
                window: w.index,
                variable: v,
                text,
                gt,
                hd,
            });
        }
    }
    Ok(out)
}

/// Windows → checked, tokenised prompt pairs: the CPU half of the teacher. It is `Clone` and
/// `Send`, so prompts for the next windows can be prepared on another thread while the
/// language model runs.
#[derive(Clone)]
pub struct PromptEncoder {
    tokenizer: Gpt2Tokenizer,
    builder: PromptBuilder,
    n_vars: usize,
    max_tokens: usize,
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

impl PromptEncoder {
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

/// The teacher: prompt encoder, calibrated GPT-2, SCA and batching.
pub struct Teacher {
    encoder: PromptEncoder,
    gpt2: Gpt2,
    sca: Sca,
    batch: BatchOptions,
}

impl Teacher {
    /// Assembles a teacher; loads the tokenizer's ranks.
    pub fn new(
        gpt2: Gpt2,
        sca: Sca,
        prompts: PromptBuilder,
        batch: BatchOptions,
    ) -> Result<Self, TeacherError> {
        Ok(Teacher {
            encoder: PromptEncoder {
                tokenizer: Gpt2Tokenizer::new()?,
                builder: prompts,
                n_vars: sca.n_vars(),
                max_tokens: gpt2.max_tokens(),
            },
            gpt2,
            sca,
            batch,
        })
    }

    /// The language model.
    pub fn gpt2(&self) -> &Gpt2 {
        &self.gpt2
    }

    /// The SCA layer.
    pub fn sca(&self) -> &Sca {
        &self.sca
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Gpt2Tokenizer {
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

    /// Changes the batching options, e.g. smaller passes after a device ran out of memory.
    pub fn set_batch_options(&mut self, options: BatchOptions) {
        self.batch = options;
    }

    /// The stored embeddings of `windows`: [windows, N, D], each window's SCA output with
    /// its axes swapped. Errors name the window and variable of a prompt that is too long
    /// for the model. Same as [`embed_encoded`](Self::embed_encoded) of
    /// [`PromptEncoder::encode`].
    pub fn embed(&self, windows: &[WindowInput<'_>]) -> Result<Tensor<3>, TeacherError> {
        self.embed_encoded(&self.encoder.encode(windows)?)
    }

    /// The stored embeddings of encoded windows: [windows, N, D]. All 2·W·N prompts go
    /// through the language model together, batched by length, each GT/HD pair's shared
    /// prefix once (unless [`BatchOptions::share_prefix`] is off).
    pub fn embed_encoded(&self, encoded: &EncodedWindows) -> Result<Tensor<3>, TeacherError> {
        let (w, n, d) = (encoded.windows, self.sca.n_vars(), self.gpt2.d_model());
        if encoded.prompts.len() != w * n {
            return Err(TeacherError::Input(format!(
                "{} prompt pairs for {w} windows of {n} variables",
                encoded.prompts.len()
            )));
        }
        if w == 0 {
            return Ok(Tensor::zeros([0, n, d], self.gpt2.device()));
        }
        let pairs: Vec<(&EncodedPrompt, &EncodedPrompt)> =
            encoded.prompts.iter().map(|p| (&p.gt, &p.hd)).collect();
        let (gt, hd) = self.gpt2.pair_last_token_states(&pairs, &self.batch)?; // [w·n, d] each
        let gt = gt.reshape([w, n, d]);
        let hd = hd.reshape([w, n, d]);
        // The SCA is tiny: f32 accuracy whatever the model's precision (split products on a
        // GPU, where plain f32 products are TF32).
        let sca_precision = match self.gpt2.precision() {
            Precision::F32 => Precision::F32,
            _ => Precision::F32Split,
        };
        let out = self
            .sca
            .forward_in(gt.swap_dims(1, 2), hd.swap_dims(1, 2), sca_precision); // [w, d, n]
        Ok(out.swap_dims(1, 2))
    }
}
