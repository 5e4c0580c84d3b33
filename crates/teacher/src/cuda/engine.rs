//! [`CudaGpt2`]: loading a checkpoint onto one GPU and the engine's public calls. Its passes
//! (`passes`), layer launches (`layers`), attention (`attention`), device memory (`workspace`)
//! and memory plan (`limits`) live in the sibling modules.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaFunction, CudaStream, LaunchConfig, PushKernelArg};

use super::CudaError;
use super::blas::{Blas, GemmType};
use super::buffer::DeviceBuffer;
use super::kernels::Kernels;
use super::limits::EngineLimits;
use super::plan::plan;
use super::profile::{Profiler, Stage};
use super::workspace::{BlockWeights, Uploader, Workspace};
use crate::error::TeacherError;
use crate::family::PromptFamily;
use crate::gpt2::Gpt2Config;
use crate::gpt2::names::{self, BlockNames};
use crate::precision::Precision;
use crate::weights::Checkpoint;

/// Threads per block of the row kernels (one warp per row) and of the simple attention.
pub(super) const ROW_THREADS: u32 = 128;

/// The products' type for `precision`: as on Burn's CUDA backend, plain f32 runs on TF32
/// tensor cores and the split precision keeps f32 accuracy (here as true f32 products).
fn gemm_type(precision: Precision) -> Result<GemmType, CudaError> {
    match precision {
        Precision::F16 => Ok(GemmType::F16),
        Precision::F32 => Ok(GemmType::Tf32),
        Precision::F32Split => Ok(GemmType::F32),
        Precision::Bf16 => Err(CudaError::Unsupported(
            "the CUDA engine computes f16 or f32, not bf16".into(),
        )),
    }
}

/// A kernel argument.
#[derive(Clone, Copy)]
pub(super) enum Arg {
    Ptr(u64),
    Int(i32),
    Float(f32),
}

/// GPT-2 on one GPU for extraction; see the [module docs](super).
pub struct CudaGpt2 {
    pub(super) stream: Arc<CudaStream>,
    pub(super) kernels: Kernels,
    pub(super) blas: RefCell<Blas>,
    pub(super) wte: DeviceBuffer,
    pub(super) wpe: DeviceBuffer,
    pub(super) blocks: Vec<BlockWeights>,
    pub(super) ln_f: (DeviceBuffer, DeviceBuffer),
    /// `None` only while [`CudaGpt2::set_limits`] replaces it.
    pub(super) work: RefCell<Option<Workspace>>,
    pub(super) limits: EngineLimits,
    pub(super) config: Gpt2Config,
    pub(super) layers: usize,
    pub(super) precision: Precision,
    weights_sha256: String,
    pub(super) dir: PathBuf,
    pub(super) device_name: String,
    /// Stage timing when `TIMEKD_CUDA_PROFILE` is set.
    pub(super) profile: RefCell<Option<Profiler>>,
}

impl Drop for CudaGpt2 {
    fn drop(&mut self) {
        if let Some(profile) = self.profile.get_mut() {
            eprintln!("{}", profile.report());
        }
    }
}

impl CudaGpt2 {
    /// Loads the model in `dir` (its `config.json` as read and checked by the caller, e.g.
    /// [`Gpt2Config::for_model_dir`], and the first `layers` blocks) onto CUDA device
    /// `ordinal`, computing in `precision` (`F16`; `F32Split`, which is f32 accuracy here
    /// through true f32 products; `F32`, products on TF32 tensor cores as in Burn; bf16 is not
    /// offered), with buffers for `limits`.
    pub fn load(
        dir: &Path,
        (config, layers): (Gpt2Config, usize),
        ordinal: usize,
        precision: Precision,
        limits: EngineLimits,
    ) -> Result<Self, TeacherError> {
        let gemm = gemm_type(precision)?;
        let file = Checkpoint::read(dir)?;
        let mut tensors = file.tensors()?;
        names::use_checkpoint_prefix(&mut tensors);
        let ctx = CudaContext::new(ordinal).map_err(CudaError::driver)?;
        let device_name = ctx.name().map_err(CudaError::driver)?;
        // One stream, one thread: cudarc's cross-stream event bookkeeping is not needed.
        // SAFETY: no buffer of this context is shared with another stream.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().map_err(CudaError::driver)?;
        let kernels = Kernels::load(&ctx)?;
        let blas = Blas::new(&stream, gemm)?;
        let up = Uploader {
            stream: &stream,
            tensors: &tensors,
            half: gemm == GemmType::F16,
        };
        let (d, inner) = (config.n_embd, config.n_inner);
        let blocks = (0..layers)
            .map(|i| {
                let n = BlockNames(i);
                Ok(BlockWeights {
                    ln_1: up.norm(&n.ln_1(), d)?,
                    attn: up.linear(&n.attn(), d, 3 * d)?,
                    attn_proj: up.linear(&n.attn_proj(), d, d)?,
                    ln_2: up.norm(&n.ln_2(), d)?,
                    fc: up.linear(&n.fc(), d, inner)?,
                    mlp_proj: up.linear(&n.mlp_proj(), inner, d)?,
                })
            })
            .collect::<Result<Vec<_>, TeacherError>>()?;
        let work = Workspace::new(&stream, &config, layers, gemm, limits)?;
        let profile = RefCell::new(Profiler::from_env(&ctx));
        Ok(CudaGpt2 {
            profile,
            wte: up.f32(names::TOKEN_EMBEDDING, &[config.vocab_size, d])?,
            wpe: up.f32(names::POSITION_EMBEDDING, &[config.n_positions, d])?,
            ln_f: up.norm(names::FINAL_NORM, d)?,
            blocks,
            work: RefCell::new(Some(work)),
            kernels,
            blas: RefCell::new(blas),
            stream,
            limits,
            weights_sha256: file.sha256(),
            dir: dir.to_path_buf(),
            config,
            layers,
            precision,
            device_name,
        })
    }

    /// The checkpoint's configuration.
    pub fn config(&self) -> &Gpt2Config {
        &self.config
    }

    /// Blocks in use.
    pub fn layers(&self) -> usize {
        self.layers
    }

    /// The precision asked for at load.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Lowercase hex sha256 of `model.safetensors`.
    pub fn weights_sha256(&self) -> &str {
        &self.weights_sha256
    }

    /// The directory the model was loaded from.
    pub fn model_dir(&self) -> &Path {
        &self.dir
    }

    /// The GPU's name, as the driver reports it.
    pub fn device_name(&self) -> &str {
        &self.device_name
    }

    /// The limits the buffers were sized for.
    pub fn limits(&self) -> EngineLimits {
        self.limits
    }

    /// Re-plans the pass buffers and prefix cache for `limits`, freeing the old ones first
    /// (smaller passes after the GPU ran out of memory). On failure the engine has no
    /// buffers and every later call fails.
    pub fn set_limits(&mut self, limits: EngineLimits) -> Result<(), TeacherError> {
        let gemm = gemm_type(self.precision)?;
        let work = self.work.get_mut();
        *work = None;
        *work = Some(Workspace::new(
            &self.stream,
            &self.config,
            self.layers,
            gemm,
            limits,
        )?);
        self.limits = limits;
        Ok(())
    }

    /// Final states (after `ln_f`) of the last token of every prompt of `families`, family
    /// by family: `[Σ prompts, d]` row-major on the host.
    pub fn family_last_states(
        &self,
        families: &[PromptFamily<'_>],
    ) -> Result<Vec<f32>, TeacherError> {
        let d = self.config.n_embd;
        let max = self.config.n_positions;
        let mut first_row = Vec::with_capacity(families.len());
        let mut total = 0;
        for (f, family) in families.iter().enumerate() {
            first_row.push(total);
            for (k, prompt) in family.prompts().iter().enumerate() {
                if prompt.is_empty() || prompt.len() > max {
                    return Err(TeacherError::Input(format!(
                        "prompt {k} of family {f} has {} tokens; the model takes 1 to {max}",
                        prompt.len()
                    )));
                }
            }
            total += family.prompts().len();
        }
        if total == 0 {
            return Ok(Vec::new());
        }
        let prefixes: Vec<usize> = families.iter().map(PromptFamily::prefix_len).collect();
        let suffixes: Vec<Vec<usize>> = families
            .iter()
            .map(|f| {
                (0..f.prompts().len())
                    .map(|k| f.suffix(k).0.len())
                    .collect()
            })
            .collect();
        let mut guard = self.work.borrow_mut();
        let work = guard.as_mut().ok_or_else(|| {
            CudaError::Internal("the engine lost its buffers in an earlier failed re-plan".into())
        })?;
        if work.out.as_ref().is_none_or(|b| b.bytes() < total * d * 4) {
            work.out = None;
            work.out = Some(DeviceBuffer::new(&self.stream, total * d * 4)?);
        }
        if let Some(profile) = self.profile.borrow_mut().as_mut() {
            profile.begin(&self.stream)?;
        }
        let mut order = Vec::with_capacity(total);
        for group in plan(&prefixes, &suffixes, self.limits) {
            self.run_group(work, families, &group, &first_row, &mut order)?;
        }
        let mut rows = vec![0f32; total * d];
        work.out
            .as_ref()
            .expect("allocated above")
            .download(&self.stream, &mut rows)?;
        if let Some(profile) = self.profile.borrow_mut().as_mut() {
            profile.end()?;
        }
        let mut states = vec![0f32; total * d];
        for (row, &prompt) in order.iter().enumerate() {
            states[prompt * d..(prompt + 1) * d].copy_from_slice(&rows[row * d..(row + 1) * d]);
        }
        Ok(states)
    }

    /// Charges the work queued since the last mark to `stage` (when profiling).
    pub(super) fn mark(&self, stage: Stage) -> Result<(), CudaError> {
        match self.profile.borrow_mut().as_mut() {
            Some(profile) => profile.mark(&self.stream, stage),
            None => Ok(()),
        }
    }

    /// A pass's tables are queued: the uploads' mark, and the pass count.
    pub(super) fn pass_uploaded(&self) -> Result<(), CudaError> {
        if let Some(profile) = self.profile.borrow_mut().as_mut() {
            profile.pass();
        }
        self.mark(Stage::Upload)
    }

    pub(super) fn launch(
        &self,
        kernel: &CudaFunction,
        grid: (u32, u32),
        threads: u32,
        shared: u32,
        args: &[Arg],
    ) -> Result<(), CudaError> {
        if grid.0 == 0 {
            return Ok(());
        }
        let mut builder = self.stream.launch_builder(kernel);
        for arg in args {
            match arg {
                Arg::Ptr(v) => builder.arg(v),
                Arg::Int(v) => builder.arg(v),
                Arg::Float(v) => builder.arg(v),
            };
        }
        let config = LaunchConfig {
            grid_dim: (grid.0, grid.1, 1),
            block_dim: (threads, 1, 1),
            shared_mem_bytes: shared,
        };
        // SAFETY: every kernel's parameters are listed in `kernels.cu`'s order and types;
        // the buffers they point to are sized by the limits the passes respect.
        unsafe { builder.launch(config) }
            .map(|_| ())
            .map_err(CudaError::driver)
    }

    pub(super) fn is_half(&self) -> bool {
        self.precision == Precision::F16
    }

    pub(super) fn elem_bytes(&self) -> usize {
        self.precision.bytes() as usize
    }

    pub(super) fn tensor_core_attention(&self) -> bool {
        self.is_half() && self.config.head_dim() == 64
    }

    pub(super) fn scale(&self) -> f32 {
        1.0 / (self.config.head_dim() as f32).sqrt()
    }
}
