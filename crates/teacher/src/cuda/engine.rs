//! [`CudaEngine`]: loading a checkpoint onto one GPU and the engine's public calls. What it
//! computes per family (`arch`), its weights (`weights`), passes (`passes`), layer launches
//! (`layers`), attention (`attention`), working memory (`workspace`) and memory plan
//! (`limits`) live in the sibling modules.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use cudarc::driver::{
    CudaContext, CudaEvent, CudaFunction, CudaStream, LaunchConfig, PushKernelArg, sys,
};

use super::CudaError;
use super::arch::EngineArch;
use super::blas::{Blas, GemmType};
use super::buffer::{DeviceBuffer, PinnedDownload};
use super::kernels::Kernels;
use super::limits::{EngineLimits, longest_prompt};
use super::plan::plan;
use super::profile::{Profiler, Stage};
use super::weights::DeviceWeights;
use super::workspace::Workspace;
use crate::error::TeacherError;
use crate::families::ModelConfig;
use crate::family::PromptFamily;
use crate::precision::Precision;
use crate::shape::ModelShape;
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

/// Queues `kernel` on `stream` with `(grid, threads per block, dynamic shared bytes)` and
/// `args`; an empty grid queues nothing.
pub(super) fn launch(
    stream: &CudaStream,
    kernel: &CudaFunction,
    (grid, threads, shared): ((u32, u32), u32, u32),
    args: &[Arg],
) -> Result<(), CudaError> {
    if grid.0 == 0 || grid.1 == 0 {
        return Ok(());
    }
    let mut builder = stream.launch_builder(kernel);
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
    // SAFETY: every kernel's parameters are listed in its source's (`kernels.cu`,
    // `attention.cu`, `attention_wgmma.cu`, `sca.cu`) order and types; the buffers they
    // point to are sized by their callers (the engine's by the limits its passes respect).
    unsafe { builder.launch(config) }
        .map(|_| ())
        .map_err(CudaError::driver)
}

/// A decoder (GPT-2 or LLaMA) on one GPU for extraction; see the [module docs](super).
pub struct CudaEngine {
    pub(super) stream: Arc<CudaStream>,
    pub(super) kernels: Kernels,
    pub(super) blas: RefCell<Blas>,
    pub(super) weights: DeviceWeights,
    /// `None` only while [`CudaEngine::set_limits`] replaces it.
    pub(super) work: RefCell<Option<Workspace>>,
    pub(super) limits: EngineLimits,
    pub(super) arch: EngineArch,
    pub(super) layers: usize,
    pub(super) precision: Precision,
    weights_sha256: String,
    pub(super) dir: PathBuf,
    pub(super) device_name: String,
    /// Stage timing when `TIMEKD_CUDA_PROFILE` is set.
    pub(super) profile: RefCell<Option<Profiler>>,
    /// Where queued calls' states land on the host: two, so that one call can be queued
    /// while the one before is read.
    downloads: [Download; 2],
}

/// A host buffer for a queued call's states, and whether a call holds it.
#[derive(Default)]
struct Download {
    host: RefCell<PinnedDownload>,
    in_use: Arc<AtomicBool>,
}

/// A call queued by [`CudaEngine::queue`]: its states are read by [`CudaEngine::collect`] on
/// the same engine. Dropping it uncollected frees its download buffer (a later copy into it
/// is queued behind this one's).
pub struct QueuedStates {
    slot: usize,
    in_use: Arc<AtomicBool>,
    /// Output row i holds prompt `order[i]`'s state.
    order: Vec<usize>,
    done: CudaEvent,
}

impl Drop for QueuedStates {
    fn drop(&mut self) {
        self.in_use.store(false, Ordering::Release);
    }
}

impl Drop for CudaEngine {
    fn drop(&mut self) {
        if let Some(profile) = self.profile.get_mut() {
            eprintln!("{}", profile.report());
        }
    }
}

impl CudaEngine {
    /// Loads the model in `dir` (its `config.json` as read and checked by the caller, e.g.
    /// [`ModelConfig::for_model_dir`], and the first `layers` blocks) onto CUDA device
    /// `ordinal`, computing in `precision` (`F16`; `F32Split`, which is f32 accuracy here
    /// through true f32 products; `F32`, products on TF32 tensor cores as in Burn; bf16 is not
    /// offered), with buffers for `limits`. BERT (bidirectional) is refused: it runs on
    /// Burn's CUDA backend.
    pub fn load(
        dir: &Path,
        (config, layers): (&ModelConfig, usize),
        ordinal: usize,
        precision: Precision,
        limits: EngineLimits,
    ) -> Result<Self, TeacherError> {
        let gemm = gemm_type(precision)?;
        let arch = EngineArch::for_config(config)?;
        let file = Checkpoint::read(dir)?;
        let mut tensors = file.tensors()?;
        let ctx = CudaContext::new(ordinal).map_err(CudaError::driver)?;
        let device_name = ctx.name().map_err(CudaError::driver)?;
        // One stream, one thread: cudarc's cross-stream event bookkeeping is not needed.
        // SAFETY: no buffer of this context is shared with another stream.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().map_err(CudaError::driver)?;
        let kernels = Kernels::load(&ctx, arch.shape.d_model)?;
        let blas = Blas::new(&stream, gemm)?;
        // The checkpoint's digest (seconds for a billion weights) while the weights convert.
        let (weights_sha256, weights) = std::thread::scope(|s| {
            let digest = s.spawn(|| file.sha256());
            let weights = DeviceWeights::upload(
                &stream,
                config,
                &arch,
                &mut tensors,
                layers,
                gemm == GemmType::F16,
            );
            (digest.join().expect("the digest thread panicked"), weights)
        });
        let weights = weights?;
        let work = Workspace::new(&stream, &arch, layers, gemm, limits)?;
        let profile = RefCell::new(Profiler::from_env(&ctx));
        let engine = CudaEngine {
            profile,
            weights,
            work: RefCell::new(Some(work)),
            kernels,
            blas: RefCell::new(blas),
            stream,
            limits,
            weights_sha256,
            dir: dir.to_path_buf(),
            arch,
            layers,
            precision,
            device_name,
            downloads: Default::default(),
        };
        engine.tune()?;
        Ok(engine)
    }

    /// Times the products' algorithms ([`tune_products`](Self::tune_products)), saying what
    /// it chose when profiling.
    fn tune(&self) -> Result<(), CudaError> {
        let guard = self.work.borrow();
        let work = guard.as_ref().expect("set by load");
        let lines = self.tune_products(work)?;
        if self.profile.borrow().is_some() {
            eprintln!("CUDA engine products (cuBLASLt algorithm by time):");
            for line in lines {
                eprintln!("  {line}");
            }
        }
        Ok(())
    }

    /// The checkpoint's sizes.
    pub fn shape(&self) -> &ModelShape {
        &self.arch.shape
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

    /// The CUDA device ordinal it runs on.
    pub fn ordinal(&self) -> usize {
        self.stream.context().ordinal()
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
            &self.arch,
            self.layers,
            gemm,
            limits,
        )?);
        self.limits = limits;
        Ok(())
    }

    /// Final states (after `ln_f`) of the last token of every prompt of `families`, family
    /// by family: `[Σ prompts, d]` row-major on the host. The same as
    /// [`collect`](Self::collect) of [`queue`](Self::queue).
    pub fn family_last_states(
        &self,
        families: &[PromptFamily<'_>],
    ) -> Result<Vec<f32>, TeacherError> {
        self.collect(self.queue(families)?)
    }

    /// Queues the passes of [`family_last_states`](Self::family_last_states) and the copy of
    /// their states to the host, and returns without waiting for them: the host can prepare
    /// and queue the next call while the GPU works. At most two calls are queued at once
    /// (one download buffer each); a call's states are read by [`collect`](Self::collect).
    pub fn queue(&self, families: &[PromptFamily<'_>]) -> Result<QueuedStates, TeacherError> {
        let d = self.arch.shape.d_model;
        let max = longest_prompt(&self.arch.shape);
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
        let slot = self
            .downloads
            .iter()
            .position(|d| !d.in_use.load(Ordering::Acquire))
            .ok_or_else(|| {
                CudaError::Internal("two calls are queued already: collect one first".into())
            })?;
        let mut order = Vec::with_capacity(total);
        if total > 0 {
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
                CudaError::Internal(
                    "the engine lost its buffers in an earlier failed re-plan".into(),
                )
            })?;
            DeviceBuffer::grown(&mut work.out, &self.stream, total * d * 4)?;
            if let Some(profile) = self.profile.borrow_mut().as_mut() {
                profile.begin(&self.stream)?;
            }
            for group in plan(&prefixes, &suffixes, self.limits) {
                self.run_group(work, families, &group, &first_row, &mut order)?;
            }
            let out = work.out.as_ref().expect("allocated above");
            let download = &self.downloads[slot];
            download
                .host
                .borrow_mut()
                .queue(&self.stream, out, total * d)?;
            if let Some(profile) = self.profile.borrow_mut().as_mut() {
                // Profiling times each call alone.
                self.stream.synchronize().map_err(CudaError::driver)?;
                profile.end()?;
            }
        }
        let done = self
            .stream
            .context()
            .new_event(Some(sys::CUevent_flags::CU_EVENT_DISABLE_TIMING))
            .map_err(CudaError::driver)?;
        done.record(&self.stream).map_err(CudaError::driver)?;
        let in_use = self.downloads[slot].in_use.clone();
        in_use.store(true, Ordering::Release);
        Ok(QueuedStates {
            slot,
            in_use,
            order,
            done,
        })
    }

    /// Waits for a call [`queue`](Self::queue)d on this engine and returns its states as
    /// [`family_last_states`](Self::family_last_states) does.
    pub fn collect(&self, queued: QueuedStates) -> Result<Vec<f32>, TeacherError> {
        let d = self.arch.shape.d_model;
        let total = queued.order.len();
        queued.done.synchronize().map_err(CudaError::driver)?;
        let host = self.downloads[queued.slot].host.borrow();
        let rows = host.values(total * d)?;
        let mut states = vec![0f32; total * d];
        for (row, &prompt) in queued.order.iter().enumerate() {
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
        launch(&self.stream, kernel, (grid, threads, shared), args)
    }

    pub(super) fn is_half(&self) -> bool {
        self.precision == Precision::F16
    }

    pub(super) fn elem_bytes(&self) -> usize {
        self.precision.bytes() as usize
    }

    pub(super) fn scale(&self) -> f32 {
        1.0 / (self.arch.shape.head_dim as f32).sqrt()
    }
}
