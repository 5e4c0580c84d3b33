//! Where the engine's GPU time goes, when `TIMEKD_CUDA_PROFILE=1`: a CUDA event after every
//! launch, the time between consecutive events charged to the stage that ended it, summed over
//! the run and printed when the engine is dropped. Off by default (no events at all).

use std::sync::Arc;
use std::time::{Duration, Instant};

use cudarc::driver::{CudaContext, CudaEvent, CudaStream, sys};

use super::CudaError;

/// The stages the profile tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Host-to-device copies of a pass's tokens and tables.
    Upload,
    Embed,
    /// Residual add + LayerNorm.
    Norm,
    /// q|k|v projection.
    Qkv,
    /// Attention over every query.
    Attention,
    /// The final block's attention of the last rows, and their gather.
    LastRows,
    /// Attention output projection.
    AttnProj,
    /// MLP up-projection with its GELU.
    Fc,
    /// MLP down-projection.
    MlpProj,
}

const STAGES: [Stage; 9] = [
    Stage::Upload,
    Stage::Embed,
    Stage::Norm,
    Stage::Qkv,
    Stage::Attention,
    Stage::LastRows,
    Stage::AttnProj,
    Stage::Fc,
    Stage::MlpProj,
];

/// Event timing of one engine.
pub(crate) struct Profiler {
    ctx: Arc<CudaContext>,
    /// Reused events; `marks[i]` says which stage event `i + 1` ends.
    events: Vec<CudaEvent>,
    marks: Vec<Stage>,
    totals_ms: [f64; STAGES.len()],
    launches: [u64; STAGES.len()],
    calls: u64,
    passes: u64,
    wall: Duration,
    call_start: Option<Instant>,
}

impl Profiler {
    /// A profiler when `TIMEKD_CUDA_PROFILE` is set to something other than `0`.
    pub fn from_env(ctx: &Arc<CudaContext>) -> Option<Self> {
        let on = std::env::var("TIMEKD_CUDA_PROFILE").is_ok_and(|v| !v.is_empty() && v != "0");
        on.then(|| Profiler {
            ctx: ctx.clone(),
            events: Vec::new(),
            marks: Vec::new(),
            totals_ms: [0.0; STAGES.len()],
            launches: [0; STAGES.len()],
            calls: 0,
            passes: 0,
            wall: Duration::ZERO,
            call_start: None,
        })
    }

    fn event(&mut self, index: usize) -> Result<&CudaEvent, CudaError> {
        while self.events.len() <= index {
            let event = self
                .ctx
                .new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))
                .map_err(CudaError::driver)?;
            self.events.push(event);
        }
        Ok(&self.events[index])
    }

    /// The start of a call: the first event.
    pub fn begin(&mut self, stream: &CudaStream) -> Result<(), CudaError> {
        self.marks.clear();
        self.calls += 1;
        self.call_start = Some(Instant::now());
        self.event(0)?.record(stream).map_err(CudaError::driver)
    }

    /// A pass starts (for the per-pass launch count).
    pub fn pass(&mut self) {
        self.passes += 1;
    }

    /// Work queued since the last mark belongs to `stage`.
    pub fn mark(&mut self, stream: &CudaStream, stage: Stage) -> Result<(), CudaError> {
        let index = self.marks.len() + 1;
        self.marks.push(stage);
        self.event(index)?.record(stream).map_err(CudaError::driver)
    }

    /// The end of a call (its stream synchronised): sums the intervals.
    pub fn end(&mut self) -> Result<(), CudaError> {
        for (i, stage) in self.marks.iter().enumerate() {
            let ms = self.events[i]
                .elapsed_ms(&self.events[i + 1])
                .map_err(CudaError::driver)?;
            let slot = STAGES.iter().position(|s| s == stage).expect("listed");
            self.totals_ms[slot] += f64::from(ms);
            self.launches[slot] += 1;
        }
        if let Some(start) = self.call_start.take() {
            self.wall += start.elapsed();
        }
        Ok(())
    }

    /// The summary table.
    pub fn report(&self) -> String {
        let total: f64 = self.totals_ms.iter().sum();
        let mut out = format!(
            "CUDA engine profile: {} calls, {} passes, {:.1} ms of GPU time between events, {:.1} ms of wall time in calls\n",
            self.calls,
            self.passes,
            total,
            self.wall.as_secs_f64() * 1e3
        );
        out += &format!(
            "{:<12} {:>10} {:>7} {:>10} {:>12}\n",
            "stage", "ms", "share", "launches", "per launch"
        );
        for (i, stage) in STAGES.iter().enumerate() {
            if self.launches[i] == 0 {
                continue;
            }
            out += &format!(
                "{:<12} {:>10.1} {:>6.1}% {:>10} {:>9.1} us\n",
                format!("{stage:?}"),
                self.totals_ms[i],
                100.0 * self.totals_ms[i] / total.max(1e-9),
                self.launches[i],
                1e3 * self.totals_ms[i] / self.launches[i] as f64
            );
        }
        let launches: u64 = self.launches.iter().sum();
        out += &format!(
            "{:.0} launches (and copies) per pass",
            launches as f64 / self.passes.max(1) as f64
        );
        out
    }
}
