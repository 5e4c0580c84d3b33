//! `timekd inspect`: what the tool will see in a dataset, before any model runs.

use clap::Args;
use serde_json::json;
use timekd_data::{Dataset, SplitKind};

use crate::data_args::DataArgs;

/// Describe a dataset: variables, interval, split ranges, window counts, scaler.
///
/// Example: `timekd inspect --data weather.csv --output-len 96 --json`
#[derive(Args, Debug)]
pub struct InspectArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs the command.
pub fn run(args: InspectArgs) -> anyhow::Result<()> {
    let loaded = args.data.load()?;
    let report = describe(&loaded.dataset, loaded.source.origin());
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&loaded.dataset, loaded.source.origin());
    }
    Ok(())
}

/// The JSON description (`splits` ranges are CSV data rows, end-exclusive).
fn describe(data: &Dataset, origin: &str) -> serde_json::Value {
    let splits: serde_json::Map<String, serde_json::Value> = SplitKind::ALL
        .iter()
        .map(|kind| {
            let split = data.split(*kind);
            let rows = split.rows();
            (
                kind.name().to_string(),
                json!({ "start": rows.start, "end": rows.end, "windows": split.num_windows() }),
            )
        })
        .collect();
    json!({
        "source": origin,
        "dataset": data.preset().name(),
        "rows": data.rows(),
        "variables": data.var_names(),
        "interval_seconds": data.interval_seconds(),
        "first_timestamp": data.timestamps().first().map(|t| t.to_string()),
        "last_timestamp": data.timestamps().last().map(|t| t.to_string()),
        "input_len": data.input_len(),
        "output_len": data.output_len(),
        "splits": splits,
        "scaler": data.scaler(),
    })
}

fn print_table(data: &Dataset, origin: &str) {
    println!("source     {origin} (dataset rules: {})", data.preset());
    println!("rows       {}", data.rows());
    println!("interval   {} s", data.interval_seconds());
    println!(
        "windows    L = {}, H = {}",
        data.input_len(),
        data.output_len()
    );
    println!();
    println!(
        "{:<6} {:>8} {:>8} {:>8}",
        "split", "start", "end", "windows"
    );
    for kind in SplitKind::ALL {
        let split = data.split(kind);
        let rows = split.rows();
        println!(
            "{:<6} {:>8} {:>8} {:>8}",
            kind.name(),
            rows.start,
            rows.end,
            split.num_windows()
        );
    }
    println!();
    println!(
        "{:<4} {:<28} {:>14} {:>14}",
        "#", "variable", "train mean", "train std"
    );
    let scaler = data.scaler();
    for (i, name) in data.var_names().iter().enumerate() {
        println!(
            "{:<4} {:<28} {:>14.6} {:>14.6}",
            i, name, scaler.mean[i], scaler.std[i]
        );
    }
}
