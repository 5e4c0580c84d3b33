//! [`FusedStudent`]: one run of the student trained on one GPU by hand-written passes.

use std::sync::Arc;

use burn::tensor::{Device, Tensor, TensorData};
use cudarc::driver::{CudaContext, CudaFunction, CudaStream, LaunchConfig, PushKernelArg};

use super::GpuError;
use super::gemm::Gemm;
use super::kernels::{Kernels, PARTIAL_BLOCKS};
use super::memory::DeviceVec;
use super::params::ParamOffsets;
use crate::config::{LossConfig, OptimConfig};
use crate::data::SplitData;
use crate::flat::{FlatLayout, Source, flatten};
use crate::loss::TERMS;
use crate::model::Dual;
use crate::optim::AdamW;
use crate::train_config::TrainConfig;

/// Threads per block of every kernel.
pub(super) const THREADS: u32 = 256;

/// One kernel argument.
#[derive(Clone, Copy)]
pub(super) enum Arg {
    /// A device address (or 0 for "none").
    Ptr(u64),
    Int(i32),
    Float(f32),
    /// A 64-bit count or dropout key.
    Wide(u64),
}

/// The sizes every pass works with.
#[derive(Debug, Clone, Copy)]
pub(super) struct Dims {
    /// Windows of the largest batch the buffers hold.
    pub batch_max: usize,
    pub vars: usize,
    pub input_len: usize,
    pub horizon: usize,
    pub channel: usize,
    pub heads: usize,
    pub d_ff: usize,
    pub d_llm: usize,
    /// 1 − dropout probability.
    pub keep: f32,
}

impl Dims {
    pub fn head_dim(&self) -> usize {
        self.channel / self.heads
    }
}

/// The buffers of one encoder layer's forward pass that its backward pass reads. Tensors
/// of both branches are `[2, B·N, width]`; heads `[2, B, heads, N, head_dim]`.
pub(super) struct LayerBuffers {
    pub q: DeviceVec<f32>,
    pub k: DeviceVec<f32>,
    pub v: DeviceVec<f32>,
    pub qh: DeviceVec<f32>,
    pub kh: DeviceVec<f32>,
    pub vh: DeviceVec<f32>,
    /// Scores; in the backward pass, their gradient.
    pub scores: DeviceVec<f32>,
    pub probs: DeviceVec<f32>,
    pub dropped: DeviceVec<f32>,
    pub ctxh: DeviceVec<f32>,
    pub ctx: DeviceVec<f32>,
    pub attn_out: DeviceVec<f32>,
    pub x1: DeviceVec<f32>,
    pub xhat1: DeviceVec<f32>,
    pub sd1: DeviceVec<f32>,
    pub hidden_pre: DeviceVec<f32>,
    pub hidden: DeviceVec<f32>,
    pub ffn_out: DeviceVec<f32>,
    pub x2: DeviceVec<f32>,
    pub xhat2: DeviceVec<f32>,
    pub sd2: DeviceVec<f32>,
}

/// Batch inputs and the buffers around the encoders.
pub(super) struct Buffers {
    /// RevIN-normalised history, `[B·N, L]`.
    pub xt: DeviceVec<f32>,
    pub mean: DeviceVec<f32>,
    pub stdv: DeviceVec<f32>,
    /// The batch's embeddings `[B·N, d_llm]` and targets `[B, H, N]`.
    pub emb: DeviceVec<f32>,
    pub target: DeviceVec<f32>,
    /// Both branches' tokens `[2, B·N, C]`.
    pub tokens: DeviceVec<f32>,
    pub layers: Vec<LayerBuffers>,
    /// Final LayerNorm: encodings and what its backward pass needs.
    pub enc: DeviceVec<f32>,
    pub xhat_final: DeviceVec<f32>,
    pub sd_final: DeviceVec<f32>,
    /// Projections `[2, B·N, H]` and their gradient.
    pub proj: DeviceVec<f32>,
    pub dproj: DeviceVec<f32>,
}

/// Gradient buffers of the backward pass (reused by every layer).
pub(super) struct Scratch {
    pub denc: DeviceVec<f32>,
    pub dx: DeviceVec<f32>,
    pub dx1: DeviceVec<f32>,
    pub dffn: DeviceVec<f32>,
    pub dattn: DeviceVec<f32>,
    pub dctx: DeviceVec<f32>,
    pub dctxh: DeviceVec<f32>,
    pub dhidden: DeviceVec<f32>,
    pub dpre: DeviceVec<f32>,
    pub ddropped: DeviceVec<f32>,
    pub dqh: DeviceVec<f32>,
    pub dkh: DeviceVec<f32>,
    pub dvh: DeviceVec<f32>,
    pub dq: DeviceVec<f32>,
    pub dk: DeviceVec<f32>,
    pub dv: DeviceVec<f32>,
    /// d(loss)/d(batch-mean attention of branch 0), `[heads, N, N]`.
    pub gatt: DeviceVec<f32>,
}

/// Parameters, their gradients and AdamW's moments: flat rows in the `flat` module's layout.
pub(super) struct FlatState {
    pub params: DeviceVec<f32>,
    pub grads: DeviceVec<f32>,
    pub exp_avg: DeviceVec<f32>,
    pub exp_avg_sq: DeviceVec<f32>,
}

/// Scalars the passes reduce into: loss partials, the step's terms, the epoch's sums.
pub(super) struct Sums {
    pub values: DeviceVec<f32>,
}

impl Sums {
    /// Offsets in `values`.
    pub const LOSS_PARTIALS: usize = 0;
    pub const NORM_PARTIALS: usize = 4 * PARTIAL_BLOCKS as usize;
    pub const STEP: usize = Self::NORM_PARTIALS + PARTIAL_BLOCKS as usize;
    pub const TRAIN: usize = Self::STEP + TERMS;
    pub const NORM: usize = Self::TRAIN + TERMS;
    pub const VAL: usize = Self::NORM + 1;
    pub const LEN: usize = Self::VAL + TERMS;

    /// The five terms at `at` of a host copy of `values`.
    pub fn terms(all: &[f32], at: usize) -> [f32; TERMS] {
        let mut terms = [0.0; TERMS];
        terms.copy_from_slice(&all[at..at + TERMS]);
        terms
    }
}

/// One split's windows and embeddings, resident on the device for the whole run.
pub(super) struct Resident {
    /// `[windows, L, N]` scaled history.
    pub x: DeviceVec<f32>,
    /// `[windows, H, N]` scaled future.
    pub y: DeviceVec<f32>,
    /// `[windows, N, d_llm]`.
    pub emb: DeviceVec<f32>,
    pub windows: usize,
}

/// Which resident split a pass reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitSlot {
    /// The training split.
    Train,
    /// The validation split.
    Val,
}

/// One run of the dual student on one GPU: parameters, AdamW moments, the train and
/// validation splits and every activation live on the device; a training step is about a
/// hundred launches (cuBLAS products and the kernels of `kernels.cu`) and no host
/// synchronisation. Loss terms and gradient norms are summed on the device and read once
/// per epoch. See the [module docs](super) for what it computes and how it is checked.
pub struct FusedStudent {
    /// Where each parameter sits in the flat rows.
    pub(super) layout: FlatLayout,
    pub(super) stream: Arc<CudaStream>,
    pub(super) kernels: Kernels,
    pub(super) gemm: Gemm,
    pub(super) dims: Dims,
    pub(super) loss: LossConfig,
    pub(super) optim: OptimConfig,
    pub(super) offsets: ParamOffsets,
    pub(super) state: FlatState,
    pub(super) buffers: Buffers,
    pub(super) scratch: Scratch,
    pub(super) sums: Sums,
    /// Window indices of the current epoch (or validation) order.
    pub(super) order: DeviceVec<i32>,
    pub(super) splits: [Option<Arc<Resident>>; 2],
    /// AdamW steps taken.
    pub(super) steps: u64,
    device_name: String,
}

impl FusedStudent {
    /// An engine on CUDA device `ordinal` for runs of `config` on data of `vars` variables
    /// (buffers for batches of `config.batch_size` windows), holding `model`'s parameters
    /// and a fresh optimiser's (zero) moments.
    pub fn new(
        ordinal: usize,
        config: &TrainConfig,
        model: &Dual,
        vars: usize,
    ) -> Result<Self, GpuError> {
        if model.runs() != 1 {
            return Err(GpuError::Unsupported(
                "the engine trains one run; give it one model of a pack".into(),
            ));
        }
        let (layout, params) = flatten(model, Source::Values)
            .ok_or_else(|| GpuError::Internal("a student without parameters".into()))?;
        let params = crate::state_dict::tensor_to_vec(params)
            .map_err(|e| GpuError::Internal(format!("reading the parameters: {e}")))?;
        let (batch_max, loss, optim) = (config.batch_size, &config.loss, &config.optim);
        let config = &config.model;
        let ctx = CudaContext::new(ordinal).map_err(GpuError::driver)?;
        // SAFETY: the engine uses one stream; nothing is shared with another.
        unsafe { ctx.disable_event_tracking() };
        let device_name = ctx.name().map_err(GpuError::driver)?;
        let stream = ctx.new_stream().map_err(GpuError::driver)?;
        let kernels = Kernels::load(&ctx)?;
        let gemm = Gemm::new(&stream)?;
        let offsets = ParamOffsets::new(&layout, config)?;
        let dims = Dims {
            batch_max: batch_max.max(1),
            vars,
            input_len: config.input_len,
            horizon: config.output_len,
            channel: config.channel,
            heads: config.heads,
            d_ff: config.d_ff,
            d_llm: config.d_llm,
            keep: (1.0 - config.dropout) as f32,
        };
        let zeros = |len: usize| DeviceVec::<f32>::zeros(&stream, len);
        let rows = dims.batch_max * vars;
        let (c, f) = (dims.channel, dims.d_ff);
        let both = |width: usize| zeros(2 * rows * width);
        let score_len = 2 * dims.batch_max * dims.heads * vars * vars;
        let layer = || -> Result<LayerBuffers, GpuError> {
            Ok(LayerBuffers {
                q: both(c)?,
                k: both(c)?,
                v: both(c)?,
                qh: both(c)?,
                kh: both(c)?,
                vh: both(c)?,
                scores: zeros(score_len)?,
                probs: zeros(score_len)?,
                dropped: zeros(score_len)?,
                ctxh: both(c)?,
                ctx: both(c)?,
                attn_out: both(c)?,
                x1: both(c)?,
                xhat1: both(c)?,
                sd1: zeros(2 * rows)?,
                hidden_pre: both(f)?,
                hidden: both(f)?,
                ffn_out: both(c)?,
                x2: both(c)?,
                xhat2: both(c)?,
                sd2: zeros(2 * rows)?,
            })
        };
        let buffers = Buffers {
            xt: zeros(rows * dims.input_len)?,
            mean: zeros(rows)?,
            stdv: zeros(rows)?,
            emb: zeros(rows * dims.d_llm)?,
            target: zeros(rows * dims.horizon)?,
            tokens: both(c)?,
            layers: (0..config.layers)
                .map(|_| layer())
                .collect::<Result<_, _>>()?,
            enc: both(c)?,
            xhat_final: both(c)?,
            sd_final: zeros(2 * rows)?,
            proj: both(dims.horizon)?,
            dproj: both(dims.horizon)?,
        };
        let scratch = Scratch {
            denc: both(c)?,
            dx: both(c)?,
            dx1: both(c)?,
            dffn: both(c)?,
            dattn: both(c)?,
            dctx: both(c)?,
            dctxh: both(c)?,
            dhidden: both(f)?,
            dpre: both(f)?,
            ddropped: zeros(score_len)?,
            dqh: both(c)?,
            dkh: both(c)?,
            dvh: both(c)?,
            dq: both(c)?,
            dk: both(c)?,
            dv: both(c)?,
            gatt: zeros(dims.heads * vars * vars)?,
        };
        let len = layout.len();
        let state = FlatState {
            params: zeros(len)?,
            grads: zeros(len)?,
            exp_avg: zeros(len)?,
            exp_avg_sq: zeros(len)?,
        };
        let sums = Sums {
            values: zeros(Sums::LEN)?,
        };
        state.params.upload(&stream, 0, &params)?;
        Ok(FusedStudent {
            layout,
            order: DeviceVec::zeros(&stream, 1)?,
            stream,
            kernels,
            gemm,
            dims,
            loss: loss.clone(),
            optim: optim.clone(),
            offsets,
            state,
            buffers,
            scratch,
            sums,
            splits: [None, None],
            steps: 0,
            device_name,
        })
    }

    /// The GPU's name as its driver reports it.
    pub fn device_name(&self) -> &str {
        &self.device_name
    }

    /// Copies every window and embedding of `data` to the device for `slot`, reading
    /// 1,024 windows at a time.
    pub fn upload_split(&mut self, slot: SplitSlot, data: &mut SplitData) -> Result<(), GpuError> {
        const CHUNK: usize = 1024;
        let d = self.dims;
        let windows = data.split.num_windows();
        let (_, emb_vars, width) = data.embeddings.dims();
        if emb_vars != d.vars || width != d.d_llm {
            return Err(GpuError::Unsupported(format!(
                "embeddings of [{emb_vars}, {width}] for a model of [{}, {}]",
                d.vars, d.d_llm
            )));
        }
        self.splits[slot as usize] = None;
        let per_x = d.input_len * d.vars;
        let per_y = d.horizon * d.vars;
        let per_emb = d.vars * d.d_llm;
        let resident = Resident {
            x: DeviceVec::zeros(&self.stream, windows * per_x)?,
            y: DeviceVec::zeros(&self.stream, windows * per_y)?,
            emb: DeviceVec::zeros(&self.stream, windows * per_emb)?,
            windows,
        };
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for start in (0..windows).step_by(CHUNK) {
            let ids: Vec<usize> = (start..(start + CHUNK).min(windows)).collect();
            x.clear();
            y.clear();
            data.split.fill_scaled(&ids, &mut x, &mut y);
            let emb = data
                .embeddings
                .read_batch(&ids)
                .map_err(|e| GpuError::Data(e.to_string()))?;
            resident.x.upload(&self.stream, start * per_x, &x)?;
            resident.y.upload(&self.stream, start * per_y, &y)?;
            resident.emb.upload(&self.stream, start * per_emb, &emb)?;
            // Each chunk lands before the next is read: one chunk of the split in flight.
            self.stream.synchronize().map_err(GpuError::driver)?;
        }
        self.splits[slot as usize] = Some(Arc::new(resident));
        Ok(())
    }

    /// Takes `model`'s parameters and `optimizer`'s moments and step count (one run).
    pub(crate) fn load(&mut self, model: &Dual, optimizer: &AdamW) -> crate::Result<()> {
        let (layout, params) = flatten(model, Source::Values)
            .ok_or_else(|| GpuError::Internal("a student without parameters".into()))?;
        if layout != self.layout {
            return Err(GpuError::Internal("a model of another shape".into()).into());
        }
        let params = crate::state_dict::tensor_to_vec(params)?;
        let (exp_avg, exp_avg_sq) = optimizer.host_rows(&self.layout)?;
        let s = &self.state;
        s.params.upload(&self.stream, 0, &params)?;
        s.exp_avg.upload(&self.stream, 0, &exp_avg)?;
        s.exp_avg_sq.upload(&self.stream, 0, &exp_avg_sq)?;
        self.steps = optimizer.steps();
        self.stream.synchronize().map_err(GpuError::driver)?;
        Ok(())
    }

    /// `model` and `optimizer` with the engine's parameters, moments and step count, on
    /// `device`.
    pub(crate) fn unload(
        &self,
        model: Dual,
        optimizer: &AdamW,
        device: &Device,
    ) -> crate::Result<(Dual, AdamW)> {
        let s = &self.state;
        let params = s.params.download(&self.stream)?;
        let moments = (
            s.exp_avg.download(&self.stream)?,
            s.exp_avg_sq.download(&self.stream)?,
        );
        let len = self.layout.len();
        let flat = Tensor::<2>::from_data(TensorData::new(params, [1, len]), device);
        let model = self.layout.unflatten(model, &flat);
        let optimizer = optimizer.with_rows(self.steps, &self.layout, moments, device);
        Ok((model, optimizer))
    }

    /// AdamW steps taken.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Queues the window order of an epoch (or validation pass): steps then read
    /// consecutive ranges of it.
    pub fn set_order(&mut self, windows: &[usize]) -> Result<(), GpuError> {
        let ids: Vec<i32> = windows
            .iter()
            .map(|&w| i32::try_from(w).map_err(|_| GpuError::Internal(format!("window {w}"))))
            .collect::<Result<_, _>>()?;
        if self.order.len() < ids.len() {
            self.order = DeviceVec::zeros(&self.stream, ids.len())?;
        }
        self.order.upload(&self.stream, 0, &ids)?;
        self.stream.synchronize().map_err(GpuError::driver)
    }

    /// Reads the splits `other` uploaded (an engine of another run on the same GPU).
    pub fn share_splits(&mut self, other: &FusedStudent) {
        self.splits = other.splits.clone();
    }

    /// Sets the epoch's running sums (five loss terms weighted by batch share, and the sum
    /// of gradient norms), e.g. from a checkpoint of a partial epoch.
    pub fn set_train_sums(&mut self, terms: &[f32; TERMS], norm: f32) -> Result<(), GpuError> {
        let mut values = terms.to_vec();
        values.push(norm);
        self.sums
            .values
            .upload(&self.stream, Sums::TRAIN, &values)?;
        self.stream.synchronize().map_err(GpuError::driver)
    }

    /// The epoch's running sums: (five loss terms, sum of gradient norms).
    pub fn train_sums(&self) -> Result<([f32; TERMS], f32), GpuError> {
        let all = self.sums.values.download(&self.stream)?;
        Ok((Sums::terms(&all, Sums::TRAIN), all[Sums::NORM]))
    }

    /// Launches `kernel` on the engine's stream with `grid` blocks of [`THREADS`].
    pub(super) fn launch(
        &self,
        kernel: &CudaFunction,
        grid: u32,
        args: &[Arg],
    ) -> Result<(), GpuError> {
        if grid == 0 {
            return Ok(());
        }
        let mut builder = self.stream.launch_builder(kernel);
        for arg in args {
            match arg {
                Arg::Ptr(v) | Arg::Wide(v) => builder.arg(v),
                Arg::Int(v) => builder.arg(v),
                Arg::Float(v) => builder.arg(v),
            };
        }
        let config = LaunchConfig {
            grid_dim: (grid, 1, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: each call site lists its kernel's parameters in `kernels.cu`'s order and
        // types, over buffers sized for `batch_max` windows.
        unsafe { builder.launch(config) }
            .map(|_| ())
            .map_err(GpuError::driver)
    }
}
