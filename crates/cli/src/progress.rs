//! `timekd extract`'s view of an extraction: a progress bar with rate and ETA on a terminal,
//! a line every 30 s without one (batch jobs, logs), and the stores as they open and finish.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

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
    /// `--report-after K`: the time and count when K embeddings were done.
    report_after: Option<usize>,
    steady_from: Option<(Duration, usize)>,
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
        if let (Some((since, done_then)), Some(last)) = (self.steady_from, self.last) {
            let count = last.done - done_then;
            let secs = (last.elapsed - since).as_secs_f64().max(1e-9);
            eprintln!(
                "steady state after the first {done_then} {unit}: {count} {unit} in {secs:.1} s = {:.2} {unit}/s",
                count as f64 / secs
            );
        }
    }
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
        if self.steady_from.is_none() && self.report_after.is_some_and(|k| progress.done >= k) {
            self.steady_from = Some((progress.elapsed, progress.done));
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
