//! Reader memory bound: iterate a store far larger than the prefetch bound and check the
//! process's peak resident memory. Alone in its test binary, so the peak is its own.

mod common;

use std::time::Duration;

use timekd_store::{Dtype, StoreReader, WriterOptions};

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn prefetch_peak_memory_is_bounded_far_below_store_size() {
    const N_VARS: usize = 16;
    const D_MODEL: usize = 768;
    const WINDOWS: usize = 4096;
    const BATCH: usize = 8;
    const DEPTH: usize = 4;
    const SLACK: u64 = 12 << 20; // thread stack, HDF5 chunk cache, allocator arenas

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("large.h5");
    common::write_store(
        &path,
        common::fingerprint(N_VARS, D_MODEL, Dtype::F32),
        WINDOWS,
        WriterOptions::default(),
    );
    let store_bytes = std::fs::metadata(&path).unwrap().len();
    let window_bytes = (N_VARS * D_MODEL * 4) as u64;
    let bound = (DEPTH as u64 + 2) * BATCH as u64 * window_bytes;
    assert!(
        store_bytes > 10 * (bound + SLACK),
        "store ({store_bytes} B) must dwarf the bound"
    );

    // Reset the peak (VmHWM) to the current resident size, so the writer's use is not counted.
    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM via /proc/self/clear_refs");
    let baseline = status_kib("VmRSS:") * 1024;

    let reader = StoreReader::open(&path).unwrap();
    let mut seen = 0;
    let mut checksum = 0f64;
    for batch in reader.prefetch((0..WINDOWS).collect(), BATCH, DEPTH) {
        let batch = batch.unwrap();
        // A slow consumer (a long pause, then a steady lag): an unbounded prefetcher would
        // read most of the store ahead.
        let pause = if seen == 0 {
            Duration::from_secs(3)
        } else {
            Duration::from_millis(1)
        };
        std::thread::sleep(pause);
        seen += batch.windows.len();
        checksum += batch.values.iter().map(|v| f64::from(*v)).sum::<f64>();
    }
    let peak = status_kib("VmHWM:") * 1024;
    assert_eq!(seen, WINDOWS);
    let expected: f64 = (0..WINDOWS)
        .flat_map(|w| common::window_values(w, N_VARS * D_MODEL))
        .map(f64::from)
        .sum();
    assert!((checksum - expected).abs() < 1e-6 * expected.abs().max(1.0));

    let growth = peak.saturating_sub(baseline);
    eprintln!(
        "store {store_bytes} B; prefetch bound {bound} B; peak RSS growth while iterating {growth} B"
    );
    assert!(
        growth <= bound + SLACK,
        "peak RSS grew by {growth} B, bound {bound} B + slack {SLACK} B"
    );
}
