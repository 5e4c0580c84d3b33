//! The calibrated language model: GPT-2 loaded from a Hugging Face directory, run in Burn
//! with each prompt's calibration mask.
//!
//! [`Gpt2::load`] resolves a directory or a cached model id ([`resolve`]), reads
//! `config.json` and `model.safetensors`, keeps the first `layers` blocks and records the
//! sha256 of the weights file for store fingerprints. [`Gpt2::hidden_states`] runs one
//! prompt and returns every position's state; the batched last-token forward used for
//! extraction is [`Gpt2::last_token_states`](crate::batch).

mod config;
#[cfg(feature = "hub")]
pub mod hub;
mod load;
mod model;
pub(crate) mod names;
pub mod resolve;

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Int, Tensor, TensorData};

pub use config::Gpt2Config;
pub use model::{BLOCKED, CALIBRATION_PENALTY, calibrated_mask, causal_mask};
pub(crate) use model::{Gpt2Module, LayerKv};
pub use resolve::{hub_cache_roots, resolve_model_dir, resolve_model_dir_in};

use crate::error::TeacherError;
use crate::precision::Precision;
use crate::tokenizer::EncodedPrompt;
use crate::weights::WeightFile;

/// A loaded GPT-2, frozen, on one device.
#[derive(Debug)]
pub struct Gpt2 {
    pub(crate) module: Gpt2Module,
    config: Gpt2Config,
    layers: usize,
    weights_sha256: String,
    dir: PathBuf,
    device: Device,
    precision: Precision,
}

impl Gpt2 {
    /// Loads `spec` (a directory, or a model id found in the Hugging Face cache) with its
    /// first `layers` blocks (all when `None`) onto `device`.
    pub fn load(spec: &str, layers: Option<usize>, device: &Device) -> Result<Self, TeacherError> {
        let dir = resolve::resolve_model_dir(spec)?;
        Self::load_dir(&dir, layers, device)
    }

    /// Loads the model in `dir` (`config.json` + `model.safetensors`).
    pub fn load_dir(
        dir: &Path,
        layers: Option<usize>,
        device: &Device,
    ) -> Result<Self, TeacherError> {
        let (config, layers) = Gpt2Config::for_model_dir(dir, layers)?;
        let file = WeightFile::read(&dir.join("model.safetensors"), "model.safetensors")?;
        let mut tensors = file.tensors()?;
        let module = load::build_module(&mut tensors, &config, layers, device)?;
        Ok(Gpt2 {
            module,
            weights_sha256: file.sha256(),
            config,
            layers,
            dir: dir.to_path_buf(),
            device: device.clone(),
            precision: Precision::F32,
        })
    }

    /// The model computing its matrix products in `precision` (loaded models start in
    /// [`Precision::F32`]). Half precisions round the weights, so a model can leave f32 once:
    /// asking a bf16 model for f16 is an error; load it again instead.
    pub fn with_precision(self, precision: Precision) -> Result<Self, TeacherError> {
        let rounded = self.precision.compute_dtype() != burn::tensor::FloatDType::F32;
        if rounded && precision != self.precision {
            return Err(TeacherError::Input(format!(
                "the model's weights are already rounded to {}; load it again for {precision}",
                self.precision
            )));
        }
        Ok(Gpt2 {
            module: self.module.prepared(precision),
            precision,
            ..self
        })
    }

    /// The float type of the matrix products.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The checkpoint's configuration.
    pub fn config(&self) -> &Gpt2Config {
        &self.config
    }

    /// Number of blocks in use.
    pub fn layers(&self) -> usize {
        self.layers
    }

    /// Width D of the hidden states.
    pub fn d_model(&self) -> usize {
        self.config.n_embd
    }

    /// Longest prompt the model takes (`n_positions`).
    pub fn max_tokens(&self) -> usize {
        self.config.n_positions
    }

    /// Lowercase hex sha256 of `model.safetensors`.
    pub fn weights_sha256(&self) -> &str {
        &self.weights_sha256
    }

    /// The directory the model was loaded from.
    pub fn model_dir(&self) -> &Path {
        &self.dir
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Every position's final state (after `ln_f`) of one prompt: [tokens, d].
    /// `calibrated: false` gives plain causal GPT-2 (Hugging Face's `GPT2Model`).
    pub fn hidden_states(
        &self,
        prompt: &EncodedPrompt,
        calibrated: bool,
    ) -> Result<Tensor<2>, TeacherError> {
        self.check_length(prompt, || "the prompt".to_string())?;
        let t = prompt.len();
        let ids = self.ids_tensor(&prompt.ids, [1, t]);
        let mask = if calibrated {
            let types = self.types_tensor(prompt.types.iter().copied(), [1, t]);
            calibrated_mask(types.clone(), types, None)
        } else {
            causal_mask(t, &self.device)
        };
        let out = self
            .module
            .blocks_forward(ids, self.positions(0..t), &mask, self.precision);
        Ok(self.module.final_norm(out).reshape([t, self.config.n_embd]))
    }

    /// Errors when `prompt` is empty or longer than `n_positions`; `what` names it.
    pub(crate) fn check_length(
        &self,
        prompt: &EncodedPrompt,
        what: impl Fn() -> String,
    ) -> Result<(), TeacherError> {
        if prompt.is_empty() {
            return Err(TeacherError::EmptyPrompt { what: what() });
        }
        if prompt.len() > self.config.n_positions {
            return Err(TeacherError::PromptTooLong {
                what: what(),
                tokens: prompt.len(),
                limit: self.config.n_positions,
            });
        }
        Ok(())
    }

    pub(crate) fn ids_tensor(&self, ids: &[u32], shape: [usize; 2]) -> Tensor<2, Int> {
        let ids: Vec<i64> = ids.iter().map(|&i| i64::from(i)).collect();
        Tensor::from_data(TensorData::new(ids, shape), &self.device)
    }

    /// Positions `range` as a [1, len] tensor (shared by a whole batch).
    pub(crate) fn positions(&self, range: std::ops::Range<usize>) -> Tensor<2, Int> {
        let len = range.len();
        Tensor::<1, Int>::arange(range.start as i64..range.end as i64, &self.device)
            .reshape([1, len])
    }

    pub(crate) fn types_tensor(
        &self,
        types: impl Iterator<Item = crate::tokenizer::TokenType>,
        shape: [usize; 2],
    ) -> Tensor<2> {
        let codes: Vec<f32> = types.map(|t| f32::from(t.code())).collect();
        Tensor::from_data(TensorData::new(codes, shape), &self.device)
    }
}
