//! Test metrics as Time-Series-Library computes them: MSE, MAE, RMSE, MAPE and MSPE, over
//! every element, per variable and per horizon step.
//!
//! MAPE = mean |(ŷ − y) / y| and MSPE = mean ((ŷ − y) / y)², like TSLib's `metric()`. TSLib
//! divides by zero where a true value is 0 (giving inf or NaN); here those elements are left
//! out of MAPE and MSPE (and counted in [`MetricSet::zero_targets`]); MSE, MAE and RMSE use
//! every element. RMSE is the square root of the group's MSE.

use serde::{Deserialize, Serialize};

/// The five metrics of one group of elements.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Mean squared error.
    pub mse: f64,
    /// Mean absolute error.
    pub mae: f64,
    /// Root of the mean squared error.
    pub rmse: f64,
    /// Mean absolute percentage error (a fraction, not ×100) over elements whose true value
    /// is not 0; `None` when every true value is 0.
    pub mape: Option<f64>,
    /// Mean squared percentage error over the same elements.
    pub mspe: Option<f64>,
}

/// One variable's metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariableMetrics {
    /// The variable's name.
    pub variable: String,
    /// Its metrics over every window and step.
    #[serde(flatten)]
    pub metrics: Metrics,
}

/// Metrics of a forecast `[windows, H, V]` against the truth: overall, per variable, per step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSet {
    /// Over every window, step and variable.
    pub overall: Metrics,
    /// Per variable (model order), over windows and steps.
    pub per_variable: Vec<VariableMetrics>,
    /// Per horizon step (H entries), over windows and variables.
    pub per_step: Vec<Metrics>,
    /// Elements whose true value is exactly 0, left out of MAPE and MSPE.
    pub zero_targets: u64,
}

/// Running sums of one group.
#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    count: u64,
    se: f64,
    ae: f64,
    nonzero: u64,
    ape: f64,
    spe: f64,
}

impl Sums {
    fn add(&mut self, pred: f64, truth: f64) {
        let d = pred - truth;
        self.count += 1;
        self.se += d * d;
        self.ae += d.abs();
        if truth != 0.0 {
            let r = d / truth;
            self.nonzero += 1;
            self.ape += r.abs();
            self.spe += r * r;
        }
    }

    fn merge(mut self, other: &Sums) -> Sums {
        self.count += other.count;
        self.se += other.se;
        self.ae += other.ae;
        self.nonzero += other.nonzero;
        self.ape += other.ape;
        self.spe += other.spe;
        self
    }

    fn metrics(&self) -> Metrics {
        let n = self.count.max(1) as f64;
        let mse = self.se / n;
        let nonzero = (self.nonzero > 0).then_some(self.nonzero as f64);
        Metrics {
            mse,
            mae: self.ae / n,
            rmse: mse.sqrt(),
            mape: nonzero.map(|k| self.ape / k),
            mspe: nonzero.map(|k| self.spe / k),
        }
    }
}

/// Accumulates forecasts and truths batch by batch; [`finish`](Self::finish) gives the
/// [`MetricSet`].
#[derive(Debug, Clone)]
pub struct Scorer {
    variables: Vec<String>,
    output_len: usize,
    /// `[H][V]` sums.
    cells: Vec<Sums>,
}

impl Scorer {
    /// A scorer of `[*, output_len, variables.len()]` arrays.
    pub fn new(output_len: usize, variables: Vec<String>) -> Self {
        let cells = vec![Sums::default(); output_len * variables.len()];
        Scorer {
            variables,
            output_len,
            cells,
        }
    }

    /// Adds windows of forecasts and truths, both `[windows, H, V]` row-major.
    pub fn add(&mut self, pred: &[f32], truth: &[f32]) {
        let cells = self.cells.len();
        for (i, (p, t)) in pred.iter().zip(truth).enumerate() {
            self.cells[i % cells].add(f64::from(*p), f64::from(*t));
        }
    }

    /// The metrics of everything added.
    pub fn finish(&self) -> MetricSet {
        let v = self.variables.len();
        let all = total(self.cells.iter());
        MetricSet {
            overall: all.metrics(),
            per_variable: self
                .variables
                .iter()
                .enumerate()
                .map(|(var, name)| VariableMetrics {
                    variable: name.clone(),
                    metrics: total(self.cells.iter().skip(var).step_by(v)).metrics(),
                })
                .collect(),
            per_step: (0..self.output_len)
                .map(|step| total(self.cells[step * v..(step + 1) * v].iter()).metrics())
                .collect(),
            zero_targets: all.count - all.nonzero,
        }
    }
}

/// The sums of several groups.
fn total<'a>(cells: impl Iterator<Item = &'a Sums>) -> Sums {
    cells.fold(Sums::default(), |acc, s| acc.merge(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_match_their_definitions_and_skip_zero_truths() {
        // Two windows, H = 2, two variables; one true value is 0.
        let truth = [1.0, 2.0, 4.0, 0.0, 2.0, 1.0, 1.0, 5.0];
        let pred = [2.0, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0, 4.0];
        let mut scorer = Scorer::new(2, vec!["a".into(), "b".into()]);
        scorer.add(&pred[..4], &truth[..4]);
        scorer.add(&pred[4..], &truth[4..]);
        let set = scorer.finish();
        // d = 1, 0, -1, 1, 0, 2, 0, -1
        let o = set.overall;
        assert!((o.mse - 8.0 / 8.0).abs() < 1e-12);
        assert!((o.mae - 6.0 / 8.0).abs() < 1e-12);
        assert!((o.rmse - 1.0).abs() < 1e-12);
        // |d / y| without the zero: 1, 0, 0.25, 0, 2, 0, 0.2 over 7.
        assert!((o.mape.unwrap() - 3.45 / 7.0).abs() < 1e-12);
        assert!((o.mspe.unwrap() - (1.0 + 0.0625 + 4.0 + 0.04) / 7.0).abs() < 1e-12);
        assert_eq!(set.zero_targets, 1);
        // Variable b: d = 0, 1, 2, -1 → MSE 1.5; step 1: d = -1, 1, 0, -1 → MAE 0.75.
        assert_eq!(set.per_variable[1].variable, "b");
        assert!((set.per_variable[1].metrics.mse - 1.5).abs() < 1e-12);
        assert!((set.per_step[1].mae - 0.75).abs() < 1e-12);
        let all_zero = {
            let mut s = Scorer::new(1, vec!["z".into()]);
            s.add(&[1.0], &[0.0]);
            s.finish()
        };
        assert_eq!(all_zero.overall.mape, None);
    }
}
