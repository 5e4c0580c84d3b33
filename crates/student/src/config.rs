//! Configuration of the dual model, the distillation loss and the optimiser.
//!
//! Defaults are the release's student settings (TimeKD `train.py` and its ETTh1 script).

use serde::{Deserialize, Serialize};

use crate::error::{Result, StudentError};

/// Shape of the dual (time-series + prompt) student model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DualConfig {
    /// L: history length fed to the time-series branch.
    pub input_len: usize,
    /// H: forecast length produced by both branches.
    pub output_len: usize,
    /// C: width of both encoders.
    pub channel: usize,
    /// Attention heads per encoder layer (`channel` must be divisible by it).
    pub heads: usize,
    /// Post-norm layers per encoder.
    pub layers: usize,
    /// Width of the teacher embeddings (768 for GPT-2 small).
    pub d_llm: usize,
    /// Hidden width of the feed-forward (1x1 convolution) block.
    pub d_ff: usize,
    /// Dropout probability while training (off in evaluation).
    pub dropout: f64,
}

impl Default for DualConfig {
    fn default() -> Self {
        DualConfig {
            input_len: 96,
            output_len: 96,
            channel: 64,
            heads: 4,
            layers: 2,
            d_llm: 768,
            d_ff: 3072,
            dropout: 0.5,
        }
    }
}

impl DualConfig {
    /// Checks that every size is positive and consistent.
    pub fn validate(&self) -> Result<()> {
        let sizes = [
            ("input_len", self.input_len),
            ("output_len", self.output_len),
            ("channel", self.channel),
            ("heads", self.heads),
            ("layers", self.layers),
            ("d_llm", self.d_llm),
            ("d_ff", self.d_ff),
        ];
        if let Some((name, _)) = sizes.iter().find(|(_, v)| *v == 0) {
            return Err(StudentError::Config(format!(
                "model.{name} must be positive"
            )));
        }
        if !self.channel.is_multiple_of(self.heads) {
            return Err(StudentError::Config(format!(
                "model.channel ({}) must be divisible by model.heads ({})",
                self.channel, self.heads
            )));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(StudentError::Config(format!(
                "model.dropout must be in [0, 1), got {}",
                self.dropout
            )));
        }
        Ok(())
    }
}

/// Elementwise loss used by each distillation term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    /// SmoothL1 (Huber) with beta 1: the release's choice for every term.
    #[default]
    SmoothL1,
    /// Mean squared error.
    Mse,
    /// Mean absolute error.
    L1,
}

impl std::str::FromStr for LossKind {
    type Err = StudentError;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().replace('-', "_").as_str() {
            "smooth_l1" | "smoothl1" | "huber" => Ok(LossKind::SmoothL1),
            "mse" | "l2" => Ok(LossKind::Mse),
            "l1" | "mae" => Ok(LossKind::L1),
            other => Err(StudentError::Config(format!(
                "unknown loss kind {other:?}: use smooth_l1, mse or l1"
            ))),
        }
    }
}

/// Weights and kinds of the four loss terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LossConfig {
    /// Weight of the forecast term SL1(ŷ_ts, y).
    pub forecast_weight: f64,
    /// Weight of the reconstruction term SL1(ŷ_p, y).
    pub recon_weight: f64,
    /// Weight of the feature distillation term SL1(Z_ts, Z_p).
    pub feature_weight: f64,
    /// Weight of the correlation (attention) distillation term SL1(A_ts, A_p).
    pub att_weight: f64,
    /// Loss of the forecast and reconstruction terms.
    pub forecast_kind: LossKind,
    /// Loss of the two distillation terms.
    pub distill_kind: LossKind,
    /// Score the forecast and reconstruction terms (and test metrics) on the last variable
    /// alone: Time-Series-Library's `MS` mode (`f_dim = -1`), the target being last. The
    /// distillation terms still cover every variable.
    pub target_only: bool,
}

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig {
            forecast_weight: 1.0,
            recon_weight: 0.5,
            feature_weight: 0.1,
            att_weight: 0.01,
            forecast_kind: LossKind::SmoothL1,
            distill_kind: LossKind::SmoothL1,
            target_only: false,
        }
    }
}

/// AdamW and gradient clipping settings (PyTorch semantics).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimConfig {
    /// Base learning rate (epoch 0 of the cosine schedule).
    pub lr: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Adam's β1.
    pub beta1: f64,
    /// Adam's β2.
    pub beta2: f64,
    /// Adam's ε, added to the bias-corrected root of the second moment.
    pub eps: f64,
    /// Global gradient-norm clipping threshold; `None` disables clipping.
    pub clip_grad_norm: Option<f64>,
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            lr: 1e-4,
            weight_decay: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            clip_grad_norm: Some(5.0),
        }
    }
}
