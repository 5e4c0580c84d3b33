//! Per-variable z-score scaling fitted on the training rows.

/// Mean and population standard deviation per variable (model order).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Scaler {
    /// Mean of each variable over the train rows.
    pub mean: Vec<f64>,
    /// Population standard deviation (ddof 0) of each variable over the train rows.
    /// A constant variable gets 1.0, as scikit-learn's `StandardScaler` does, so that
    /// scaling never divides by zero.
    pub std: Vec<f64>,
}

impl Scaler {
    /// Fits on `rows` of each column.
    pub fn fit(columns: &[Vec<f64>], rows: std::ops::Range<usize>) -> Scaler {
        let n = rows.len() as f64;
        let (mean, std) = columns
            .iter()
            .map(|column| {
                let values = &column[rows.clone()];
                let mean = values.iter().sum::<f64>() / n;
                let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
                let std = var.sqrt();
                (mean, if std > 0.0 { std } else { 1.0 })
            })
            .unzip();
        Scaler { mean, std }
    }

    /// Scales one value of variable `var`.
    pub fn scale(&self, var: usize, value: f64) -> f64 {
        (value - self.mean[var]) / self.std[var]
    }

    /// Undoes [`Scaler::scale`].
    pub fn unscale(&self, var: usize, value: f64) -> f64 {
        value * self.std[var] + self.mean[var]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn population_std_and_round_trip() {
        let columns = vec![vec![1.0, 2.0, 3.0, 4.0, 100.0], vec![5.0; 5]];
        let scaler = Scaler::fit(&columns, 0..4);
        assert_eq!(scaler.mean, vec![2.5, 5.0]);
        assert!((scaler.std[0] - 1.25f64.sqrt()).abs() < 1e-15);
        assert_eq!(scaler.std[1], 1.0);
        let scaled = scaler.scale(0, 100.0);
        assert!((scaler.unscale(0, scaled) - 100.0).abs() < 1e-12);
    }
}
