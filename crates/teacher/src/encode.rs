//! The CPU half of the teacher: windows → prompt text → typed tokens, checked against the
//! model's longest prompt ([`PromptEncoder`], [`encode_windows`]).

use chrono::NaiveDateTime;
use timekd_data::Window;

use crate::error::TeacherError;
use crate::parallel::map_in_threads;
use crate::prompt::{PromptBuilder, PromptPair};
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
    pub(crate) tokenizer: Tokenizer,
    pub(crate) builder: PromptBuilder,
    pub(crate) n_vars: usize,
    pub(crate) max_tokens: usize,
    /// Threads [`encode_lengths`](Self::encode_lengths) splits windows over.
    pub(crate) threads: usize,
}

/// The prompts of a run of windows, ready for
/// [`Teacher::embed_encoded`](crate::Teacher::embed_encoded).
#[derive(Debug, Clone)]
pub struct EncodedWindows {
    pub(crate) windows: usize,
    pub(crate) prompts: Vec<VariablePrompts>,
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
/// [`Teacher::embed_encoded_lengths`](crate::Teacher::embed_encoded_lengths).
#[derive(Debug, Clone)]
pub struct EncodedLengths {
    /// Per window: its index and the output lengths it asks for (ascending).
    pub(crate) windows: Vec<(usize, Vec<usize>)>,
    /// Per (window, variable), window-major: `[GT_h, HD_h]` for each of the window's lengths.
    pub(crate) prompts: Vec<Vec<EncodedPrompt>>,
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
