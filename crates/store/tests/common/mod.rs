//! Shared helpers of the integration tests: a deterministic synthetic store.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::Path;

use timekd_store::{Dtype, Fingerprint, SCHEMA_VERSION, StoreReader, StoreWriter, WriterOptions};

/// A valid fingerprint of a synthetic store with `n_vars` variables of width `d_model`.
pub fn fingerprint(n_vars: usize, d_model: usize, dtype: Dtype) -> Fingerprint {
    Fingerprint {
        schema_version: SCHEMA_VERSION,
        dataset: "synthetic".into(),
        data_sha256: "0f".repeat(32),
        columns: (0..n_vars).map(|i| format!("var{i}")).collect(),
        split: "train".into(),
        split_start: 0,
        split_end: 1000,
        input_len: 96,
        output_len: 24,
        n_vars,
        d_model,
        value_format: "plain".into(),
        prompt_template: "timekd-v1".into(),
        model_id: "gpt2".into(),
        weights_sha256: "a5".repeat(32),
        layers: 12,
        sca_seed: 2024,
        compute_precision: "f32".into(),
        dtype,
        tool_version: "0.1.0".into(),
        created: String::new(),
    }
}

/// Deterministic values of window `window`: `len` distinct, non-trivial floats.
pub fn window_values(window: usize, len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| {
            let x = (window * 7919 + i * 104_729) % 1_000_003;
            (x as f32 * 0.001).sin() * 3.0 + window as f32 * 0.01
        })
        .collect()
}

/// Writes a finished synthetic store of `windows` windows.
pub fn write_store(path: &Path, fingerprint: Fingerprint, windows: usize, options: WriterOptions) {
    let len = fingerprint.n_vars * fingerprint.d_model;
    let mut writer = StoreWriter::open(path, fingerprint, windows, options).unwrap();
    for window in writer.missing() {
        writer.put(window, &window_values(window, len)).unwrap();
    }
    writer.finish().unwrap();
}

/// Asserts two stores hold the same content: fingerprint (but `created`), layout, and
/// every value bit for bit.
pub fn assert_same_content(a: &StoreReader, b: &StoreReader) {
    let mut fa = a.fingerprint().clone();
    let mut fb = b.fingerprint().clone();
    fa.created.clear();
    fb.created.clear();
    assert_eq!(fa, fb, "fingerprints differ");
    assert_eq!(a.dims(), b.dims());
    assert_eq!(a.window_range(), b.window_range());
    assert_eq!(a.windows_total(), b.windows_total());
    assert_eq!(a.completed(), b.completed());
    let all: Vec<usize> = a.window_range().collect();
    let va = a.read_batch(&all).unwrap();
    let vb = b.read_batch(&all).unwrap();
    assert_eq!(va.len(), vb.len());
    let differing = va
        .iter()
        .zip(&vb)
        .filter(|(x, y)| x.to_bits() != y.to_bits())
        .count();
    assert_eq!(differing, 0, "{differing} values differ");
}

/// Asserts the files `a` and `b` are the same bytes, but for the stores' `created` times
/// (which differ between separate runs; interrupted and resumed runs keep their first).
pub fn assert_same_bytes_but_created(a: &Path, b: &Path) {
    let created = |p: &Path| StoreReader::open(p).unwrap().fingerprint().created.clone();
    let (ca, cb) = (created(a), created(b));
    assert_eq!(ca.len(), cb.len());
    let mut bytes_a = std::fs::read(a).unwrap();
    let bytes_b = std::fs::read(b).unwrap();
    let at = bytes_a
        .windows(ca.len())
        .position(|w| w == ca.as_bytes())
        .expect("created time in the file");
    bytes_a[at..at + ca.len()].copy_from_slice(cb.as_bytes());
    assert_eq!(
        bytes_a.len(),
        bytes_b.len(),
        "{} and {} differ in size",
        a.display(),
        b.display()
    );
    let first = bytes_a.iter().zip(&bytes_b).position(|(x, y)| x != y);
    assert_eq!(
        first,
        None,
        "{} and {} differ at byte {first:?}",
        a.display(),
        b.display()
    );
}
