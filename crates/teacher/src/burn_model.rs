//! [`BurnModel`]: a family's checkpoint loaded into Burn, frozen, on one device: the CPU
//! path and the reference every faster path is checked against.
//!
//! [`BurnModel::load`] resolves a directory or a cached model id, reads `config.json` and
//! `model.safetensors`, keeps the first `layers` blocks and records the sha256 of the weights
//! file for store fingerprints. [`BurnModel::hidden_states`] runs one prompt and returns
//! every position's state; the batched last-token forwards used for extraction are in
//! [`batch`](crate::batch).

use std::path::{Path, PathBuf};

use burn::tensor::{Device, FloatDType, Int, Tensor, TensorData};

use crate::arch::{self, Architecture};
use crate::error::TeacherError;
use crate::families;
use crate::gpt2::resolve;
use crate::mask::{BLOCKED, calibrated_bidirectional_mask, calibrated_mask, causal_mask};
use crate::precision::Precision;
use crate::shape::ModelShape;
use crate::tokenizer::{EncodedPrompt, TokenType};
use crate::weights::Checkpoint;

/// A loaded model of family `A`, frozen, on one device.
#[derive(Debug)]
pub struct BurnModel<A: Architecture> {
    pub(crate) module: A,
    config: A::Config,
    shape: ModelShape,
    layers: usize,
    weights_sha256: String,
    dir: PathBuf,
    device: Device,
    precision: Precision,
}

impl<A: Architecture> BurnModel<A> {
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
        let config = families::read_config::<A>(dir)?;
        Self::from_config(dir, config, layers, device)
    }

    /// Loads the weights of `dir` for a `config` already read from it.
    pub fn from_config(
        dir: &Path,
        config: A::Config,
        layers: Option<usize>,
        device: &Device,
    ) -> Result<Self, TeacherError> {
        let shape = A::shape(&config);
        let layers = shape.layers_in_use(layers)?;
        let file = Checkpoint::read(dir)?;
        let mut tensors = file.tensors()?;
        let module = A::build(&mut tensors, &config, layers, device)?;
        Ok(BurnModel {
            module,
            weights_sha256: file.sha256(),
            config,
            shape,
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
        let rounded = self.precision.compute_dtype() != FloatDType::F32;
        if rounded && precision != self.precision {
            return Err(TeacherError::Input(format!(
                "the model's weights are already rounded to {}; load it again for {precision}",
                self.precision
            )));
        }
        Ok(BurnModel {
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
    pub fn config(&self) -> &A::Config {
        &self.config
    }

    /// The checkpoint's sizes.
    pub fn shape(&self) -> &ModelShape {
        &self.shape
    }

    /// Number of blocks in use.
    pub fn layers(&self) -> usize {
        self.layers
    }

    /// Width D of the hidden states.
    pub fn d_model(&self) -> usize {
        self.shape.d_model
    }

    /// Longest prompt the model takes.
    pub fn max_tokens(&self) -> usize {
        self.shape.max_tokens
    }

    /// Lowercase hex sha256 of `model.safetensors` (of its shards' digests when split; see
    /// [`weights`](crate::weights)).
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

    /// Every position's final state (after the final norm) of one prompt: [tokens, d].
    /// `calibrated: false` gives the plain model (Hugging Face's, causal or bidirectional).
    pub fn hidden_states(
        &self,
        prompt: &EncodedPrompt,
        calibrated: bool,
    ) -> Result<Tensor<2>, TeacherError> {
        self.check_length(prompt, || "the prompt".to_string())?;
        let t = prompt.len();
        let ids = self.ids_tensor(&prompt.ids, [1, t]);
        let types = self.types_tensor(prompt.types.iter().copied(), [1, t]);
        let mask = if calibrated {
            self.prompt_mask(types, None)
        } else if A::CAUSAL {
            causal_mask(t, &self.device)
        } else {
            Tensor::zeros([1, 1, t, t], &self.device)
        };
        let out = arch::hidden_states(
            &self.module,
            ids,
            &self.positions(0..t),
            &mask,
            self.precision,
        );
        Ok(out.reshape([t, self.shape.d_model]))
    }

    /// The calibrated mask of whole padded prompts of `types` [b, t] whose real lengths are
    /// `lengths` (`None`: no padding): causal for decoders (which hides the padding), with
    /// the padding keys blocked for encoders.
    pub(crate) fn prompt_mask(&self, types: Tensor<2>, lengths: Option<&[usize]>) -> Tensor<4> {
        if A::CAUSAL {
            return calibrated_mask(types.clone(), types, None);
        }
        let [b, t] = types.dims();
        let penalty = lengths.map(|lengths| {
            let mut values = vec![0.0f32; b * t];
            for (row, &len) in lengths.iter().enumerate() {
                values[row * t + len..(row + 1) * t].fill(BLOCKED as f32);
            }
            Tensor::from_data(TensorData::new(values, [b, t]), &self.device)
        });
        calibrated_bidirectional_mask(types, penalty)
    }

    /// Errors when `prompt` is empty or longer than the model takes; `what` names it.
    pub(crate) fn check_length(
        &self,
        prompt: &EncodedPrompt,
        what: impl Fn() -> String,
    ) -> Result<(), TeacherError> {
        if prompt.is_empty() {
            return Err(TeacherError::EmptyPrompt { what: what() });
        }
        if prompt.len() > self.shape.max_tokens {
            return Err(TeacherError::PromptTooLong {
                what: what(),
                tokens: prompt.len(),
                limit: self.shape.max_tokens,
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
        types: impl Iterator<Item = TokenType>,
        shape: [usize; 2],
    ) -> Tensor<2> {
        let codes: Vec<f32> = types.map(|t| f32::from(t.code())).collect();
        Tensor::from_data(TensorData::new(codes, shape), &self.device)
    }
}
