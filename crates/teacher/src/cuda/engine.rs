//! [`CudaGpt2`]: weights on one GPU, the prefix and suffix passes, and their memory plan.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaFunction, CudaStream, LaunchConfig, PushKernelArg};
use half::f16;

use super::CudaError;
use super::blas::{Blas, Epilogue, GemmType};
use super::buffer::DeviceBuffer;
use super::kernels::Kernels;
use super::plan::{Budgets, Group, plan};
use super::profile::{Profiler, Stage};
use crate::error::TeacherError;
use crate::family::PromptFamily;
use crate::gpt2::{CALIBRATION_PENALTY, Gpt2Config};
use crate::precision::Precision;
use crate::weights::{NamedTensors, WeightFile};

/// Threads per block of the row kernels (one warp per row) and of the simple attention.
const ROW_THREADS: u32 = 128;
/// Queries per block of the tensor-core attention.
const ATTENTION_TILE: usize = 64;

/// The memory an engine plans for: tokens per pass and prefix tokens cached at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineLimits {
    /// Most packed tokens in one pass.
    pub pass_tokens: usize,
    /// Most sequences in one pass.
    pub pass_sequences: usize,
    /// Most prefix tokens whose keys and values are cached at once.
    pub cache_tokens: usize,
}

/// Tokens per pass the plan aims at: past this, the products gain nothing measurable.
const TARGET_PASS_TOKENS: usize = 65_536;

/// The share of the memory budget the engine plans for (measured on an H200 with a 24 GiB
/// budget: at 80%, nvidia-smi peaked at 37 GB while the SCA ran un-batched beside it).
const ENGINE_SHARE: f64 = 0.65;

/// The cache holds at most this many passes' worth of prefix tokens.
const MAX_CACHE_PASSES: usize = 8;

impl EngineLimits {
    /// Limits for `budget_bytes` of device memory: passes of up to 65,536 tokens (less where
    /// a quarter of the budget holds fewer, never under one prompt of `n_positions`) and a
    /// cache of what is left of 65% of the budget after weights and pass buffers, at most
    /// eight passes' worth. The rest is for the SCA (run through Burn on the same GPU),
    /// the two runtimes' contexts and their memory pools.
    pub fn for_budget(
        config: &Gpt2Config,
        layers: usize,
        precision: Precision,
        budget_bytes: u64,
    ) -> Self {
        let per_token = Self::pass_bytes_per_token(config, precision);
        let quarter = (budget_bytes / 4 / per_token) as usize;
        let pass_tokens = quarter.clamp(
            config.n_positions,
            TARGET_PASS_TOKENS.max(config.n_positions),
        );
        let pass_sequences = (pass_tokens / 8).max(1);
        let fixed = weight_bytes(config, layers, precision)
            + WORKSPACE_RESERVE
            + pass_tokens as u64 * per_token
            + pass_sequences as u64 * Self::pass_bytes_per_sequence(config);
        let usable = (budget_bytes as f64 * ENGINE_SHARE) as u64;
        let per_cached = Self::cache_bytes_per_token(config, layers, precision);
        let cache_tokens = (usable.saturating_sub(fixed) / per_cached) as usize;
        EngineLimits {
            pass_tokens,
            pass_sequences,
            // More cache than a few passes' worth of prefixes buys nothing (groups only need
            // to keep passes full) and would hold most of a large GPU.
            cache_tokens: cache_tokens.clamp(config.n_positions, MAX_CACHE_PASSES * pass_tokens),
        }
    }

    /// Half the pass and cache sizes, never under one prompt of `n_positions` tokens;
    /// `None` when they are there already.
    pub fn halved(&self, config: &Gpt2Config) -> Option<Self> {
        let floor = config.n_positions;
        let half = EngineLimits {
            pass_tokens: (self.pass_tokens / 2).max(floor),
            pass_sequences: (self.pass_sequences / 2).max(1),
            cache_tokens: (self.cache_tokens / 2).max(floor),
        };
        (half != *self).then_some(half)
    }

    /// Device bytes the engine holds with these limits (weights, pass buffers, cache),
    /// before the per-call output buffer.
    pub fn peak_bytes(&self, config: &Gpt2Config, layers: usize, precision: Precision) -> u64 {
        weight_bytes(config, layers, precision)
            + WORKSPACE_RESERVE
            + self.pass_tokens as u64 * Self::pass_bytes_per_token(config, precision)
            + self.pass_sequences as u64 * Self::pass_bytes_per_sequence(config)
            + self.cache_tokens as u64 * Self::cache_bytes_per_token(config, layers, precision)
    }

    /// f32 residual, LayerNorm output, q|k|v, attention output, projection output, MLP
    /// hidden; ids, positions, types and the attention's work lists.
    fn pass_bytes_per_token(config: &Gpt2Config, precision: Precision) -> u64 {
        let (d, inner) = (config.n_embd as u64, config.n_inner as u64);
        4 * d + elem_bytes(precision) * (6 * d + inner) + 4 + 4 + 1 + 12 + 8
    }

    /// The last rows' residual and the per-sequence tables.
    fn pass_bytes_per_sequence(config: &Gpt2Config) -> u64 {
        4 * config.n_embd as u64 + 20 + 4 + 12 + 8
    }

    /// q|k|v of every block, and the type.
    fn cache_bytes_per_token(config: &Gpt2Config, layers: usize, precision: Precision) -> u64 {
        layers as u64 * 3 * config.n_embd as u64 * elem_bytes(precision) + 1
    }
}

/// cuBLASLt's workspace plus slack for the driver's own allocations.
const WORKSPACE_RESERVE: u64 = 64 << 20;

fn elem_bytes(precision: Precision) -> u64 {
    match precision {
        Precision::F16 | Precision::Bf16 => 2,
        Precision::F32 | Precision::F32Split => 4,
    }
}

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

fn weight_bytes(config: &Gpt2Config, layers: usize, precision: Precision) -> u64 {
    let (d, inner) = (config.n_embd as u64, config.n_inner as u64);
    let per_block = (4 * d * d + 2 * d * inner + 5 * d + inner) * elem_bytes(precision) + 16 * d;
    (config.vocab_size + config.n_positions) as u64 * d * 4 + per_block * layers as u64 + 8 * d
}

/// One block's weights on the device.
struct BlockWeights {
    ln_1: (DeviceBuffer, DeviceBuffer),
    attn: (DeviceBuffer, DeviceBuffer),
    attn_proj: (DeviceBuffer, DeviceBuffer),
    ln_2: (DeviceBuffer, DeviceBuffer),
    fc: (DeviceBuffer, DeviceBuffer),
    mlp_proj: (DeviceBuffer, DeviceBuffer),
}

/// Buffers of one pass and the cache, sized by the limits.
struct Workspace {
    h: DeviceBuffer,
    a: DeviceBuffer,
    qkv: DeviceBuffer,
    ctx: DeviceBuffer,
    o: DeviceBuffer,
    mlp: DeviceBuffer,
    h_last: DeviceBuffer,
    cache: Vec<DeviceBuffer>,
    cache_types: DeviceBuffer,
    ids: DeviceBuffer,
    positions: DeviceBuffer,
    types: DeviceBuffer,
    seqs: DeviceBuffer,
    items: DeviceBuffer,
    tiles: DeviceBuffer,
    last_rows: DeviceBuffer,
    /// The output of a call: [prompts, d] f32, grown on demand.
    out: Option<DeviceBuffer>,
}

/// A kernel argument.
enum Arg {
    Ptr(u64),
    Int(i32),
    Float(f32),
}

/// GPT-2 on one GPU for extraction; see the [module docs](super).
pub struct CudaGpt2 {
    stream: Arc<CudaStream>,
    kernels: Kernels,
    blas: RefCell<Blas>,
    wte: DeviceBuffer,
    wpe: DeviceBuffer,
    blocks: Vec<BlockWeights>,
    ln_f: (DeviceBuffer, DeviceBuffer),
    /// `None` only while [`CudaGpt2::set_limits`] replaces it.
    work: RefCell<Option<Workspace>>,
    limits: EngineLimits,
    config: Gpt2Config,
    layers: usize,
    precision: Precision,
    weights_sha256: String,
    dir: PathBuf,
    device_name: String,
    /// Stage timing when `TIMEKD_CUDA_PROFILE` is set.
    profile: RefCell<Option<Profiler>>,
}

impl Drop for CudaGpt2 {
    fn drop(&mut self) {
        if let Some(profile) = self.profile.get_mut() {
            eprintln!("{}", profile.report());
        }
    }
}

impl CudaGpt2 {
    /// Loads the model in `dir` (its first `layers` blocks, all when `None`) onto CUDA device
    /// `ordinal`, computing in `precision` (`F16`; `F32Split`, which is f32 accuracy here
    /// through true f32 products; `F32`, products on TF32 tensor cores as in Burn; bf16 is not
    /// offered), with buffers for `limits`.
    pub fn load(
        dir: &Path,
        layers: Option<usize>,
        ordinal: usize,
        precision: Precision,
        limits: EngineLimits,
    ) -> Result<Self, TeacherError> {
        let (config, layers) = Gpt2Config::for_model_dir(dir, layers)?;
        let gemm = gemm_type(precision)?;
        let file = WeightFile::read(&dir.join("model.safetensors"), "model.safetensors")?;
        let mut tensors = file.tensors()?;
        if !tensors.contains("wte.weight") && tensors.contains("transformer.wte.weight") {
            tensors.set_prefix("transformer.");
        }
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
                let p = format!("h.{i}.");
                Ok(BlockWeights {
                    ln_1: up.norm(&format!("{p}ln_1"), d)?,
                    attn: up.linear(&format!("{p}attn.c_attn"), d, 3 * d)?,
                    attn_proj: up.linear(&format!("{p}attn.c_proj"), d, d)?,
                    ln_2: up.norm(&format!("{p}ln_2"), d)?,
                    fc: up.linear(&format!("{p}mlp.c_fc"), d, inner)?,
                    mlp_proj: up.linear(&format!("{p}mlp.c_proj"), inner, d)?,
                })
            })
            .collect::<Result<Vec<_>, TeacherError>>()?;
        let work = Workspace::new(&stream, &config, layers, gemm, limits)?;
        let profile = RefCell::new(Profiler::from_env(&ctx));
        Ok(CudaGpt2 {
            profile,
            wte: up.f32("wte.weight", &[config.vocab_size, d])?,
            wpe: up.f32("wpe.weight", &[config.n_positions, d])?,
            ln_f: up.norm("ln_f", d)?,
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
        let budgets = Budgets {
            pass_tokens: self.limits.pass_tokens,
            pass_sequences: self.limits.pass_sequences,
            cache_tokens: self.limits.cache_tokens,
        };
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
        for group in plan(&prefixes, &suffixes, budgets) {
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

    /// A group's prefix passes, then its suffix passes; appends each output row's prompt
    /// index to `order`.
    fn run_group(
        &self,
        work: &mut Workspace,
        families: &[PromptFamily<'_>],
        group: &Group,
        first_row: &[usize],
        order: &mut Vec<usize>,
    ) -> Result<(), CudaError> {
        let cached: usize = group
            .families
            .clone()
            .map(|f| families[f].prefix_len())
            .sum();
        let mut cache_types = Vec::with_capacity(cached);
        for f in group.families.clone() {
            cache_types.extend(families[f].prefix().1.iter().map(|t| t.code()));
        }
        work.cache_types.upload(&self.stream, &cache_types)?;
        for pass in &group.prefix_passes {
            let base = group.cache_rows[pass.start - group.families.start];
            let members: Vec<&PromptFamily> = pass.clone().map(|f| &families[f]).collect();
            self.prefix_pass(work, &members, base)?;
        }
        for pass in &group.suffix_passes {
            let seqs: Vec<SuffixSeq> = pass
                .iter()
                .map(|&(f, k)| {
                    let (ids, types) = families[f].suffix(k);
                    SuffixSeq {
                        ids,
                        types: types.iter().map(|t| t.code()).collect(),
                        cache_row: group.cache_rows[f - group.families.start],
                        prefix_len: families[f].prefix_len(),
                    }
                })
                .collect();
            let out_row = order.len();
            self.suffix_pass(work, &seqs, out_row)?;
            order.extend(pass.iter().map(|&(f, k)| first_row[f] + k));
        }
        Ok(())
    }

    /// The keys and values of `families`' prefixes, into cache rows from `base` on.
    fn prefix_pass(
        &self,
        work: &mut Workspace,
        families: &[&PromptFamily<'_>],
        base: usize,
    ) -> Result<(), CudaError> {
        let mut ids = Vec::new();
        let mut seqs = Vec::with_capacity(families.len());
        for family in families {
            let (prefix_ids, _) = family.prefix();
            seqs.push(SeqInfo {
                pre_start: 0,
                pre_len: 0,
                own_start: ids.len() as i32,
                own_len: prefix_ids.len() as i32,
            });
            ids.extend_from_slice(prefix_ids);
        }
        let rows = ids.len();
        let positions: Vec<u32> = families
            .iter()
            .flat_map(|f| 0..f.prefix_len() as u32)
            .collect();
        work.ids.upload(&self.stream, &ids)?;
        work.positions.upload(&self.stream, &positions)?;
        upload_seqs(&self.stream, &work.seqs, &seqs)?;
        let lists = self.attention_lists(work, &seqs)?;
        self.pass_uploaded()?;
        let (d, e) = (self.config.n_embd, self.elem_bytes());
        let row_bytes = 3 * d * e;
        self.embed(work, rows)?;
        for (l, block) in self.blocks.iter().enumerate() {
            let qkv = work.cache[l].at(base * row_bytes);
            self.linear(
                work.a.ptr(),
                &block.attn,
                qkv,
                (rows, 3 * d, d),
                Epilogue::Bias,
                Stage::Qkv,
            )?;
            if l + 1 == self.layers {
                break;
            }
            let source = Keys {
                pre: 0,
                pre_types: 0,
                own: qkv,
                own_types: work.cache_types.at(base),
            };
            self.attention_all(work, &source, &lists)?;
            self.mlp_and_next_norm(work, block, l, rows)?;
        }
        Ok(())
    }

    /// Last-token states of `seqs` (suffixes against cached prefixes, or whole prompts),
    /// into rows `out_row..` of the call's output.
    fn suffix_pass(
        &self,
        work: &mut Workspace,
        seqs: &[SuffixSeq<'_>],
        out_row: usize,
    ) -> Result<(), CudaError> {
        let last_position = self.config.n_positions as u32 - 1;
        let mut ids = Vec::new();
        let mut positions = Vec::new();
        let mut types = Vec::new();
        let mut info = Vec::with_capacity(seqs.len());
        let mut last_rows = Vec::with_capacity(seqs.len());
        let mut last_items = Vec::with_capacity(3 * seqs.len());
        for (s, seq) in seqs.iter().enumerate() {
            let start = ids.len();
            info.push(SeqInfo {
                pre_start: seq.cache_row as i32,
                pre_len: seq.prefix_len as i32,
                own_start: start as i32,
                own_len: seq.ids.len() as i32,
            });
            ids.extend_from_slice(seq.ids);
            positions.extend(
                (seq.prefix_len..seq.prefix_len + seq.ids.len())
                    .map(|p| (p as u32).min(last_position)),
            );
            types.extend_from_slice(&seq.types);
            last_rows.push((start + seq.ids.len() - 1) as u32);
            last_items.extend_from_slice(&[s as i32, seq.ids.len() as i32 - 1, s as i32]);
        }
        let rows = ids.len();
        let n = seqs.len();
        work.ids.upload(&self.stream, &ids)?;
        work.positions.upload(&self.stream, &positions)?;
        work.types.upload(&self.stream, &types)?;
        work.last_rows.upload(&self.stream, &last_rows)?;
        upload_seqs(&self.stream, &work.seqs, &info)?;
        let lists = self.attention_lists(work, &info)?;
        self.pass_uploaded()?;
        let d = self.config.n_embd;
        let max_keys = seqs
            .iter()
            .map(|s| s.prefix_len + s.ids.len())
            .max()
            .unwrap_or(1);
        self.embed(work, rows)?;
        for (l, block) in self.blocks.iter().enumerate() {
            self.linear(
                work.a.ptr(),
                &block.attn,
                work.qkv.ptr(),
                (rows, 3 * d, d),
                Epilogue::Bias,
                Stage::Qkv,
            )?;
            let source = Keys {
                pre: work.cache[l].ptr(),
                pre_types: work.cache_types.ptr(),
                own: work.qkv.ptr(),
                own_types: work.types.ptr(),
            };
            if l + 1 < self.layers {
                self.attention_all(work, &source, &lists)?;
                self.mlp_and_next_norm(work, block, l, rows)?;
                continue;
            }
            // The final block: only each sequence's last row goes on.
            work.items.upload(&self.stream, &last_items)?;
            self.attention_simt(work, &source, work.items.ptr(), n, max_keys)?;
            self.launch(
                &self.kernels.gather_rows,
                (warp_blocks(n), 1),
                ROW_THREADS,
                0,
                &[
                    Arg::Ptr(work.h.ptr()),
                    Arg::Ptr(work.last_rows.ptr()),
                    Arg::Ptr(work.h_last.ptr()),
                    Arg::Int(n as i32),
                    Arg::Int(d as i32),
                ],
            )?;
            self.mark(Stage::LastRows)?;
            let out = work
                .out
                .as_ref()
                .expect("allocated by the call")
                .at(out_row * d * 4);
            self.block_tail(work, block, work.h_last.ptr(), n, (&self.ln_f, out, true))?;
        }
        Ok(())
    }

    /// Token and position embeddings of the uploaded ids, then the first `ln_1` into `a`.
    fn embed(&self, work: &Workspace, rows: usize) -> Result<(), CudaError> {
        self.launch(
            &self.kernels.embed,
            (warp_blocks(rows), 1),
            ROW_THREADS,
            0,
            &[
                Arg::Ptr(work.ids.ptr()),
                Arg::Ptr(work.positions.ptr()),
                Arg::Ptr(self.wte.ptr()),
                Arg::Ptr(self.wpe.ptr()),
                Arg::Ptr(work.h.ptr()),
                Arg::Int(rows as i32),
                Arg::Int(self.config.n_embd as i32),
            ],
        )?;
        self.mark(Stage::Embed)?;
        self.add_norm(
            work.h.ptr(),
            0,
            &self.blocks[0].ln_1,
            work.a.ptr(),
            rows,
            false,
        )
    }

    /// After attention into `ctx`: the output projection, residual, MLP and residual of
    /// block `l` over `rows`, then the next block's `ln_1` into `a`.
    fn mlp_and_next_norm(
        &self,
        work: &Workspace,
        block: &BlockWeights,
        l: usize,
        rows: usize,
    ) -> Result<(), CudaError> {
        let next = &self.blocks[l + 1].ln_1;
        self.block_tail(work, block, work.h.ptr(), rows, (next, work.a.ptr(), false))
    }

    /// `h += ctx · W_o + b_o; a = ln_2(h); h += MLP(a); then = norm(h)`, over `rows` rows
    /// of `h`; `then` is (norm, destination, whether the destination is f32).
    fn block_tail(
        &self,
        work: &Workspace,
        block: &BlockWeights,
        h: u64,
        rows: usize,
        then: (&(DeviceBuffer, DeviceBuffer), u64, bool),
    ) -> Result<(), CudaError> {
        let (d, inner) = (self.config.n_embd, self.config.n_inner);
        self.linear(
            work.ctx.ptr(),
            &block.attn_proj,
            work.o.ptr(),
            (rows, d, d),
            Epilogue::Bias,
            Stage::AttnProj,
        )?;
        self.add_norm(h, work.o.ptr(), &block.ln_2, work.a.ptr(), rows, false)?;
        let activation = if self.config.tanh_gelu {
            Epilogue::BiasGelu
        } else {
            Epilogue::Bias
        };
        self.linear(
            work.a.ptr(),
            &block.fc,
            work.mlp.ptr(),
            (rows, inner, d),
            activation,
            Stage::Fc,
        )?;
        if !self.config.tanh_gelu {
            self.exact_gelu(work.mlp.ptr(), rows * inner)?;
        }
        self.linear(
            work.mlp.ptr(),
            &block.mlp_proj,
            work.o.ptr(),
            (rows, d, inner),
            Epilogue::Bias,
            Stage::MlpProj,
        )?;
        let (norm, out, out_f32) = then;
        self.add_norm(h, work.o.ptr(), norm, out, rows, out_f32)
    }

    /// `h[r] += delta[r]` (when `delta` is not 0), then `out[r] = norm(h[r])`.
    fn add_norm(
        &self,
        h: u64,
        delta: u64,
        norm: &(DeviceBuffer, DeviceBuffer),
        out: u64,
        rows: usize,
        out_f32: bool,
    ) -> Result<(), CudaError> {
        let kernel = match (self.is_half(), out_f32) {
            (true, false) => &self.kernels.add_ln_f16,
            (true, true) => &self.kernels.add_ln_f16_out_f32,
            (false, _) => &self.kernels.add_ln_f32,
        };
        self.launch(
            kernel,
            (warp_blocks(rows), 1),
            ROW_THREADS,
            0,
            &[
                Arg::Ptr(h),
                Arg::Ptr(delta),
                Arg::Ptr(norm.0.ptr()),
                Arg::Ptr(norm.1.ptr()),
                Arg::Ptr(out),
                Arg::Int(rows as i32),
                Arg::Int(self.config.n_embd as i32),
                Arg::Float(self.config.layer_norm_epsilon as f32),
            ],
        )?;
        self.mark(Stage::Norm)
    }

    fn exact_gelu(&self, x: u64, n: usize) -> Result<(), CudaError> {
        let kernel = if self.is_half() {
            &self.kernels.gelu_f16
        } else {
            &self.kernels.gelu_f32
        };
        let blocks = n.div_ceil(256).min(65_535) as u32;
        self.launch(
            kernel,
            (blocks, 1),
            256,
            0,
            &[Arg::Ptr(x), Arg::Ptr(n as u64), Arg::Int(0)],
        )?;
        self.mark(Stage::Fc)
    }

    /// `y[rows, n] = x[rows, k] · W + b` (with the epilogue) in the compute type; `shape`
    /// is (rows, n, k).
    fn linear(
        &self,
        x: u64,
        weights: &(DeviceBuffer, DeviceBuffer),
        y: u64,
        shape: (usize, usize, usize),
        epilogue: Epilogue,
        stage: Stage,
    ) -> Result<(), CudaError> {
        let (rows, n, k) = shape;
        self.blas.borrow_mut().linear(
            &self.stream,
            x,
            weights.0.ptr(),
            weights.1.ptr(),
            y,
            rows,
            n,
            k,
            epilogue,
        )?;
        self.mark(stage)
    }

    /// Charges the work queued since the last mark to `stage` (when profiling).
    fn mark(&self, stage: Stage) -> Result<(), CudaError> {
        match self.profile.borrow_mut().as_mut() {
            Some(profile) => profile.mark(&self.stream, stage),
            None => Ok(()),
        }
    }

    /// A pass's tables are queued: the uploads' mark, and the pass count.
    fn pass_uploaded(&self) -> Result<(), CudaError> {
        if let Some(profile) = self.profile.borrow_mut().as_mut() {
            profile.pass();
        }
        self.mark(Stage::Upload)
    }

    /// Uploads the work list of attention over every query of `seqs`: 64-query tiles for
    /// the tensor-core kernel, else one item per query for the simple one.
    fn attention_lists(
        &self,
        work: &Workspace,
        seqs: &[SeqInfo],
    ) -> Result<AttentionLists, CudaError> {
        let max_keys = seqs
            .iter()
            .map(|s| (s.pre_len + s.own_len) as usize)
            .max()
            .unwrap_or(1);
        if self.tensor_core_attention() {
            let mut tiles = Vec::new();
            for (s, seq) in seqs.iter().enumerate() {
                for q0 in (0..seq.own_len).step_by(ATTENTION_TILE) {
                    tiles.extend_from_slice(&[s as i32, q0]);
                }
            }
            work.tiles.upload(&self.stream, &tiles)?;
            Ok(AttentionLists {
                count: tiles.len() / 2,
                max_keys,
            })
        } else {
            let mut items = Vec::new();
            for (s, seq) in seqs.iter().enumerate() {
                for q in 0..seq.own_len {
                    items.extend_from_slice(&[s as i32, q, seq.own_start + q]);
                }
            }
            work.items.upload(&self.stream, &items)?;
            Ok(AttentionLists {
                count: items.len() / 3,
                max_keys,
            })
        }
    }

    /// Attention of every query (the lists of [`attention_lists`](Self::attention_lists))
    /// into `ctx`, rows as the pass's.
    fn attention_all(
        &self,
        work: &Workspace,
        keys: &Keys,
        lists: &AttentionLists,
    ) -> Result<(), CudaError> {
        if !self.tensor_core_attention() {
            self.attention_simt(work, keys, work.items.ptr(), lists.count, lists.max_keys)?;
            return self.mark(Stage::Attention);
        }
        let d = self.config.n_embd;
        self.launch(
            &self.kernels.attention_mma_f16,
            (lists.count as u32, self.config.n_head as u32),
            128,
            0,
            &[
                Arg::Ptr(keys.pre),
                Arg::Ptr(keys.pre_types),
                Arg::Ptr(keys.own),
                Arg::Ptr(keys.own_types),
                Arg::Ptr(work.ctx.ptr()),
                Arg::Ptr(work.seqs.ptr()),
                Arg::Ptr(work.tiles.ptr()),
                Arg::Int(d as i32),
                Arg::Int(3 * d as i32),
                Arg::Float(self.scale()),
                Arg::Float(CALIBRATION_PENALTY as f32),
            ],
        )?;
        self.mark(Stage::Attention)
    }

    /// The simple attention over `count` uploaded items (seq, query, output row) into `ctx`.
    fn attention_simt(
        &self,
        work: &Workspace,
        keys: &Keys,
        items: u64,
        count: usize,
        max_keys: usize,
    ) -> Result<(), CudaError> {
        let d = self.config.n_embd;
        let head_dim = self.config.head_dim();
        let warps = (ROW_THREADS / 32) as usize;
        let kernel = if self.is_half() {
            &self.kernels.attention_simt_f16
        } else {
            &self.kernels.attention_simt_f32
        };
        let shared = (warps * (head_dim + max_keys) * 4) as u32;
        self.launch(
            kernel,
            (count.div_ceil(warps) as u32, self.config.n_head as u32),
            ROW_THREADS,
            shared,
            &[
                Arg::Ptr(keys.pre),
                Arg::Ptr(keys.pre_types),
                Arg::Ptr(keys.own),
                Arg::Ptr(keys.own_types),
                Arg::Ptr(work.ctx.ptr()),
                Arg::Ptr(work.seqs.ptr()),
                Arg::Ptr(items),
                Arg::Int(count as i32),
                Arg::Int(d as i32),
                Arg::Int(3 * d as i32),
                Arg::Int(head_dim as i32),
                Arg::Float(self.scale()),
                Arg::Float(CALIBRATION_PENALTY as f32),
                Arg::Int(max_keys as i32),
            ],
        )
    }

    fn launch(
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

    fn is_half(&self) -> bool {
        self.precision == Precision::F16
    }

    fn elem_bytes(&self) -> usize {
        elem_bytes(self.precision) as usize
    }

    fn tensor_core_attention(&self) -> bool {
        self.is_half() && self.config.head_dim() == 64
    }

    fn scale(&self) -> f32 {
        1.0 / (self.config.head_dim() as f32).sqrt()
    }
}

/// Blocks of [`ROW_THREADS`] for one warp per row.
fn warp_blocks(rows: usize) -> u32 {
    rows.div_ceil((ROW_THREADS / 32) as usize) as u32
}

/// One sequence of a suffix pass.
struct SuffixSeq<'p> {
    ids: &'p [u32],
    types: Vec<u8>,
    /// Cache row of its prefix's first token.
    cache_row: usize,
    /// Tokens of its prefix (0: a whole prompt).
    prefix_len: usize,
}

/// `kernels.cu`'s `SeqInfo`.
#[derive(Debug, Clone, Copy)]
struct SeqInfo {
    pre_start: i32,
    pre_len: i32,
    own_start: i32,
    own_len: i32,
}

fn upload_seqs(
    stream: &CudaStream,
    buffer: &DeviceBuffer,
    seqs: &[SeqInfo],
) -> Result<(), CudaError> {
    let flat: Vec<i32> = seqs
        .iter()
        .flat_map(|s| [s.pre_start, s.pre_len, s.own_start, s.own_len, 0])
        .collect();
    buffer.upload(stream, &flat)
}

/// Where the attention kernels read keys: prefix projections and types (0 when none) and
/// the pass's own.
struct Keys {
    pre: u64,
    pre_types: u64,
    own: u64,
    own_types: u64,
}

/// An uploaded attention work list.
struct AttentionLists {
    count: usize,
    max_keys: usize,
}

impl Workspace {
    fn new(
        stream: &Arc<CudaStream>,
        config: &Gpt2Config,
        layers: usize,
        gemm: GemmType,
        limits: EngineLimits,
    ) -> Result<Self, CudaError> {
        let e = if gemm == GemmType::F16 { 2 } else { 4 };
        let (d, inner) = (config.n_embd, config.n_inner);
        let (p, s, c) = (
            limits.pass_tokens,
            limits.pass_sequences,
            limits.cache_tokens,
        );
        let alloc = |bytes: usize| DeviceBuffer::new(stream, bytes);
        Ok(Workspace {
            h: alloc(p * d * 4)?,
            a: alloc(p * d * e)?,
            qkv: alloc(p * 3 * d * e)?,
            ctx: alloc(p * d * e)?,
            o: alloc(p * d * e)?,
            mlp: alloc(p * inner * e)?,
            h_last: alloc(s * d * 4)?,
            cache: (0..layers)
                .map(|_| alloc(c * 3 * d * e))
                .collect::<Result<_, _>>()?,
            cache_types: alloc(c)?,
            ids: alloc(p * 4)?,
            positions: alloc(p * 4)?,
            types: alloc(p)?,
            seqs: alloc(s * 20)?,
            items: alloc(p.max(s) * 12)?,
            tiles: alloc((p.div_ceil(ATTENTION_TILE) + s) * 8)?,
            last_rows: alloc(s * 4)?,
            out: None,
        })
    }
}

/// Reads tensors from the checkpoint and puts them on the device.
struct Uploader<'a> {
    stream: &'a Arc<CudaStream>,
    tensors: &'a NamedTensors<'a>,
    /// Matrix weights in f16 (else f32).
    half: bool,
}

impl Uploader<'_> {
    fn f32(&self, name: &str, shape: &[usize]) -> Result<DeviceBuffer, TeacherError> {
        let values = self.tensors.values(name, shape)?;
        Ok(DeviceBuffer::from_slice(self.stream, &values)?)
    }

    /// A tensor in the compute type.
    fn compute(&self, name: &str, shape: &[usize]) -> Result<DeviceBuffer, TeacherError> {
        if !self.half {
            return self.f32(name, shape);
        }
        let values: Vec<f16> = self
            .tensors
            .values(name, shape)?
            .into_iter()
            .map(f16::from_f32)
            .collect();
        Ok(DeviceBuffer::from_slice(self.stream, &values)?)
    }

    /// A Conv1D weight [d_in, d_out] (row-major, as the engine's products take it) and bias.
    fn linear(
        &self,
        name: &str,
        d_in: usize,
        d_out: usize,
    ) -> Result<(DeviceBuffer, DeviceBuffer), TeacherError> {
        Ok((
            self.compute(&format!("{name}.weight"), &[d_in, d_out])?,
            self.compute(&format!("{name}.bias"), &[d_out])?,
        ))
    }

    /// A LayerNorm's weight and bias, f32.
    fn norm(&self, name: &str, d: usize) -> Result<(DeviceBuffer, DeviceBuffer), TeacherError> {
        Ok((
            self.f32(&format!("{name}.weight"), &[d])?,
            self.f32(&format!("{name}.bias"), &[d])?,
        ))
    }
}
