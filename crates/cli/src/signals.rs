//! SIGTERM and SIGINT during `timekd train`: the first sets a flag the trainer checks between
//! steps (it then saves a resumable checkpoint and the command exits 0); a second one ends
//! the process at once (status 130), for a user who does not want to wait.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::flag;

/// A flag set by the first SIGTERM or SIGINT from now on.
pub fn stop_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [SIGTERM, SIGINT] {
        // Registered first, so it sees the flag as it was before this signal set it.
        flag::register_conditional_shutdown(signal, 130, Arc::clone(&stop))
            .and_then(|_| flag::register(signal, Arc::clone(&stop)))
            .context("cannot install the SIGTERM/SIGINT handler")?;
    }
    Ok(stop)
}
