//! Progress of a model download from the Hugging Face hub: a byte bar on a terminal, a line
//! every 30 s without one.

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use timekd_teacher::gpt2::hub::DownloadObserver;

/// Shows one file's download at a time.
pub struct DownloadProgress {
    bar: ProgressBar,
    log_lines: bool,
    last_line: Instant,
    file: String,
    bytes: u64,
}

impl DownloadProgress {
    /// Nothing shown until a download starts (a cached model downloads nothing).
    pub fn new() -> Self {
        DownloadProgress {
            bar: ProgressBar::hidden(),
            log_lines: !std::io::stderr().is_terminal(),
            last_line: Instant::now(),
            file: String::new(),
            bytes: 0,
        }
    }
}

impl DownloadObserver for DownloadProgress {
    fn started(&mut self, file: &str, bytes: u64, url: &str) {
        // hf-hub announces a file twice (before and after opening its temporary file).
        if self.file == file {
            return;
        }
        eprintln!("downloading {url} ({bytes} bytes)");
        self.file = file.to_string();
        if !self.log_lines {
            self.bar = ProgressBar::new(bytes);
            self.bar.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                )
                .expect("static template")
                .progress_chars("=> "),
            );
            self.bar.set_message(file.to_string());
        }
        self.bar.set_length(bytes);
    }

    fn advanced(&mut self, bytes: u64) {
        self.bar.inc(bytes);
        self.bytes += bytes;
        if self.log_lines && self.last_line.elapsed().as_secs() >= 30 {
            self.last_line = Instant::now();
            eprintln!("{}: {} bytes so far", self.file, self.bytes);
        }
    }

    fn finished(&mut self, file: &str) {
        self.bar.finish_and_clear();
        eprintln!("{file}: done");
        self.file.clear();
        self.bytes = 0;
    }
}
