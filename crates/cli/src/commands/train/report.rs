//! What `timekd train` reports over several runs: a table on stdout and, for the sweep,
//! `results.csv`, `results.md` and `results.tex`.

use std::path::Path;

use timekd_student::{RunResult, SweepResults};

use super::TrainArgs;
use super::one::RunOutcome;

/// One line per run: H, seed, epochs, best validation loss, test MSE/MAE, time.
pub fn print_table(dataset: &str, args: &TrainArgs, runs: &[RunOutcome]) {
    println!(
        "student runs for {dataset} (--features {}, device {})",
        args.features, args.device
    );
    println!(
        "{:>5} {:>6} {:>9} {:>7} {:>14} {:>10} {:>10} {:>10}",
        "H", "seed", "selection", "epochs", "kept val loss", "test MSE", "test MAE", "time s"
    );
    for run in runs {
        let r = &run.summary;
        println!(
            "{:>5} {:>6} {:>9} {:>6}{} {:>14.5} {:>10.4} {:>10.4} {:>10.1}",
            r.output_len,
            run.seed,
            run.results.selection.name(),
            r.epochs,
            if r.stopped_early { "*" } else { " " },
            r.best_val_loss.unwrap_or(f64::NAN),
            r.test_mse,
            r.test_mae,
            r.train_seconds_this_invocation
        );
    }
    println!(
        "(* early stop; test metrics of the kept checkpoint, scaled data; selection val = best \
         validation loss, paper = the release's rule, lowest test MSE after epoch 10)"
    );
}

/// Writes the sweep's tables into `dir` as `<stem>.{csv,md,tex}` and prints the Markdown one.
pub fn write_sweep(
    dir: &Path,
    stem: &str,
    dataset: &str,
    runs: &[RunOutcome],
) -> anyhow::Result<()> {
    let sweep = SweepResults::new(
        runs.iter()
            .map(|run| RunResult {
                dataset: dataset.to_string(),
                output_len: run.summary.output_len,
                seed: run.seed,
                results: run.results.clone(),
            })
            .collect(),
    );
    let files = sweep.write(dir, stem)?;
    println!();
    print!("{}", sweep.to_markdown());
    let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    eprintln!("results: {}", names.join(", "));
    Ok(())
}
