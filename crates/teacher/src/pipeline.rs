//! The whole teacher for extraction: windows → prompts → tokens and types → batched
//! calibrated GPT-2 → SCA → one [N, D] embedding per window.

use burn::tensor::Tensor;
use chrono::NaiveDateTime;
use timekd_data::Window;

use crate::batch::BatchOptions;
use crate::error::TeacherError;
use crate::gpt2::Gpt2;
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

/// The teacher: tokenizer, calibrated GPT-2, SCA, prompt wording and batching.
pub struct Teacher {
    tokenizer: Gpt2Tokenizer,
    gpt2: Gpt2,
    sca: Sca,
    prompts: PromptBuilder,
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
            tokenizer: Gpt2Tokenizer::new()?,
            gpt2,
            sca,
            prompts,
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
        &self.tokenizer
    }

    /// The prompt wording and value format.
    pub fn prompt_builder(&self) -> &PromptBuilder {
        &self.prompts
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
    /// its axes swapped. All 2·W·N prompts go through the language model together,
    /// batched by length. Errors name the window and variable of a prompt that is too
    /// long for the model.
    pub fn embed(&self, windows: &[WindowInput<'_>]) -> Result<Tensor<3>, TeacherError> {
        let n = self.sca.n_vars();
        let d = self.gpt2.d_model();
        if let Some(w) = windows.iter().find(|w| w.n_vars() != n) {
            return Err(TeacherError::Input(format!(
                "window {} has {} variables but the SCA was built for {n}",
                w.index,
                w.n_vars()
            )));
        }
        if windows.is_empty() {
            return Ok(Tensor::zeros([0, n, d], self.gpt2.device()));
        }
        let encoded = encode_windows(&self.tokenizer, &self.prompts, windows)?;
        for p in &encoded {
            for (kind, prompt) in [("GT", &p.gt), ("HD", &p.hd)] {
                self.gpt2.check_length(prompt, || {
                    format!(
                        "the {kind} prompt of window {}, variable {}",
                        p.window, p.variable
                    )
                })?;
            }
        }
        let w = windows.len();
        let prompts: Vec<&EncodedPrompt> = encoded
            .iter()
            .map(|p| &p.gt)
            .chain(encoded.iter().map(|p| &p.hd))
            .collect();
        let states = self.gpt2.last_token_states(&prompts, &self.batch)?; // [2·w·n, d]
        let gt = states.clone().narrow(0, 0, w * n).reshape([w, n, d]);
        let hd = states.narrow(0, w * n, w * n).reshape([w, n, d]);
        let out = self.sca.forward(gt.swap_dims(1, 2), hd.swap_dims(1, 2)); // [w, d, n]
        Ok(out.swap_dims(1, 2))
    }
}
