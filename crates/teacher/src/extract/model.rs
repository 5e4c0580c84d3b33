//! The teacher an extraction worker runs: which model, which implementation, which SCA; and
//! [`load_teacher`], the one function that builds it on a device.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::error::ExtractError;
use crate::batch::BatchOptions;
use crate::device::WorkerDevice;
use crate::families::ModelConfig;
use crate::language_model::LanguageModel;
use crate::pipeline::Teacher;
use crate::precision::Precision;
use crate::prompt::PromptBuilder;
use crate::sca::Sca;
use crate::shape::ModelShape;

/// Which implementation runs the model on a GPU (`--engine`). The CPU always runs Burn; the
/// CUDA engine runs the decoders (GPT-2, LLaMA), BERT runs on Burn's CUDA backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Engine {
    /// The CUDA engine where this build has it (feature `cuda`), else Burn.
    #[default]
    Auto,
    /// The CUDA engine: cuBLASLt products and fused attention kernels (CUDA builds only).
    Cuda,
    /// Burn's CUDA backend, for comparisons.
    Burn,
}

impl FromStr for Engine {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Engine::Auto),
            "cuda" => Ok(Engine::Cuda),
            "burn" => Ok(Engine::Burn),
            _ => Err(format!(
                "unknown engine `{text}`: expected auto, cuda or burn"
            )),
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Engine::Auto => "auto",
            Engine::Cuda => "cuda",
            Engine::Burn => "burn",
        })
    }
}

impl Engine {
    /// Whether the CUDA engine runs on a GPU device; an error if it was asked for in a build
    /// without it.
    pub fn uses_cuda_engine(self) -> Result<bool, ExtractError> {
        match self {
            Engine::Burn => Ok(false),
            Engine::Auto => Ok(cfg!(feature = "cuda")),
            Engine::Cuda if cfg!(feature = "cuda") => Ok(true),
            Engine::Cuda => Err(ExtractError::Setting {
                setting: "--engine cuda",
                reason: "this timekd binary was built without CUDA support (scripts/gpu-build.sh)"
                    .into(),
            }),
        }
    }
}

impl TeacherSpec {
    /// Refuses an engine the build or the model's family cannot run (`--engine cuda`
    /// without CUDA support, or for a family the engine does not run).
    pub(crate) fn check_engine(&self) -> Result<(), ExtractError> {
        self.engine.uses_cuda_engine()?;
        if self.engine == Engine::Cuda && !self.config.runs_on_cuda_engine() {
            return Err(ExtractError::Setting {
                setting: "--engine cuda",
                reason: format!(
                    "the CUDA engine runs decoders (GPT-2, LLaMA); this is a {} checkpoint: use --engine burn",
                    self.shape.family
                ),
            });
        }
        Ok(())
    }

    /// Whether GPU workers run the CUDA engine (a decoder with `--engine auto` or `cuda` in
    /// a CUDA build).
    pub(crate) fn runs_cuda_engine(&self) -> bool {
        self.config.runs_on_cuda_engine() && self.engine.uses_cuda_engine().unwrap_or(false)
    }
}

/// Everything that defines the teacher of an extraction, resolved once per run.
#[derive(Debug, Clone)]
pub(crate) struct TeacherSpec {
    /// The model as asked for (a directory or a Hugging Face id): recorded in stores.
    pub model: String,
    /// Its directory.
    pub model_dir: PathBuf,
    /// Its `config.json`, read and checked once for the run.
    pub config: ModelConfig,
    /// Its sizes.
    pub shape: ModelShape,
    /// The blocks in use (`--gpt2-layers`, else all), checked against the config.
    pub layers: usize,
    /// Which implementation runs on a GPU.
    pub engine: Engine,
    /// The products' float type on the workers' devices.
    pub precision: Precision,
    /// The SCA's seed.
    pub sca_seed: u64,
    /// The SCA's weights file, instead of the seed.
    pub sca_weights: Option<PathBuf>,
    /// Prompt wording and value format.
    pub prompts: PromptBuilder,
    /// Variables of the data.
    pub n_vars: usize,
}

/// The teacher of one worker on `target`: the language model ([`load_model`]), the SCA and
/// the batching `options`.
pub(crate) fn load_teacher(
    spec: &TeacherSpec,
    target: &WorkerDevice,
    budget_bytes: u64,
    options: BatchOptions,
    notes: &dyn Fn(String),
) -> Result<Teacher, ExtractError> {
    let device = &target.device;
    let gpt2 = load_model(spec, target, budget_bytes, notes)?;
    let sca = match &spec.sca_weights {
        Some(path) => Sca::load(path, device)?,
        None => Sca::init(spec.n_vars, 4 * gpt2.d_model(), spec.sca_seed, device),
    };
    if sca.n_vars() != spec.n_vars {
        return Err(ExtractError::Setting {
            setting: "--sca-weights",
            reason: format!(
                "the file is for {} variables but the data has {}",
                sca.n_vars(),
                spec.n_vars
            ),
        });
    }
    #[cfg_attr(not(feature = "cuda"), allow(unused_mut))]
    let mut teacher = Teacher::new(gpt2, sca, spec.prompts.clone(), options)?;
    #[cfg(feature = "cuda")]
    use_fused_sca(&mut teacher, notes)?;
    Ok(teacher)
}

/// Runs the teacher's SCA on the fused GPU kernels ([`crate::cuda::CudaSca`]) beside the
/// CUDA engine, where its variables fit them (else on Burn, as beside Burn's models); says
/// which through `notes`.
#[cfg(feature = "cuda")]
fn use_fused_sca(teacher: &mut Teacher, notes: &dyn Fn(String)) -> Result<(), ExtractError> {
    use crate::cuda::{CudaSca, FUSED_SCA_MAX_VARS, SCA_ENV};
    let Some(ordinal) = teacher.gpt2().cuda_engine_ordinal() else {
        return Ok(());
    };
    if std::env::var(SCA_ENV).is_ok_and(|v| v == "burn") {
        notes(format!("SCA on Burn's CUDA backend ({SCA_ENV}=burn)"));
        return Ok(());
    }
    let n = teacher.sca().n_vars();
    if n > FUSED_SCA_MAX_VARS {
        notes(format!(
            "SCA on Burn's CUDA backend: the fused SCA takes at most {FUSED_SCA_MAX_VARS} \
             variables, the data has {n}"
        ));
        return Ok(());
    }
    let fused = CudaSca::new(ordinal, teacher.sca())?;
    teacher.use_fused_sca(fused);
    notes(format!("SCA on fused CUDA kernels (f32, {n} variables)"));
    Ok(())
}

/// The language model of one worker: the CUDA engine on a GPU when the engine choice allows
/// it and the model is a decoder (sized for the memory budget), else the family's Burn model
/// on the worker's device.
pub(crate) fn load_model(
    spec: &TeacherSpec,
    target: &WorkerDevice,
    budget_bytes: u64,
    notes: &dyn Fn(String),
) -> Result<LanguageModel, ExtractError> {
    let precision = spec.precision;
    #[cfg(feature = "cuda")]
    if let (Some(ordinal), true) = (target.cuda_ordinal, spec.runs_cuda_engine()) {
        let (shape, layers) = (&spec.shape, spec.layers);
        let budget = EngineBudget::check(ordinal, budget_bytes, notes)?;
        let limits = crate::cuda::EngineLimits::for_budget(shape, layers, precision, budget.bytes);
        let need = limits.peak_bytes(shape, layers, precision);
        if need > budget.bytes {
            return Err(budget.too_small(need));
        }
        let engine = crate::cuda::CudaEngine::load(
            &spec.model_dir,
            (&spec.config, layers),
            ordinal,
            precision,
            limits,
        )
        .map_err(|e| match e {
            crate::TeacherError::DeviceOutOfMemory { bytes, .. } => {
                budget.too_small(need.max(bytes))
            }
            e => e.into(),
        })?;
        notes(format!(
            "cuda:{ordinal}: CUDA engine on {} ({precision}): ≤ {} tokens per pass, {} prefix tokens cached, est. {:.2} GiB",
            engine.device_name(),
            limits.pass_tokens,
            limits.cache_tokens,
            super::budget::gib(limits.peak_bytes(shape, layers, precision))
        ));
        return Ok(crate::cuda::EngineModel::new(engine, target.device.clone()).into());
    }
    #[cfg(not(feature = "cuda"))]
    {
        // Refuses `--engine cuda`; a CPU build has no ordinal or engine budget to use.
        spec.engine.uses_cuda_engine()?;
        let _ = (target.cuda_ordinal, budget_bytes, notes);
    }
    Ok(spec
        .config
        .load_burn(&spec.model_dir, spec.layers, &target.device, precision)?)
}

/// The memory the CUDA engine of one GPU plans for: the run's budget, or less when the GPU
/// has less free (another process holds the rest).
#[cfg(feature = "cuda")]
struct EngineBudget {
    ordinal: usize,
    /// Bytes planned for.
    bytes: u64,
    /// The run's budget per device.
    asked: u64,
    /// Free and total bytes of the GPU at load.
    free: u64,
    total: u64,
}

#[cfg(feature = "cuda")]
impl EngineBudget {
    /// Share of the free memory the engine plans for when the budget exceeds it: the rest is
    /// slack for the SCA and the runtimes' pools.
    const FREE_SHARE: f64 = 0.9;

    /// Reads the GPU's free memory (the driver's `cuMemGetInfo`) and caps `asked` by it,
    /// saying so once.
    fn check(ordinal: usize, asked: u64, notes: &dyn Fn(String)) -> Result<Self, ExtractError> {
        let (free, total) = crate::cuda::device_memory(ordinal)?;
        let usable = (free as f64 * Self::FREE_SHARE) as u64;
        let bytes = asked.min(usable);
        if bytes < asked {
            notes(format!(
                "cuda:{ordinal}: {:.1} GiB of {:.1} GiB free (other processes hold the rest), \
                 less than the {:.1} GiB budget: planning for {:.1} GiB, in smaller passes",
                super::budget::gib(free),
                super::budget::gib(total),
                super::budget::gib(asked),
                super::budget::gib(bytes)
            ));
        }
        Ok(EngineBudget {
            ordinal,
            bytes,
            asked,
            free,
            total,
        })
    }

    /// The error of an engine that needs `need` bytes, more than this budget allows.
    fn too_small(&self, need: u64) -> ExtractError {
        let gib = super::budget::gib;
        ExtractError::Setting {
            setting: "--max-gpu-mem",
            reason: format!(
                "cuda:{}: the CUDA engine needs at least {:.2} GiB (weights, one prompt per \
                 pass); the budget is {:.2} GiB and {:.2} GiB of the GPU's {:.2} GiB is free; \
                 free the GPU, or use a GPU with more free memory",
                self.ordinal,
                gib(need),
                gib(self.asked),
                gib(self.free),
                gib(self.total)
            ),
        }
    }
}
