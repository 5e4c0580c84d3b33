//! A resumable extraction through the library: ETTh1's val split, the tiny GPT-2, the CPU,
//! into `<OUT>/ETTh1/24/val.h5`. Kill it and run it again: it continues where it stopped.
//! `cargo run -p timekd-teacher --example extract -- [OUT] [MAX_WINDOWS]`

use std::path::PathBuf;

use timekd_data::{DataSource, DatasetOptions, SplitKind};
use timekd_teacher::extract::{ExtractObserver, Extraction, StoreStatus};

/// Says how much of each store is left to do.
struct Report;

impl ExtractObserver for Report {
    fn store_opened(&mut self, store: &StoreStatus) {
        println!("{}: {} windows to do", store.path.display(), store.missing);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = args.next().unwrap_or_else(|| "runs/example".into());
    let max_windows = args.next().map(|k| k.parse()).transpose()?;
    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/tiny-gpt2");
    let source = DataSource::resolve("ETTh1")?; // built in; or a CSV file's path
    let data = source.load(&DatasetOptions {
        output_len: 24,
        ..Default::default()
    })?;
    let summary = Extraction::builder(&source, &data, out)
        .model(model.to_str().ok_or("the model path is not UTF-8")?)
        .splits(&[SplitKind::Val])
        .max_windows(max_windows)
        .batch_tokens(Some(600)) // small passes: a part is durable every few windows
        .run(&mut Report)?;
    println!("done: {}", summary.stores[0].path.display());
    Ok(())
}
