//! The four-term privileged-distillation loss.

use burn::tensor::Tensor;

use crate::config::{LossConfig, LossKind};
use crate::model::DualOutput;

/// The weighted total and each unweighted term, as tensors (keep the graph for backward):
/// `[runs]`, one value per run of the model (see [`Dual::pack`](crate::Dual::pack)).
#[derive(Debug, Clone)]
pub struct LossTerms {
    /// Σ weight·term: what is minimised.
    pub total: Tensor<1>,
    /// SL1(ŷ_ts, y): forecast.
    pub forecast: Tensor<1>,
    /// SL1(ŷ_p, y): reconstruction by the prompt branch.
    pub recon: Tensor<1>,
    /// SL1(Z_ts, Z_p): feature distillation.
    pub feature: Tensor<1>,
    /// SL1(A_ts, A_p): correlation (attention) distillation.
    pub att: Tensor<1>,
}

/// Values per run in [`LossTerms::stacked`]: total, forecast, recon, feature, att.
pub(crate) const TERMS: usize = 5;

/// Host copy of [`LossTerms`].
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LossValues {
    /// Weighted total.
    pub total: f64,
    /// Forecast term.
    pub forecast: f64,
    /// Reconstruction term.
    pub recon: f64,
    /// Feature distillation term.
    pub feature: f64,
    /// Correlation distillation term.
    pub att: f64,
}

impl LossTerms {
    /// The five terms (total, forecast, recon, feature, att) of each run as one detached
    /// `[runs, 5]` tensor on the device: sum these over a split and read once, instead of
    /// once per step.
    pub fn stacked(&self) -> Tensor<2> {
        Tensor::stack(
            vec![
                self.total.clone(),
                self.forecast.clone(),
                self.recon.clone(),
                self.feature.clone(),
                self.att.clone(),
            ],
            1,
        )
        .inner()
    }

    /// Reads each run's five scalars back to the host (one transfer).
    pub fn values(&self) -> crate::Result<Vec<LossValues>> {
        LossValues::read(self.stacked())
    }
}

impl LossValues {
    /// Reads a `[runs, 5]` tensor laid out like [`LossTerms::stacked`]: one value per run.
    pub fn read(stacked: Tensor<2>) -> crate::Result<Vec<LossValues>> {
        let v = crate::state_dict::tensor_to_vec(stacked)?;
        Ok(v.chunks_exact(TERMS).map(LossValues::from_terms).collect())
    }

    /// One run's [`TERMS`] values in [`LossTerms::stacked`]'s order.
    pub(crate) fn from_terms(v: &[f32]) -> LossValues {
        LossValues {
            total: f64::from(v[0]),
            forecast: f64::from(v[1]),
            recon: f64::from(v[2]),
            feature: f64::from(v[3]),
            att: f64::from(v[4]),
        }
    }
}

/// Mean elementwise loss of `kind` between two tensors of equal shape, per run: the first
/// axis holds `runs` equal parts, one per run, and the result is `[runs]`.
pub fn elementwise_loss<const D: usize>(
    kind: LossKind,
    pred: Tensor<D>,
    target: Tensor<D>,
    runs: usize,
) -> Tensor<1> {
    let diff = pred - target;
    let per_run = |t: Tensor<D>| crate::pack::run_means(t, runs);
    match kind {
        LossKind::Mse => per_run(diff.square()),
        LossKind::L1 => per_run(diff.abs()),
        LossKind::SmoothL1 => {
            // beta = 1: 0.5·d² where |d| < 1, |d| − 0.5 elsewhere; written as
            // 0.5·m² + (|d| − m) with m = min(|d|, 1), which has the same value and gradient.
            let abs = diff.abs();
            let small = abs.clone().clamp_max(1.0);
            per_run(small.clone().square().mul_scalar(0.5) + abs - small)
        }
    }
}

/// Computes the four terms and their weighted sum for one batch, per run of the model that
/// produced `out` (`y` holds the runs' targets one after another, like `out`).
/// With `target_only` (MS mode) the forecast and reconstruction terms score the last
/// variable alone.
pub fn distillation_loss(config: &LossConfig, out: &DualOutput, y: Tensor<3>) -> LossTerms {
    // [B, H, N], or [B, H, 1] for the target alone.
    let scored = |t: Tensor<3>| match config.target_only {
        true => {
            let n = t.dims()[2];
            t.narrow(2, n - 1, 1)
        }
        false => t,
    };
    let y = scored(y);
    let runs = out.runs;
    let forecast = elementwise_loss(
        config.forecast_kind,
        scored(out.ts_out.clone()),
        y.clone(),
        runs,
    );
    let recon = elementwise_loss(
        config.forecast_kind,
        scored(out.prompt_out.clone()),
        y,
        runs,
    );
    let feature = elementwise_loss(
        config.distill_kind,
        out.ts_enc.clone(),
        out.prompt_enc.clone(),
        runs,
    );
    let att = elementwise_loss(
        config.distill_kind,
        out.ts_att.clone(),
        out.prompt_att.clone(),
        runs,
    );
    let total = forecast.clone().mul_scalar(config.forecast_weight)
        + recon.clone().mul_scalar(config.recon_weight)
        + feature.clone().mul_scalar(config.feature_weight)
        + att.clone().mul_scalar(config.att_weight);
    LossTerms {
        total,
        forecast,
        recon,
        feature,
        att,
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Tensor};

    use super::elementwise_loss;
    use crate::config::LossKind;

    #[test]
    fn loss_kinds_match_their_definitions() {
        let device = Device::flex();
        let pred = Tensor::<1>::from_floats([0.0, 0.5, 3.0, -2.0], &device);
        let target = Tensor::<1>::zeros([4], &device);
        let value =
            |kind| elementwise_loss(kind, pred.clone(), target.clone(), 1).into_scalar::<f32>();
        // SmoothL1 (beta 1): 0, 0.125, 2.5, 1.5 → mean 1.03125
        assert!((value(LossKind::SmoothL1) - 1.03125).abs() < 1e-6);
        // MSE: 0, 0.25, 9, 4 → 3.3125; L1: 0, 0.5, 3, 2 → 1.375
        assert!((value(LossKind::Mse) - 3.3125).abs() < 1e-6);
        assert!((value(LossKind::L1) - 1.375).abs() < 1e-6);
        assert_eq!("smooth-l1".parse::<LossKind>().unwrap(), LossKind::SmoothL1);
        assert!("huberish".parse::<LossKind>().is_err());
    }
}
