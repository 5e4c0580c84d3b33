//! Where a worker's pipeline spends its time, reported as a note at the worker's end when
//! `TIMEKD_PIPELINE_PROFILE` is set (to anything but `0`): for each of its three threads
//! (prompts, language model, SCA) the time it worked, the time it waited for the thread
//! before it and the time it was held handing a chunk to the thread after it. The stage that
//! never waits sets the pace. On the CUDA engine the model's passes run on the device after
//! they are queued, so its thread's "reading back" is mostly the device finishing a chunk (a
//! thread that spends its time there is device-bound); on Burn's backends they run while
//! they are queued.
//!
//! Nothing is synchronised for it: the times are the threads' own, read with [`Instant`].

use std::time::{Duration, Instant};

/// The environment variable that turns the report on.
pub const PIPELINE_PROFILE_ENV: &str = "TIMEKD_PIPELINE_PROFILE";

/// Whether [`PIPELINE_PROFILE_ENV`] asks for the report.
pub(crate) fn profile_requested() -> bool {
    std::env::var(PIPELINE_PROFILE_ENV).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// One thread's times over a run.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct StageTimes {
    /// Chunks the thread passed on.
    pub chunks: usize,
    /// Waiting for the thread before it.
    pub starved: Duration,
    /// Its own work (the model thread: queueing the chunks' passes).
    pub work: Duration,
    /// The model thread only: reading a queued chunk back (waiting for the device first).
    pub reading_back: Duration,
    /// Held handing a chunk to the thread after it.
    pub blocked: Duration,
}

impl StageTimes {
    /// Runs `f`, adding its time to the part `part` picks.
    pub fn time<R>(&mut self, part: fn(&mut Self) -> &mut Duration, f: impl FnOnce() -> R) -> R {
        let started = Instant::now();
        let result = f();
        *part(self) += started.elapsed();
        result
    }
}

/// The three threads of a worker.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct PipelineTimes {
    pub prompts: StageTimes,
    pub model: StageTimes,
    pub sca: StageTimes,
}

impl PipelineTimes {
    /// The report of the worker on `device` that ran `wall`.
    pub fn report(&self, device: &str, wall: Duration) -> String {
        let s = |d: Duration| format!("{:.2} s", d.as_secs_f64());
        let (p, m, a) = (&self.prompts, &self.model, &self.sca);
        // The threads pass the same chunks on unless one stopped early (an error).
        let counts = if p.chunks == m.chunks && a.chunks == m.chunks {
            String::new()
        } else {
            format!(" (prompts passed on {}, the SCA {})", p.chunks, a.chunks)
        };
        format!(
            "pipeline profile ({device}, {} chunks{counts} in {}): prompts: encoding {}, held \
             handing over {} | model: waiting for prompts {}, queueing passes {}, reading back \
             {}, held handing to the SCA {} | SCA: waiting {}, running {}, held handing to the \
             stores {}",
            m.chunks,
            s(wall),
            s(p.work),
            s(p.blocked),
            s(m.starved),
            s(m.work),
            s(m.reading_back),
            s(m.blocked),
            s(a.starved),
            s(a.work),
            s(a.blocked),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_adds_each_timed_part_to_its_own_field() {
        let mut times = StageTimes::default();
        let value = times.time(
            |t| &mut t.work,
            || {
                std::thread::sleep(Duration::from_millis(20));
                7
            },
        );
        assert_eq!(value, 7);
        times.time(
            |t| &mut t.blocked,
            || std::thread::sleep(Duration::from_millis(5)),
        );
        assert!(times.work >= Duration::from_millis(20), "{times:?}");
        assert!(times.blocked >= Duration::from_millis(5), "{times:?}");
        assert!(times.blocked < times.work, "{times:?}");
        assert_eq!(
            (times.starved, times.reading_back),
            (Duration::ZERO, Duration::ZERO)
        );
    }

    #[test]
    fn the_report_names_the_device_and_every_part() {
        let mut times = PipelineTimes::default();
        times.model.chunks = 3;
        times.model.reading_back = Duration::from_millis(2500);
        times.sca.work = Duration::from_millis(400);
        let line = times.report("cuda:0", Duration::from_secs(3));
        assert!(
            line.contains("cuda:0, 3 chunks (prompts passed on 0, the SCA 0) in 3.00 s"),
            "{line}"
        );
        times.prompts.chunks = 3;
        times.sca.chunks = 3;
        let line = times.report("cuda:0", Duration::from_secs(3));
        assert!(line.contains("cuda:0, 3 chunks in 3.00 s"), "{line}");
        assert!(line.contains("reading back 2.50 s"), "{line}");
        assert!(
            line.contains("SCA: waiting 0.00 s, running 0.40 s"),
            "{line}"
        );
    }
}
