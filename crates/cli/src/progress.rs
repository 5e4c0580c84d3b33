//! `timekd extract`'s view of an extraction: a progress bar with rate and ETA on a terminal,
//! a line every 30 s without one (batch jobs, logs), and the stores as they open and finish.

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use timekd_teacher::extract::{
    ExtractObserver, ExtractionSummary, Progress, RunStart, StoreStatus, budget::gib,
};

/// Progress of one extraction run.
pub struct ExtractProgress {
    bar: ProgressBar,
    peak_bytes: u64,
    max_tokens: usize,
    /// What one unit of progress is: a window (one output length) or an embedding (window ×
    /// output length). The bench reads the `windows` lines.
    unit: &'static str,
    log_lines: bool,
    last_line: Instant,
    /// `--report-after K`: the first progress with K embeddings done.
    report_after: Option<usize>,
    steady_from: Option<Progress>,
    /// Chunks finished after `steady_from`: the span the steady rate is read from.
    steady_chunks: usize,
    last: Option<Progress>,
}

impl ExtractProgress {
    /// A hidden bar until the work starts; `report_after` as `--report-after`.
    pub fn new(report_after: Option<usize>) -> Self {
        ExtractProgress {
            bar: ProgressBar::hidden(),
            peak_bytes: 0,
            max_tokens: 0,
            unit: "windows",
            log_lines: !std::io::stderr().is_terminal(),
            last_line: Instant::now(),
            report_after,
            steady_from: None,
            steady_chunks: 0,
            last: None,
        }
    }

    /// The rates of the run, once it is over.
    pub fn finish(&self, summary: &ExtractionSummary) {
        self.bar.finish();
        let secs = summary.elapsed.as_secs_f64().max(1e-9);
        let unit = self.unit;
        if summary.embeddings > 0 {
            eprintln!(
                "{} {unit} in {secs:.1} s = {:.2} {unit}/s, ≈{:.0} tokens/s on {} device(s)",
                summary.embeddings,
                summary.embeddings as f64 / secs,
                summary.tokens as f64 / secs,
                summary.devices
            );
        }
        if let (Some(from), Some(last)) = (self.steady_from, self.last) {
            eprintln!("{}", steady_state(&from, &last, self.steady_chunks, unit));
        }
    }
}

/// The `--report-after` line: the rate from progress `from` to `last` over the `chunks`
/// finished between them, timed by when the language model finished them
/// ([`Progress::computed`]), so chunks still in the worker's later stages at `from` do not
/// count as if they took no time. The chunk count says how long a span the rate is read from:
/// over a few chunks the pipeline's stages are not yet steady.
fn steady_state(from: &Progress, last: &Progress, chunks: usize, unit: &str) -> String {
    let count = last.done - from.done;
    let secs = last.computed.saturating_sub(from.computed).as_secs_f64();
    format!(
        "steady state after the first {} {unit}: {count} {unit} in {secs:.1} s = {:.2} {unit}/s \
         over {chunks} chunks",
        from.done,
        count as f64 / secs.max(1e-9)
    )
}

impl ExtractObserver for ExtractProgress {
    fn run_started(&mut self, start: &RunStart) {
        self.peak_bytes = start.passes.peak_bytes;
        self.max_tokens = start.passes.options.max_tokens;
        if start.lengths.len() > 1 {
            self.unit = "embeddings";
        }
    }

    fn store_opened(&mut self, status: &StoreStatus) {
        eprintln!(
            "{} H = {}: {} of {} windows to do -> {} (≤ {} padded tokens per pass, est. peak {:.2} GiB per device)",
            status.split,
            status.output_len,
            status.missing,
            status.covered,
            status.path.display(),
            self.max_tokens,
            gib(self.peak_bytes)
        );
    }

    fn work_started(&mut self, total: usize) {
        let bar = ProgressBar::new(total as u64);
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "[{{bar:30}}] {{pos}}/{{len}} {} {{per_sec}} {{msg}} ETA {{eta}}",
                self.unit
            ))
            .expect("static template")
            .progress_chars("=> "),
        );
        self.bar = bar;
    }

    fn progress(&mut self, progress: &Progress) {
        self.bar.set_position(progress.done as u64);
        self.bar
            .set_message(format!("≈{:.0} tokens/s", progress.tokens_per_second()));
        if self.steady_from.is_some() {
            self.steady_chunks += 1;
        } else if self.report_after.is_some_and(|k| progress.done >= k) {
            self.steady_from = Some(*progress);
        }
        if self.log_lines && self.last_line.elapsed().as_secs() >= 30 {
            self.last_line = Instant::now();
            let (rate, unit) = (progress.rate(), self.unit);
            eprintln!(
                "{}/{} {unit}, {rate:.2} {unit}/s, ETA {:.0} s",
                progress.done,
                progress.total,
                (progress.total - progress.done) as f64 / rate.max(1e-9)
            );
        }
        self.last = Some(*progress);
    }

    fn store_finished(&mut self, status: &StoreStatus) {
        self.bar.suspend(|| {
            eprintln!(
                "{} H = {}: done, {}",
                status.split,
                status.output_len,
                status.path.display()
            )
        });
    }

    fn note(&mut self, text: &str) {
        self.bar.suspend(|| eprintln!("{text}"));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(done: usize, elapsed_ms: u64, computed_ms: u64) -> Progress {
        Progress {
            done,
            total: 1000,
            tokens: 0,
            elapsed: Duration::from_millis(elapsed_ms),
            computed: Duration::from_millis(computed_ms),
        }
    }

    #[test]
    fn the_steady_span_counts_the_chunks_after_the_report_point() {
        let mut view = ExtractProgress::new(Some(100));
        for (done, ms) in [
            (50, 500),
            (100, 1000),
            (150, 1500),
            (200, 2000),
            (250, 2500),
        ] {
            view.progress(&at(done, ms, ms));
        }
        assert_eq!(view.steady_from.map(|p| p.done), Some(100));
        assert_eq!(view.steady_chunks, 3);
        let (from, last) = (view.steady_from.unwrap(), view.last.unwrap());
        assert!(
            steady_state(&from, &last, view.steady_chunks, "windows").ends_with("over 3 chunks")
        );
    }

    #[test]
    fn the_steady_state_is_timed_by_the_models_chunks_not_by_their_arrival() {
        // Two chunks of 100 arrive 0.1 s apart after the warm-up (a backlog drained), but the
        // model took 1 s for each: the rate is 100 windows/s, not 1,000.
        let line = steady_state(&at(100, 3000, 1500), &at(300, 3200, 3500), 2, "windows");
        assert_eq!(
            line,
            "steady state after the first 100 windows: 200 windows in 2.0 s = 100.00 windows/s \
             over 2 chunks"
        );
    }
}
