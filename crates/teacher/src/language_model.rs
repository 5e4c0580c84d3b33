//! [`LanguageModel`]: the calibrated language model a [`Teacher`](crate::Teacher) runs —
//! any family in Burn, or the CUDA engine — behind one interface.

use std::path::Path;

use burn::tensor::{Device, Tensor};

use crate::arch::Architecture;
use crate::batch::BatchOptions;
use crate::burn_model::BurnModel;
use crate::error::{TeacherError, read_back};
use crate::family::PromptFamily;
use crate::precision::Precision;
use crate::shape::ModelShape;

/// What extraction needs of a model implementation.
pub(crate) trait CalibratedModel: Send {
    fn shape(&self) -> &ModelShape;
    fn layers(&self) -> usize;
    fn weights_sha256(&self) -> &str;
    fn model_dir(&self) -> &Path;
    fn precision(&self) -> Precision;
    fn device(&self) -> &Device;
    fn engine_name(&self) -> String;
    fn shrink_passes(&mut self, options: &mut BatchOptions)
    -> Result<Option<String>, TeacherError>;
    fn family_last_token_states(
        &self,
        families: &[PromptFamily<'_>],
        options: &BatchOptions,
    ) -> Result<Tensor<2>, TeacherError>;
    /// Queues [`family_last_token_states`](Self::family_last_token_states); a model that
    /// cannot queue computes them at once.
    fn queue_states(
        &self,
        families: &[PromptFamily<'_>],
        options: &BatchOptions,
    ) -> Result<PendingStates, TeacherError> {
        let states = self.family_last_token_states(families, options)?;
        Ok(PendingStates(Pending::Ready(Box::new(states))))
    }
    /// The states of a [`queue_states`](Self::queue_states) call.
    fn finish_states(&self, pending: PendingStates) -> Result<Tensor<2>, TeacherError> {
        match pending.0 {
            Pending::Ready(states) => Ok(*states),
            #[cfg(feature = "cuda")]
            Pending::Engine { .. } => Err(TeacherError::Cuda(
                "states queued on the CUDA engine were handed to another model".into(),
            )),
        }
    }
    /// [`finish_states`](Self::finish_states) on the host, row-major (the CUDA engine's
    /// are there already).
    fn finish_host_states(&self, pending: PendingStates) -> Result<Vec<f32>, TeacherError> {
        read_back(self.finish_states(pending)?)
    }
    /// The CUDA device ordinal of the CUDA engine; `None` for Burn's models.
    fn cuda_engine_ordinal(&self) -> Option<usize> {
        None
    }
}

/// Last-token states queued on a model's device ([`LanguageModel::queue_states`]); read them
/// with [`LanguageModel::finish_states`] on the same model.
pub struct PendingStates(pub(crate) Pending);

pub(crate) enum Pending {
    /// Computed already (boxed: a tensor is large beside the engine's handle).
    Ready(Box<Tensor<2>>),
    /// Queued on the CUDA engine: `rows` states of width `d`.
    #[cfg(feature = "cuda")]
    Engine {
        queued: crate::cuda::QueuedStates,
        rows: usize,
    },
}

/// The calibrated language model of a teacher: a family's [`BurnModel`] (any Burn device)
/// or, in CUDA builds, the CUDA engine.
pub struct LanguageModel(Box<dyn CalibratedModel>);

impl<A: Architecture> From<BurnModel<A>> for LanguageModel {
    fn from(model: BurnModel<A>) -> Self {
        LanguageModel(Box::new(model))
    }
}

impl LanguageModel {
    /// Wraps an implementation (the CUDA engine).
    #[cfg(feature = "cuda")]
    pub(crate) fn new(model: Box<dyn CalibratedModel>) -> Self {
        LanguageModel(model)
    }

    /// The checkpoint's sizes (and family).
    pub fn shape(&self) -> &ModelShape {
        self.0.shape()
    }

    /// The family's `model_type` (`gpt2`, `llama`, `bert`).
    pub fn family(&self) -> &'static str {
        self.shape().family
    }

    /// Blocks in use.
    pub fn layers(&self) -> usize {
        self.0.layers()
    }

    /// Width D of the hidden states.
    pub fn d_model(&self) -> usize {
        self.shape().d_model
    }

    /// Longest prompt the model takes.
    pub fn max_tokens(&self) -> usize {
        self.shape().max_tokens
    }

    /// Lowercase hex sha256 of `model.safetensors`.
    pub fn weights_sha256(&self) -> &str {
        self.0.weights_sha256()
    }

    /// The directory the model was loaded from.
    pub fn model_dir(&self) -> &Path {
        self.0.model_dir()
    }

    /// The float type of the matrix products.
    pub fn precision(&self) -> Precision {
        self.0.precision()
    }

    /// The Burn device the states are returned on.
    pub fn device(&self) -> &Device {
        self.0.device()
    }

    /// Which implementation runs, for logs: `burn` or `cuda engine (<GPU name>)`.
    pub fn engine_name(&self) -> String {
        self.0.engine_name()
    }

    /// Makes the next passes smaller after the device ran out of memory: halves the batch
    /// options' tokens and prompts per pass for Burn's models, the CUDA engine's planned pass
    /// and cache sizes (re-allocated) for the engine. Says what it plans for now, or `None`
    /// when the passes are already as small as they go (one prompt).
    pub fn shrink_passes(
        &mut self,
        options: &mut BatchOptions,
    ) -> Result<Option<String>, TeacherError> {
        self.0.shrink_passes(options)
    }

    /// The last-token states of every prompt of `families`, family by family: [Σ prompts, d]
    /// (see [`BurnModel::family_last_token_states`]; the CUDA engine packs its own passes and
    /// ignores `options`' pass sizes).
    pub fn family_last_token_states(
        &self,
        families: &[PromptFamily<'_>],
        options: &BatchOptions,
    ) -> Result<Tensor<2>, TeacherError> {
        self.0.family_last_token_states(families, options)
    }

    /// [`family_last_token_states`](Self::family_last_token_states), queued: the CUDA engine
    /// returns once the passes and the copy of their states are queued on the GPU, so the
    /// caller can queue the next chunk before reading this one
    /// ([`finish_states`](Self::finish_states)); Burn's models compute them at once. At most
    /// two calls are queued at once.
    pub fn queue_states(
        &self,
        families: &[PromptFamily<'_>],
        options: &BatchOptions,
    ) -> Result<PendingStates, TeacherError> {
        self.0.queue_states(families, options)
    }

    /// The states of a [`queue_states`](Self::queue_states) call on this model: [Σ prompts,
    /// d], waiting for the device where they are still being computed.
    pub fn finish_states(&self, pending: PendingStates) -> Result<Tensor<2>, TeacherError> {
        self.0.finish_states(pending)
    }

    /// [`finish_states`](Self::finish_states) on the host: [Σ prompts, d] row-major.
    pub fn finish_host_states(&self, pending: PendingStates) -> Result<Vec<f32>, TeacherError> {
        self.0.finish_host_states(pending)
    }

    /// The CUDA device the CUDA engine runs on; `None` for Burn's models.
    pub fn cuda_engine_ordinal(&self) -> Option<usize> {
        self.0.cuda_engine_ordinal()
    }
}

impl<A: Architecture> CalibratedModel for BurnModel<A> {
    fn shape(&self) -> &ModelShape {
        BurnModel::shape(self)
    }

    fn layers(&self) -> usize {
        BurnModel::layers(self)
    }

    fn weights_sha256(&self) -> &str {
        BurnModel::weights_sha256(self)
    }

    fn model_dir(&self) -> &Path {
        BurnModel::model_dir(self)
    }

    fn precision(&self) -> Precision {
        BurnModel::precision(self)
    }

    fn device(&self) -> &Device {
        BurnModel::device(self)
    }

    fn engine_name(&self) -> String {
        "burn".to_string()
    }

    fn shrink_passes(
        &mut self,
        options: &mut BatchOptions,
    ) -> Result<Option<String>, TeacherError> {
        if options.max_tokens <= 1 || options.max_prompts <= 1 {
            return Ok(None);
        }
        options.max_tokens /= 2;
        options.max_prompts = options.max_prompts.div_ceil(2);
        Ok(Some(format!("≤ {} tokens per pass", options.max_tokens)))
    }

    fn family_last_token_states(
        &self,
        families: &[PromptFamily<'_>],
        options: &BatchOptions,
    ) -> Result<Tensor<2>, TeacherError> {
        BurnModel::family_last_token_states(self, families, options)
    }
}
