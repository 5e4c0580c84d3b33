//! [`LanguageModel`]: the GPT-2 a [`Teacher`](crate::Teacher) runs, Burn's or the CUDA
//! engine's, behind one interface.

use std::path::Path;

use burn::tensor::{Device, Tensor};

use crate::batch::BatchOptions;
use crate::error::TeacherError;
use crate::family::PromptFamily;
use crate::gpt2::{Gpt2, Gpt2Config};
use crate::precision::Precision;

/// The calibrated GPT-2 of a teacher.
pub enum LanguageModel {
    /// GPT-2 in Burn, on any Burn device: the CPU path, and the reference.
    Burn(Box<Gpt2>),
    /// The CUDA engine (feature `cuda`); its states are put on `device` (the same GPU through
    /// Burn) for the SCA.
    #[cfg(feature = "cuda")]
    Cuda {
        /// The engine.
        engine: Box<crate::cuda::CudaGpt2>,
        /// Where the states go for the SCA.
        device: Device,
    },
}

impl From<Gpt2> for LanguageModel {
    fn from(gpt2: Gpt2) -> Self {
        LanguageModel::Burn(Box::new(gpt2))
    }
}

impl LanguageModel {
    /// The checkpoint's configuration.
    pub fn config(&self) -> &Gpt2Config {
        match self {
            LanguageModel::Burn(m) => m.config(),
            #[cfg(feature = "cuda")]
            LanguageModel::Cuda { engine, .. } => engine.config(),
        }
    }

    /// Blocks in use.
    pub fn layers(&self) -> usize {
        match self {
            LanguageModel::Burn(m) => m.layers(),
            #[cfg(feature = "cuda")]
            LanguageModel::Cuda { engine, .. } => engine.layers(),
        }
    }

    /// Width D of the hidden states.
    pub fn d_model(&self) -> usize {
        self.config().n_embd
    }

    /// Longest prompt the model takes (`n_positions`).
    pub fn max_tokens(&self) -> usize {
        self.config().n_positions
    }

    /// Lowercase hex sha256 of `model.safetensors`.
    pub fn weights_sha256(&self) -> &str {
        match self {
            LanguageModel::Burn(m) => m.weights_sha256(),
            #[cfg(feature = "cuda")]
            LanguageModel::Cuda { engine, .. } => engine.weights_sha256(),
        }
    }

    /// The directory the model was loaded from.
    pub fn model_dir(&self) -> &Path {
        match self {
            LanguageModel::Burn(m) => m.model_dir(),
            #[cfg(feature = "cuda")]
            LanguageModel::Cuda { engine, .. } => engine.model_dir(),
        }
    }

    /// The float type of the matrix products.
    pub fn precision(&self) -> Precision {
        match self {
            LanguageModel::Burn(m) => m.precision(),
            #[cfg(feature = "cuda")]
            LanguageModel::Cuda { engine, .. } => engine.precision(),
        }
    }

    /// The Burn device the states are returned on.
    pub fn device(&self) -> &Device {
        match self {
            LanguageModel::Burn(m) => m.device(),
            #[cfg(feature = "cuda")]
            LanguageModel::Cuda { device, .. } => device,
        }
    }

    /// Which implementation runs, for logs: `burn` or `cuda engine (<GPU name>)`.
    pub fn engine_name(&self) -> String {
        match self {
            LanguageModel::Burn(_) => "burn".to_string(),
            #[cfg(feature = "cuda")]
            LanguageModel::Cuda { engine, .. } => format!("cuda engine ({})", engine.device_name()),
        }
    }

    /// Makes the next passes smaller after the device ran out of memory: halves the batch
    /// options' tokens and prompts per pass for Burn's model, the CUDA engine's planned pass
    /// and cache sizes (re-allocated) for the engine. Says what it plans for now, or `None`
    /// when the passes are already as small as they go (one prompt).
    pub fn shrink_passes(
        &mut self,
        options: &mut BatchOptions,
    ) -> Result<Option<String>, TeacherError> {
        match self {
            LanguageModel::Burn(_) => {
                if options.max_tokens <= 1 || options.max_prompts <= 1 {
                    return Ok(None);
                }
                options.max_tokens /= 2;
                options.max_prompts = options.max_prompts.div_ceil(2);
                Ok(Some(format!("≤ {} tokens per pass", options.max_tokens)))
            }
            #[cfg(feature = "cuda")]
            LanguageModel::Cuda { engine, .. } => {
                let Some(limits) = engine.limits().halved(engine.config()) else {
                    return Ok(None);
                };
                engine.set_limits(limits)?;
                Ok(Some(format!(
                    "≤ {} tokens per pass, {} prefix tokens cached",
                    limits.pass_tokens, limits.cache_tokens
                )))
            }
        }
    }

    /// The last-token states of every prompt of `families`, family by family: [Σ prompts, d]
    /// (see [`Gpt2::family_last_token_states`]; the CUDA engine packs its own passes and
    /// ignores `options`' pass sizes).
    pub fn family_last_token_states(
        &self,
        families: &[PromptFamily<'_>],
        options: &BatchOptions,
    ) -> Result<Tensor<2>, TeacherError> {
        match self {
            LanguageModel::Burn(m) => m.family_last_token_states(families, options),
            #[cfg(feature = "cuda")]
            LanguageModel::Cuda { engine, device } => {
                let rows: usize = families.iter().map(|f| f.prompts().len()).sum();
                let states = engine.family_last_states(families)?;
                let d = engine.config().n_embd;
                Ok(Tensor::from_data(
                    burn::tensor::TensorData::new(states, [rows, d]),
                    device,
                ))
            }
        }
    }
}
