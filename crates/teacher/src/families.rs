//! The model families `--model` loads, chosen by the `model_type` of the checkpoint's
//! `config.json` ([`ModelConfig`]), and the one reader of that file.
//!
//! | `model_type` | family | attention | positions | tokenizer |
//! |---|---|---|---|---|
//! | `gpt2` (or none) | [`Gpt2`](crate::Gpt2), every size | causal | learned | GPT-2's BPE (built in) |
//! | `llama` | [`Llama`](crate::Llama) (LLaMA-2/3.x) | causal, grouped KV heads | rotary (`llama3` scaling) | `tokenizer.json` |
//! | `bert` | [`Bert`](crate::Bert) | bidirectional | learned | `tokenizer.json` |
//!
//! Adding a family: its folder (config, checkpoint names, [`Architecture`]) and a variant
//! here with its arms.

use std::path::{Path, PathBuf};

use burn::tensor::Device;

use crate::arch::Architecture;
use crate::bert::{BertConfig, BertModule};
use crate::burn_model::BurnModel;
use crate::error::TeacherError;
use crate::gpt2::{Gpt2Config, Gpt2Module};
use crate::language_model::LanguageModel;
use crate::llama::{LlamaConfig, LlamaModule};
use crate::precision::Precision;
use crate::shape::ModelShape;

/// A checkpoint's `config.json`, parsed by its family.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelConfig {
    /// `model_type` `gpt2`.
    Gpt2(Gpt2Config),
    /// `model_type` `llama`.
    Llama(LlamaConfig),
    /// `model_type` `bert`.
    Bert(BertConfig),
}

impl ModelConfig {
    /// The `model_type`s this build loads.
    pub const FAMILIES: [&'static str; 3] = [
        Gpt2Module::MODEL_TYPE,
        LlamaModule::MODEL_TYPE,
        BertModule::MODEL_TYPE,
    ];

    /// Reads `<dir>/config.json` and parses it as its `model_type`'s family (GPT-2 when it
    /// names none, as GPT-2's oldest files do).
    pub fn for_model_dir(dir: &Path) -> Result<Self, TeacherError> {
        let file = ConfigFile::read(dir)?;
        match file.model_type.as_deref() {
            None | Some(Gpt2Module::MODEL_TYPE) => {
                Ok(ModelConfig::Gpt2(file.parse::<Gpt2Module>()?))
            }
            Some(LlamaModule::MODEL_TYPE) => Ok(ModelConfig::Llama(file.parse::<LlamaModule>()?)),
            Some(BertModule::MODEL_TYPE) => Ok(ModelConfig::Bert(file.parse::<BertModule>()?)),
            Some(other) => Err(file.bad(format!(
                "model_type `{other}` is not a family timekd runs (it runs {})",
                Self::FAMILIES.join(", ")
            ))),
        }
    }

    /// Whether the CUDA engine (feature `cuda`) runs this family: the decoders, GPT-2 and
    /// LLaMA; BERT runs on Burn's CUDA backend.
    pub fn runs_on_cuda_engine(&self) -> bool {
        matches!(self, ModelConfig::Gpt2(_) | ModelConfig::Llama(_))
    }

    /// The checkpoint's sizes.
    pub fn shape(&self) -> ModelShape {
        match self {
            ModelConfig::Gpt2(c) => Gpt2Module::shape(c),
            ModelConfig::Llama(c) => LlamaModule::shape(c),
            ModelConfig::Bert(c) => BertModule::shape(c),
        }
    }

    /// The family's model in Burn from the weights in `dir`: its first `layers` blocks on
    /// `device`, products in `precision`.
    pub fn load_burn(
        &self,
        dir: &Path,
        layers: usize,
        device: &Device,
        precision: Precision,
    ) -> Result<LanguageModel, TeacherError> {
        fn load<A: Architecture>(
            dir: &Path,
            config: &A::Config,
            layers: usize,
            device: &Device,
            precision: Precision,
        ) -> Result<LanguageModel, TeacherError> {
            let model = BurnModel::<A>::from_config(dir, config.clone(), Some(layers), device)?;
            Ok(model.with_precision(precision)?.into())
        }
        match self {
            ModelConfig::Gpt2(c) => load::<Gpt2Module>(dir, c, layers, device, precision),
            ModelConfig::Llama(c) => load::<LlamaModule>(dir, c, layers, device, precision),
            ModelConfig::Bert(c) => load::<BertModule>(dir, c, layers, device, precision),
        }
    }
}

/// `<dir>/config.json` parsed as family `A` (its `model_type`, when given, must be `A`'s).
pub(crate) fn read_config<A: Architecture>(dir: &Path) -> Result<A::Config, TeacherError> {
    let file = ConfigFile::read(dir)?;
    match file.model_type.as_deref() {
        Some(t) if t != A::MODEL_TYPE => Err(file.bad(format!(
            "model_type `{t}`: this is not a {} checkpoint",
            A::MODEL_TYPE
        ))),
        _ => file.parse::<A>(),
    }
}

/// The `model_type` of `<dir>/config.json`, if it names one.
pub(crate) fn model_type(dir: &Path) -> Result<Option<String>, TeacherError> {
    Ok(ConfigFile::read(dir)?.model_type)
}

/// A `config.json`, read once.
struct ConfigFile {
    path: PathBuf,
    text: String,
    model_type: Option<String>,
}

impl ConfigFile {
    fn read(dir: &Path) -> Result<Self, TeacherError> {
        let path = dir.join("config.json");
        let text = read_config_text(&path)?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| TeacherError::BadConfig {
                path: path.clone(),
                reason: format!("not JSON: {e}"),
            })?;
        let model_type = value
            .get("model_type")
            .and_then(|t| t.as_str())
            .map(str::to_string);
        Ok(ConfigFile {
            path,
            text,
            model_type,
        })
    }

    fn parse<A: Architecture>(&self) -> Result<A::Config, TeacherError> {
        A::parse_config(&self.text).map_err(|reason| self.bad(reason))
    }

    fn bad(&self, reason: String) -> TeacherError {
        TeacherError::BadConfig {
            path: self.path.clone(),
            reason,
        }
    }
}

/// The text of the `config.json` at `path`; a missing file is
/// [`TeacherError::MissingFile`].
pub(crate) fn read_config_text(path: &Path) -> Result<String, TeacherError> {
    if !path.is_file() {
        return Err(TeacherError::MissingFile {
            what: "config.json",
            path: path.to_path_buf(),
        });
    }
    std::fs::read_to_string(path).map_err(|source| TeacherError::Io {
        path: path.to_path_buf(),
        source,
    })
}
