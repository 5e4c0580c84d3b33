//! The engine as the teacher's [`LanguageModel`]: its states handed to Burn on the same GPU
//! for the SCA.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};

use super::CudaEngine;
use crate::batch::BatchOptions;
use crate::error::{TeacherError, read_back};
use crate::family::PromptFamily;
use crate::language_model::{CalibratedModel, LanguageModel, Pending, PendingStates};
use crate::precision::Precision;
use crate::shape::ModelShape;

/// The engine and the Burn device its states go to.
pub(crate) struct EngineModel {
    engine: CudaEngine,
    device: Device,
    shape: ModelShape,
}

impl EngineModel {
    /// `engine`, its states returned on `device` (the same GPU through Burn).
    pub(crate) fn new(engine: CudaEngine, device: Device) -> Self {
        let shape = engine.shape().clone();
        EngineModel {
            engine,
            device,
            shape,
        }
    }
}

impl From<EngineModel> for LanguageModel {
    fn from(model: EngineModel) -> Self {
        LanguageModel::new(Box::new(model))
    }
}

impl CalibratedModel for EngineModel {
    fn shape(&self) -> &ModelShape {
        &self.shape
    }

    fn layers(&self) -> usize {
        self.engine.layers()
    }

    fn weights_sha256(&self) -> &str {
        self.engine.weights_sha256()
    }

    fn model_dir(&self) -> &Path {
        self.engine.model_dir()
    }

    fn precision(&self) -> Precision {
        self.engine.precision()
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn engine_name(&self) -> String {
        format!("cuda engine ({})", self.engine.device_name())
    }

    fn shrink_passes(&mut self, _: &mut BatchOptions) -> Result<Option<String>, TeacherError> {
        let Some(limits) = self.engine.limits().halved(self.engine.shape()) else {
            return Ok(None);
        };
        self.engine.set_limits(limits)?;
        Ok(Some(format!(
            "≤ {} tokens per pass, {} prefix tokens cached",
            limits.pass_tokens, limits.cache_tokens
        )))
    }

    fn family_last_token_states(
        &self,
        families: &[PromptFamily<'_>],
        options: &BatchOptions,
    ) -> Result<Tensor<2>, TeacherError> {
        self.finish_states(self.queue_states(families, options)?)
    }

    fn queue_states(
        &self,
        families: &[PromptFamily<'_>],
        _: &BatchOptions,
    ) -> Result<PendingStates, TeacherError> {
        let rows = families.iter().map(|f| f.prompts().len()).sum();
        let queued = self.engine.queue(families)?;
        Ok(PendingStates(Pending::Engine { queued, rows }))
    }

    fn finish_states(&self, pending: PendingStates) -> Result<Tensor<2>, TeacherError> {
        match pending.0 {
            Pending::Engine { queued, rows } => {
                let states = self.engine.collect(queued)?;
                Ok(Tensor::from_data(
                    TensorData::new(states, [rows, self.shape.d_model]),
                    &self.device,
                ))
            }
            Pending::Ready(states) => Ok(*states),
        }
    }

    fn finish_host_states(&self, pending: PendingStates) -> Result<Vec<f32>, TeacherError> {
        match pending.0 {
            Pending::Engine { queued, .. } => self.engine.collect(queued),
            Pending::Ready(states) => read_back(*states),
        }
    }

    fn cuda_engine_ordinal(&self) -> Option<usize> {
        Some(self.engine.ordinal())
    }
}
