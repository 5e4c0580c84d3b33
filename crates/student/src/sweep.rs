//! Seed sweeps reported the way papers print them: `results.csv` (one row per dataset, H,
//! seed, units and metric) and Markdown and LaTeX tables of mean ± standard deviation over
//! seeds per (dataset, H), with an Avg row per dataset.
//!
//! The standard deviation is the sample one (ddof = 1, pandas' default); the Avg row
//! averages each seed's metrics over the lengths it has in common with the other seeds,
//! then takes mean ± std over seeds.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use timekd_data::Features;

use crate::error::{Result, StudentError};
use crate::scores::{MetricSet, Metrics};
use crate::test_run::TestResults;
use crate::train_config::Selection;

/// One finished run of a sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct RunResult {
    /// Dataset name.
    pub dataset: String,
    /// Output length H.
    pub output_len: usize,
    /// The run's seed.
    pub seed: u64,
    /// Its test results.
    pub results: TestResults,
}

/// The runs of a sweep and their tables.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepResults {
    runs: Vec<RunResult>,
}

/// The two kinds of numbers a run reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Units {
    Scaled,
    Data,
}

impl Units {
    fn name(self) -> &'static str {
        match self {
            Units::Scaled => "scaled",
            Units::Data => "data",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Units::Scaled => "on the scaled data",
            Units::Data => "in the data's units",
        }
    }

    fn of(self, results: &TestResults) -> Option<&MetricSet> {
        match self {
            Units::Scaled => Some(&results.scaled),
            Units::Data => results.data_units.as_ref(),
        }
    }
}

/// What one table row group shares: dataset, features, scored variables, selection.
type GroupKey = (String, String, String, Selection);
/// Group → H → seed → metrics.
type Groups<'a> = BTreeMap<GroupKey, BTreeMap<usize, BTreeMap<u64, &'a Metrics>>>;

impl SweepResults {
    /// The sweep of `runs`.
    pub fn new(runs: Vec<RunResult>) -> Self {
        SweepResults { runs }
    }

    /// `all` in `M` mode, else the scored variable (the target).
    fn scored(results: &TestResults) -> String {
        match results.features {
            Features::M => "all".into(),
            _ => results.variables.join(" "),
        }
    }

    /// `dataset,features,scored,selection,output_len,seed,units,metric,value`; MAPE and
    /// MSPE are empty where every true value is 0.
    pub fn to_csv(&self) -> String {
        let mut out =
            String::from("dataset,features,scored,selection,output_len,seed,units,metric,value\n");
        for run in &self.runs {
            for units in [Units::Scaled, Units::Data] {
                let Some(set) = units.of(&run.results) else {
                    continue;
                };
                let m = &set.overall;
                let values = [
                    ("mse", Some(m.mse)),
                    ("mae", Some(m.mae)),
                    ("rmse", Some(m.rmse)),
                    ("mape", m.mape),
                    ("mspe", m.mspe),
                ];
                for (metric, value) in values {
                    let _ = writeln!(
                        out,
                        "{},{},{},{},{},{},{},{metric},{}",
                        csv_field(&run.dataset),
                        run.results.features,
                        csv_field(&Self::scored(&run.results)),
                        run.results.selection,
                        run.output_len,
                        run.seed,
                        units.name(),
                        value.map(|v| v.to_string()).unwrap_or_default()
                    );
                }
            }
        }
        out
    }

    fn groups(&self, units: Units) -> Groups<'_> {
        let mut groups: Groups = BTreeMap::new();
        for run in &self.runs {
            let Some(set) = units.of(&run.results) else {
                continue;
            };
            let key = (
                run.dataset.clone(),
                run.results.features.to_string(),
                Self::scored(&run.results),
                run.results.selection,
            );
            groups
                .entry(key)
                .or_default()
                .entry(run.output_len)
                .or_default()
                .insert(run.seed, &set.overall);
        }
        groups
    }

    /// Rows of one group: `(label, [MSE, MAE] as (mean, std), seeds)`, the lengths then Avg.
    fn rows(lengths: &BTreeMap<usize, BTreeMap<u64, &Metrics>>) -> Vec<(String, [Stat; 2], usize)> {
        let stat = |values: Vec<f64>| Stat::of(&values);
        let mut rows: Vec<(String, [Stat; 2], usize)> = lengths
            .iter()
            .map(|(h, seeds)| {
                let mse = stat(seeds.values().map(|m| m.mse).collect());
                let mae = stat(seeds.values().map(|m| m.mae).collect());
                (h.to_string(), [mse, mae], seeds.len())
            })
            .collect();
        // Seeds present at every length: their averages over H, then mean ± std.
        let common: Vec<u64> = lengths
            .values()
            .next()
            .map(|first| {
                first
                    .keys()
                    .filter(|s| lengths.values().all(|seeds| seeds.contains_key(s)))
                    .copied()
                    .collect()
            })
            .unwrap_or_default();
        if lengths.len() > 1 && !common.is_empty() {
            let average = |seed: &u64, f: fn(&Metrics) -> f64| {
                lengths.values().map(|seeds| f(seeds[seed])).sum::<f64>() / lengths.len() as f64
            };
            let mse = stat(common.iter().map(|s| average(s, |m| m.mse)).collect());
            let mae = stat(common.iter().map(|s| average(s, |m| m.mae)).collect());
            rows.push(("Avg".into(), [mse, mae], common.len()));
        }
        rows
    }

    /// The seeds of the sweep, in order.
    fn seeds(&self) -> String {
        let mut seeds: Vec<u64> = self.runs.iter().map(|r| r.seed).collect();
        seeds.sort_unstable();
        seeds.dedup();
        seeds
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn units_present(&self) -> Vec<Units> {
        let all_data =
            !self.runs.is_empty() && self.runs.iter().all(|r| r.results.data_units.is_some());
        let mut units = vec![Units::Scaled];
        if all_data {
            units.push(Units::Data);
        }
        units
    }

    /// The selections of the sweep's runs and what each means, for table captions.
    fn selections(&self) -> String {
        let mut selections: Vec<Selection> =
            self.runs.iter().map(|r| r.results.selection).collect();
        selections.sort_unstable();
        selections.dedup();
        selections
            .iter()
            .map(|s| format!("{s} = {}", s.describe()))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Markdown tables (scaled data, then the data's units when every run has them).
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        for units in self.units_present() {
            let _ = writeln!(
                out,
                "Test MSE and MAE {}, mean ± std (sample, ddof 1) over seeds {}; checkpoint \
                 selection: {}.\n",
                units.describe(),
                self.seeds(),
                self.selections()
            );
            out.push_str("| Dataset | Features | Selection | H | MSE | MAE | Seeds |\n");
            out.push_str("|---|---|---|---:|---:|---:|---:|\n");
            for ((dataset, features, scored, selection), lengths) in self.groups(units) {
                let mode = match scored.as_str() {
                    "all" => features,
                    target => format!("{features} ({target})"),
                };
                for (label, [mse, mae], seeds) in Self::rows(&lengths) {
                    let h = if label == "Avg" {
                        "**Avg**".into()
                    } else {
                        label
                    };
                    let _ = writeln!(
                        out,
                        "| {dataset} | {mode} | {selection} | {h} | {} | {} | {seeds} |",
                        mse.text(" ± "),
                        mae.text(" ± ")
                    );
                }
            }
            out.push('\n');
        }
        out
    }

    /// LaTeX `tabular`s (booktabs rules), one per kind of units.
    pub fn to_latex(&self) -> String {
        let mut out = String::new();
        for units in self.units_present() {
            let _ = writeln!(
                out,
                "% Test MSE and MAE {}, mean $\\pm$ std (ddof 1) over seeds {}; checkpoint \
                 selection: {}.",
                units.describe(),
                self.seeds(),
                self.selections()
            );
            out.push_str("\\begin{tabular}{lllrcc}\n\\toprule\n");
            out.push_str("Dataset & Features & Selection & $H$ & MSE & MAE \\\\\n");
            for ((dataset, features, _, selection), lengths) in self.groups(units) {
                out.push_str("\\midrule\n");
                let dataset = dataset.replace('_', "\\_");
                for (label, [mse, mae], _) in Self::rows(&lengths) {
                    let _ = writeln!(
                        out,
                        "{dataset} & {features} & {selection} & {label} & ${}$ & ${}$ \\\\",
                        mse.text(" \\pm "),
                        mae.text(" \\pm ")
                    );
                }
            }
            out.push_str("\\bottomrule\n\\end{tabular}\n\n");
        }
        out
    }

    /// Writes `<stem>.csv`, `<stem>.md` and `<stem>.tex` into `dir` (atomically each).
    pub fn write(&self, dir: &Path, stem: &str) -> Result<[PathBuf; 3]> {
        std::fs::create_dir_all(dir).map_err(|e| StudentError::io(dir, e))?;
        let files = [
            (dir.join(format!("{stem}.csv")), self.to_csv()),
            (dir.join(format!("{stem}.md")), self.to_markdown()),
            (dir.join(format!("{stem}.tex")), self.to_latex()),
        ];
        for (path, text) in &files {
            crate::output::write_file(path, text.as_bytes())?;
        }
        Ok(files.map(|(path, _)| path))
    }
}

/// Quotes a CSV field that holds a comma or a quote.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// Mean and sample standard deviation (`None` for one value).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stat {
    mean: f64,
    std: Option<f64>,
}

impl Stat {
    fn of(values: &[f64]) -> Stat {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let std = (values.len() > 1).then(|| {
            (values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0)).sqrt()
        });
        Stat { mean, std }
    }

    fn text(&self, pm: &str) -> String {
        match self.std {
            Some(std) => format!("{:.4}{pm}{std:.4}", self.mean),
            None => format!("{:.4}", self.mean),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(mse: f64, mae: f64) -> Metrics {
        Metrics {
            mse,
            mae,
            rmse: mse.sqrt(),
            mape: Some(0.5),
            mspe: None,
        }
    }

    fn run(h: usize, seed: u64, mse: f64, mae: f64) -> RunResult {
        let set = MetricSet {
            overall: metrics(mse, mae),
            per_variable: Vec::new(),
            per_step: Vec::new(),
            zero_targets: 0,
        };
        RunResult {
            dataset: "ETTh1".into(),
            output_len: h,
            seed,
            results: TestResults {
                split: "test".into(),
                windows: 10,
                output_len: h,
                features: Features::MS,
                selection: Selection::Val,
                variables: vec!["OT".into()],
                scaled: set,
                data_units: None,
            },
        }
    }

    #[test]
    fn tables_give_mean_and_sample_std_and_an_average_row() {
        let sweep = SweepResults::new(vec![
            run(24, 1, 0.1, 0.2),
            run(24, 2, 0.3, 0.4),
            run(48, 1, 0.5, 0.6),
            run(48, 2, 0.7, 1.0),
        ]);
        let md = sweep.to_markdown();
        // H = 24: MSE mean 0.2, sample std sqrt(0.02) = 0.1414.
        assert!(
            md.contains("| ETTh1 | MS (OT) | val | 24 | 0.2000 ± 0.1414 | 0.3000 ± 0.1414 | 2 |"),
            "{md}"
        );
        // Avg: seed 1 (0.3, 0.4), seed 2 (0.5, 0.7) → MSE 0.4 ± 0.1414, MAE 0.55 ± 0.2121.
        assert!(
            md.contains("| **Avg** | 0.4000 ± 0.1414 | 0.5500 ± 0.2121 | 2 |"),
            "{md}"
        );
        assert!(
            !md.contains("data's units"),
            "no data-unit table without --inverse"
        );
        let tex = sweep.to_latex();
        assert!(
            tex.contains("ETTh1 & MS & val & Avg & $0.4000 \\pm 0.1414$"),
            "{tex}"
        );
        let csv = sweep.to_csv();
        assert_eq!(csv.lines().count(), 1 + 4 * 5);
        assert!(
            csv.contains("ETTh1,MS,OT,val,48,2,scaled,mse,0.7\n"),
            "{csv}"
        );
        assert!(csv.contains("ETTh1,MS,OT,val,48,2,scaled,mspe,\n"), "{csv}");
        // One seed: no ± and no Avg std.
        let single = SweepResults::new(vec![run(24, 1, 0.1, 0.2)]).to_markdown();
        assert!(single.contains("| 24 | 0.1000 | 0.2000 | 1 |"), "{single}");
    }
}
