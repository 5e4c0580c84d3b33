//! `timekd train`'s progress: a bar over every optimiser step of the run (epoch, step, ETA
//! to the last epoch, the latest validation loss) on a terminal, and a line every 30 s
//! without one (batch jobs, logs). Epoch lines are printed either way.

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use timekd_student::{EpochMetrics, TrainStep};

/// Progress of one training run.
pub struct TrainProgress {
    bar: ProgressBar,
    log_lines: bool,
    last_line: Instant,
    /// Position and time of the first step seen (a resumed run starts part-way).
    first: Option<(u64, Instant)>,
    val: Option<f64>,
}

impl TrainProgress {
    /// A bar that appears with the first step.
    pub fn new() -> Self {
        TrainProgress {
            bar: ProgressBar::hidden(),
            log_lines: !std::io::stderr().is_terminal(),
            last_line: Instant::now(),
            first: None,
            val: None,
        }
    }

    fn message(&self, step: &TrainStep) -> String {
        let val = self
            .val
            .map_or_else(|| "val -".to_string(), |v| format!("val {v:.5}"));
        format!(
            "epoch {}/{} step {}/{} {val}",
            step.epoch + 1,
            step.epochs,
            step.step,
            step.steps
        )
    }

    /// After an optimiser step.
    pub fn step(&mut self, step: &TrainStep) {
        let total = (step.epochs * step.steps) as u64;
        let position = (step.epoch * step.steps + step.step) as u64;
        if self.first.is_none() {
            self.first = Some((position, Instant::now()));
            if !self.log_lines {
                self.bar = ProgressBar::new(total);
                self.bar.set_style(
                    ProgressStyle::with_template(
                        "[{bar:30}] {pos}/{len} steps {per_sec} {msg} ETA {eta}",
                    )
                    .expect("static template")
                    .progress_chars("=> "),
                );
            }
        }
        self.bar.set_length(total);
        self.bar.set_position(position);
        self.bar.set_message(self.message(step));
        if self.log_lines && self.last_line.elapsed().as_secs() >= 30 {
            self.last_line = Instant::now();
            let (start, since) = self.first.expect("set above");
            let rate = (position - start) as f64 / since.elapsed().as_secs_f64().max(1e-9);
            eprintln!(
                "{}: {position}/{total} steps, {rate:.2} steps/s, ETA {:.0} s (to the last epoch)",
                self.message(step),
                (total - position) as f64 / rate.max(1e-9)
            );
        }
    }

    /// After an epoch: its line (after `prefix`, the run's name when several train
    /// together), and the new validation loss for the bar.
    pub fn epoch(&mut self, prefix: &str, m: &EpochMetrics) {
        self.val = Some(m.val.total);
        self.bar.suspend(|| {
            eprintln!(
                "{prefix}epoch {:>3}  lr {:.2e}  train {:.5}  val {:.5}{}  ({:.1} s, training steps {:.1} s)",
                m.epoch,
                m.lr,
                m.train.total,
                m.val.total,
                if m.best { "  *best" } else { "" },
                m.seconds,
                m.train_seconds
            )
        });
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
