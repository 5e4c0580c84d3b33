//! [`CudaSca`]: the SCA ([`Sca`]) fused into two kernels (`sca.cu`), f32 throughout, for the
//! SCA stage of extraction on a GPU. Burn's SCA runs a window's [d, d] attention and its
//! [d, d_ff] feed-forward through device memory, an operation at a time (and each product as
//! three TF32 products for f32 accuracy): at ETTh1 H=24 on an H100 that was about a tenth of
//! the GPU's time, taken from the language model beside it. Here each of a window's d
//! positions is a thread that keeps its N values in registers; only the attention's keys and
//! values pass through shared memory, so nothing of size [d, d] or [d, d_ff] is ever stored.
//!
//! N is a compile-time constant of the kernels (one NVRTC program per SCA), up to
//! [`FUSED_SCA_MAX_VARS`]; wider SCAs run on Burn.

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaStream};

use super::CudaError;
use super::buffer::{DeviceBuffer, PinnedDownload};
use super::engine::{Arg, launch};
use super::kernels::KernelProgram;
use crate::error::TeacherError;
use crate::sca::Sca;

/// The environment variable that, set to `burn`, keeps the fused SCA off beside the CUDA
/// engine (Burn's SCA runs): a way to compare the two, or to step around a fault.
pub const SCA_ENV: &str = "TIMEKD_CUDA_SCA";

/// The most variables the fused SCA takes: a thread holds several rows of N values in
/// registers.
pub const FUSED_SCA_MAX_VARS: usize = 32;

/// Threads per block of both kernels (`sca.cu`'s `SCA_THREADS`): a block covers 128 of a
/// window's positions.
const THREADS: u32 = 128;

/// Floats in each of the five per-window buffers at most, which bounds the windows one launch
/// takes (64 MiB a buffer).
const BUFFER_FLOATS: usize = 16 << 20;

/// The most windows one launch takes: a window is a row of blocks (grid y), at most 65,535.
const MAX_WINDOWS: usize = 65_535;

/// The NVRTC program of the fused SCA for `n` variables on a device of compute capability
/// `(major, minor)`: what [`CudaSca::new`] compiles, and what `examples/kernel_program.rs`
/// writes out for checks without a GPU (`SCA_N=7 scripts/kernel-report.sh`).
pub fn sca_program(n: usize, (major, minor): (i32, i32)) -> KernelProgram {
    KernelProgram {
        source: include_str!("sca.cu").to_string(),
        options: vec![
            format!("--gpu-architecture=compute_{major}{minor}"),
            "-std=c++17".to_string(),
            format!("-DSCA_N={n}"),
            // Fused multiply-adds; divisions, square roots, exp and erf stay IEEE-accurate.
            "--fmad=true".to_string(),
        ],
        wgmma: false,
    }
}

/// The SCA on one GPU: its weights, kernels, stream and buffers (grown on demand).
pub struct CudaSca {
    stream: Arc<CudaStream>,
    project: CudaFunction,
    attend: CudaFunction,
    _module: Arc<CudaModule>,
    /// `Sca::fused_layout`: every weight, in `sca.cu`'s order.
    weights: DeviceBuffer,
    n: usize,
    d_ff: usize,
    scale: f32,
    buffers: Buffers,
}

/// Working memory: the chunk's states, a piece's row indices, its per-window columns.
#[derive(Default)]
struct Buffers {
    states: Option<DeviceBuffer>,
    rows: Option<DeviceBuffer>,
    /// qn, q, k, v and the output, each [windows, N, d].
    columns: [Option<DeviceBuffer>; 5],
    download: PinnedDownload,
}

impl CudaSca {
    /// `sca` on CUDA device `ordinal`: its weights uploaded and its kernels compiled for the
    /// device. More than [`FUSED_SCA_MAX_VARS`] variables is [`TeacherError::Cuda`].
    pub fn new(ordinal: usize, sca: &Sca) -> Result<Self, TeacherError> {
        let n = sca.n_vars();
        if n == 0 || n > FUSED_SCA_MAX_VARS {
            return Err(CudaError::Unsupported(format!(
                "the fused SCA takes 1 to {FUSED_SCA_MAX_VARS} variables, not {n}"
            ))
            .into());
        }
        let ctx = CudaContext::new(ordinal).map_err(CudaError::driver)?;
        // SAFETY: the SCA's buffers are raw allocations used on its one stream.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().map_err(CudaError::driver)?;
        let capability = ctx.compute_capability().map_err(CudaError::driver)?;
        let module = sca_program(n, capability).load(&ctx, "timekd_sca.cu")?;
        let get = |name: &str| module.load_function(name).map_err(CudaError::driver);
        let weights = DeviceBuffer::from_slice(&stream, &sca.fused_layout()?)?;
        Ok(CudaSca {
            project: get("sca_project")?,
            attend: get("sca_attend")?,
            _module: module,
            stream,
            weights,
            n,
            d_ff: sca.d_ff(),
            scale: sca.scale() as f32,
            buffers: Buffers::default(),
        })
    }

    /// The stored embeddings of windows whose last-token states are rows of `states`
    /// ([rows, d] row-major): for each `(gt, hd)` of `lengths`, the rows of each window's N
    /// GT prompts and N HD prompts, window-major; returns per entry `[windows, N, d]`
    /// row-major, as [`Sca::forward`] of the picked rows with their axes swapped.
    pub fn embeddings(
        &mut self,
        states: &[f32],
        d: usize,
        lengths: &[(&[i64], &[i64])],
    ) -> Result<Vec<Vec<f32>>, TeacherError> {
        let n = self.n;
        let rows = states.len().checked_div(d).unwrap_or(0);
        if d == 0 || rows * d != states.len() {
            return Err(CudaError::Internal(format!(
                "{} state values are not rows of {d}",
                states.len()
            ))
            .into());
        }
        for (gt, hd) in lengths {
            let bad = gt.len() != hd.len()
                || !gt.len().is_multiple_of(n)
                || gt
                    .iter()
                    .chain(hd.iter())
                    .any(|&r| r < 0 || r as usize >= rows);
            if bad {
                return Err(CudaError::Internal(format!(
                    "SCA rows do not index {rows} states in windows of {n}"
                ))
                .into());
            }
        }
        self.stream
            .context()
            .bind_to_thread()
            .map_err(CudaError::driver)?;
        let states_buffer =
            DeviceBuffer::grown(&mut self.buffers.states, &self.stream, states.len() * 4)?;
        states_buffer.upload(&self.stream, states)?;
        let piece = (BUFFER_FLOATS / (n * d)).clamp(1, MAX_WINDOWS);
        let mut out = Vec::with_capacity(lengths.len());
        for (gt, hd) in lengths {
            let windows = gt.len() / n;
            let mut values = Vec::with_capacity(windows * n * d);
            for start in (0..windows).step_by(piece) {
                let count = piece.min(windows - start);
                let span = start * n..(start + count) * n;
                self.piece(d, (&gt[span.clone()], &hd[span]), &mut values)?;
            }
            out.push(values);
        }
        Ok(out)
    }

    /// The embeddings of `count` windows (`rows.0.len() / N`) appended to `values`.
    fn piece(
        &mut self,
        d: usize,
        (gt, hd): (&[i64], &[i64]),
        values: &mut Vec<f32>,
    ) -> Result<(), CudaError> {
        let (n, stream) = (self.n, &self.stream);
        let count = gt.len() / n;
        let indices: Vec<i32> = gt.iter().chain(hd).map(|&r| r as i32).collect();
        let rows = DeviceBuffer::grown(&mut self.buffers.rows, stream, indices.len() * 4)?;
        rows.upload(stream, &indices)?;
        let floats = count * n * d;
        let mut columns = [0u64; 5];
        for (ptr, slot) in columns.iter_mut().zip(&mut self.buffers.columns) {
            *ptr = DeviceBuffer::grown(slot, stream, floats * 4)?.ptr();
        }
        let [qn, q, k, v, out] = columns;
        let states = self
            .buffers
            .states
            .as_ref()
            .expect("uploaded by the caller");
        let grid = ((d as u32).div_ceil(THREADS), count as u32);
        let (d_arg, d_ff) = (Arg::Int(d as i32), Arg::Int(self.d_ff as i32));
        launch(
            stream,
            &self.project,
            (grid, THREADS, 0),
            &[
                Arg::Ptr(states.ptr()),
                Arg::Ptr(rows.ptr()),
                Arg::Ptr(rows.at(gt.len() * 4)),
                d_arg,
                Arg::Ptr(self.weights.ptr()),
                d_ff,
                Arg::Ptr(qn),
                Arg::Ptr(q),
                Arg::Ptr(k),
                Arg::Ptr(v),
            ],
        )?;
        launch(
            stream,
            &self.attend,
            (grid, THREADS, 0),
            &[
                Arg::Ptr(qn),
                Arg::Ptr(q),
                Arg::Ptr(k),
                Arg::Ptr(v),
                d_arg,
                Arg::Float(self.scale),
                Arg::Ptr(self.weights.ptr()),
                d_ff,
                Arg::Ptr(out),
            ],
        )?;
        let output = self.buffers.columns[4].as_ref().expect("grown above");
        self.buffers.download.queue(stream, output, floats)?;
        stream.synchronize().map_err(CudaError::driver)?;
        values.extend_from_slice(self.buffers.download.values(floats)?);
        Ok(())
    }
}
