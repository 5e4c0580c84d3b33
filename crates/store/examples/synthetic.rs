//! Writes a synthetic store in two sessions (the first "crashes" half way), reads it back
//! with the prefetching iterator and prints its summary.
//!
//! Run: `cargo run -p timekd-store --example synthetic [-- <store.h5>]`

use std::path::PathBuf;

use timekd_store::{Dtype, Fingerprint, SCHEMA_VERSION, StoreReader, StoreWriter, WriterOptions};

const WINDOWS: usize = 100;
const N_VARS: usize = 7;
const D_MODEL: usize = 16;

fn embedding(window: usize) -> Vec<f32> {
    (0..N_VARS * D_MODEL)
        .map(|i| (window * 1000 + i) as f32 * 1e-3)
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let scratch = tempfile::tempdir()?;
    let path = std::env::args().nth(1).map_or_else(
        || scratch.path().join("synthetic/24/train.h5"),
        PathBuf::from,
    );
    let fingerprint = Fingerprint {
        schema_version: SCHEMA_VERSION,
        dataset: "synthetic".into(),
        data_sha256: "00".repeat(32),
        columns: (0..N_VARS).map(|i| format!("var{i}")).collect(),
        split: "train".into(),
        split_start: 0,
        split_end: WINDOWS + 119,
        input_len: 96,
        output_len: 24,
        n_vars: N_VARS,
        d_model: D_MODEL,
        value_format: "plain".into(),
        prompt_template: "timekd-v1".into(),
        model_id: "synthetic".into(),
        weights_sha256: "00".repeat(32),
        layers: 1,
        sca_seed: 0,
        compute_precision: "f32".into(),
        dtype: Dtype::F32,
        tool_version: env!("CARGO_PKG_VERSION").into(),
        created: String::new(),
    };
    let options = WriterOptions {
        part_windows: Some(8),
        ..Default::default()
    };

    // Session one writes half the windows and stops without finishing, as a crash would.
    let mut writer = StoreWriter::open(&path, fingerprint.clone(), WINDOWS, options.clone())?;
    for window in writer.missing().into_iter().take(WINDOWS / 2) {
        writer.put(window, &embedding(window))?;
    }
    drop(writer);
    println!(
        "in progress: {} windows readable",
        StoreReader::open(&path)?.completed()
    );

    // Session two resumes: only the missing windows are computed (the 2 buffered ones again).
    let mut writer = StoreWriter::open(&path, fingerprint, WINDOWS, options)?;
    println!("resuming with {} windows missing", writer.missing().len());
    for window in writer.missing() {
        writer.put(window, &embedding(window))?;
    }
    writer.finish()?;

    let reader = StoreReader::open(&path)?;
    let mut total = 0.0f64;
    for batch in reader.prefetch((0..WINDOWS).collect(), 16, 2) {
        total += batch?.values.iter().map(|v| f64::from(*v)).sum::<f64>();
    }
    println!("sum of all values: {total:.3}");
    print!("{}", timekd_store::inspect(&path)?);
    Ok(())
}
