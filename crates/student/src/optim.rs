//! Gradients, global-norm clipping and AdamW with PyTorch's exact update rule.
//!
//! Burn's own `AdamW` computes the same formula but keeps its bias corrections in f32 and
//! its state in Burn's record format; this implementation evaluates the scalar factors in
//! f64 as PyTorch does and exposes its moments as named tensors, so a checkpoint can store
//! them and a resumed run continues bit for bit.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Device, Gradients, Tensor, TensorData};

use crate::config::OptimConfig;
use crate::error::{Result, StudentError};
use crate::model::Dual;
use crate::state_dict::{NamedTensor, tensor_to_vec, to_torch};

/// The gradient of every parameter, flattened, keyed by Burn module path.
#[derive(Debug, Clone, Default)]
pub struct GradientSet {
    grads: BTreeMap<String, (Vec<usize>, Tensor<1>)>,
}

struct GradCollector<'a> {
    path: Vec<String>,
    grads: &'a Gradients,
    out: BTreeMap<String, (Vec<usize>, Tensor<1>)>,
}

impl ModuleVisitor for GradCollector<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        let dims = value.dims();
        let n = dims.iter().product::<usize>();
        let grad = match value.grad(self.grads) {
            Some(grad) => grad.reshape([n]),
            // A parameter outside the loss's graph has a zero gradient.
            None => Tensor::zeros([n], &value.device().without_autodiff()),
        };
        self.out.insert(self.path.join("."), (dims.to_vec(), grad));
    }
}

impl GradientSet {
    /// Collects the gradients of every parameter of `model` from a backward pass.
    pub fn from_backward(model: &Dual, grads: &Gradients) -> GradientSet {
        let mut collector = GradCollector {
            path: Vec::new(),
            grads,
            out: BTreeMap::new(),
        };
        model.visit(&mut collector);
        GradientSet {
            grads: collector.out,
        }
    }

    /// Adds another micro-batch's gradients (gradient accumulation).
    pub fn accumulate(&mut self, other: GradientSet) {
        if self.grads.is_empty() {
            *self = other;
            return;
        }
        for (name, (_, grad)) in other.grads {
            if let Some((_, mine)) = self.grads.get_mut(&name) {
                *mine = mine.clone() + grad;
            }
        }
    }

    /// The gradients moved to `device` (data-parallel replicas report to the main device).
    pub fn to_device(self, device: &Device) -> GradientSet {
        GradientSet {
            grads: self
                .grads
                .into_iter()
                .map(|(name, (dims, grad))| (name, (dims, grad.to_device(device))))
                .collect(),
        }
    }

    /// Global L2 norm over all gradients.
    pub fn norm(&self) -> Result<f64> {
        match self.norm_tensor() {
            Some(norm) => Ok(f64::from(tensor_to_vec(norm)?[0])),
            None => Ok(0.0),
        }
    }

    /// The global L2 norm as a `[1]` tensor on the gradients' device (no host transfer);
    /// `None` without gradients.
    pub fn norm_tensor(&self) -> Option<Tensor<1>> {
        let squares: Vec<Tensor<1>> = self
            .grads
            .values()
            .map(|(_, g)| g.clone().square().sum())
            .collect();
        (!squares.is_empty()).then(|| Tensor::cat(squares, 0).sum().sqrt())
    }

    /// PyTorch's `clip_grad_norm_`: scales every gradient by `max_norm / (norm + 1e-6)` when
    /// that is below 1. Returns the norm before clipping.
    pub fn clip_norm(&mut self, max_norm: f64) -> Result<f64> {
        let norm = self.norm()?;
        let coef = max_norm / (norm + 1e-6);
        if coef < 1.0 {
            for (_, grad) in self.grads.values_mut() {
                *grad = grad.clone().mul_scalar(coef);
            }
        }
        Ok(norm)
    }

    /// [`clip_norm`](Self::clip_norm) computed on the device, without waiting for the norm:
    /// every gradient is multiplied by `min(1, max_norm / (norm + 1e-6))`. Returns the norm
    /// as a `[1]` tensor (`None` without gradients).
    pub fn clip_norm_on_device(&mut self, max_norm: f64) -> Option<Tensor<1>> {
        let norm = self.norm_tensor()?;
        let coef = (norm.clone().add_scalar(1e-6).recip() * max_norm).clamp_max(1.0);
        for (_, grad) in self.grads.values_mut() {
            *grad = grad.clone() * coef.clone();
        }
        Some(norm)
    }

    /// Every gradient in the PyTorch layout of its parameter (names as in the state dict).
    pub fn to_torch(&self) -> Result<Vec<NamedTensor>> {
        self.grads
            .iter()
            .map(|(path, (dims, grad))| Ok(to_torch(path, dims, &tensor_to_vec(grad.clone())?)))
            .collect()
    }
}

/// First and second moments of one parameter.
#[derive(Debug, Clone)]
struct Moments {
    exp_avg: Tensor<1>,
    exp_avg_sq: Tensor<1>,
}

/// AdamW with decoupled weight decay, as `torch.optim.AdamW` (amsgrad off).
#[derive(Debug, Clone)]
pub struct AdamW {
    config: OptimConfig,
    step: u64,
    moments: BTreeMap<String, Moments>,
}

struct Update<'a> {
    path: Vec<String>,
    grads: BTreeMap<String, (Vec<usize>, Tensor<1>)>,
    moments: &'a mut BTreeMap<String, Moments>,
    config: &'a OptimConfig,
    lr: f64,
    step: u64,
}

impl ModuleMapper for Update<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let name = self.path.join(".");
        let Some((_, grad)) = self.grads.remove(&name) else {
            return param;
        };
        let c = self.config;
        let (lr, step) = (self.lr, self.step);
        let moments = &mut *self.moments;
        param.map(|value| {
            let autodiff = value.is_autodiff();
            let require_grad = value.is_require_grad();
            let dims = value.dims();
            let n = dims.iter().product::<usize>();
            let p = value.inner().reshape([n]);
            let m = moments.remove(&name).unwrap_or_else(|| Moments {
                exp_avg: grad.zeros_like(),
                exp_avg_sq: grad.zeros_like(),
            });
            // p ← p·(1 − lr·wd); m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²
            let p = p.mul_scalar(1.0 - lr * c.weight_decay);
            let exp_avg = m.exp_avg.mul_scalar(c.beta1) + grad.clone().mul_scalar(1.0 - c.beta1);
            let exp_avg_sq =
                m.exp_avg_sq.mul_scalar(c.beta2) + grad.square().mul_scalar(1.0 - c.beta2);
            // p ← p − lr/bc1 · m / (sqrt(v)/sqrt(bc2) + eps)
            let bc1 = 1.0 - c.beta1.powi(step as i32);
            let bc2 = 1.0 - c.beta2.powi(step as i32);
            let denom = exp_avg_sq
                .clone()
                .sqrt()
                .div_scalar(bc2.sqrt())
                .add_scalar(c.eps);
            let p = p - (exp_avg.clone() / denom).mul_scalar(lr / bc1);
            moments.insert(
                name.clone(),
                Moments {
                    exp_avg,
                    exp_avg_sq,
                },
            );
            let p = p.reshape(dims);
            let p = if autodiff { p.autodiff() } else { p };
            p.set_require_grad(require_grad)
        })
    }
}

impl AdamW {
    /// A fresh optimiser (step 0, zero moments).
    pub fn new(config: OptimConfig) -> AdamW {
        AdamW {
            config,
            step: 0,
            moments: BTreeMap::new(),
        }
    }

    /// Number of steps taken.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// One AdamW step at learning rate `lr` with the given (already clipped) gradients.
    pub fn step(&mut self, model: Dual, grads: GradientSet, lr: f64) -> Dual {
        self.step += 1;
        let mut update = Update {
            path: Vec::new(),
            grads: grads.grads,
            moments: &mut self.moments,
            config: &self.config,
            lr,
            step: self.step,
        };
        model.map(&mut update)
    }

    /// The moments as flat named tensors (`exp_avg.<path>`, `exp_avg_sq.<path>`).
    pub fn state_tensors(&self) -> Result<Vec<NamedTensor>> {
        let mut out = Vec::with_capacity(self.moments.len() * 2);
        for (path, m) in &self.moments {
            for (prefix, t) in [("exp_avg", &m.exp_avg), ("exp_avg_sq", &m.exp_avg_sq)] {
                let data = tensor_to_vec(t.clone())?;
                out.push(NamedTensor {
                    name: format!("{prefix}.{path}"),
                    shape: vec![data.len()],
                    data,
                });
            }
        }
        Ok(out)
    }

    /// Restores an optimiser from [`state_tensors`](Self::state_tensors) and its step count.
    pub fn from_state(
        config: OptimConfig,
        step: u64,
        tensors: &BTreeMap<String, NamedTensor>,
        device: &Device,
    ) -> Result<AdamW> {
        let device = device.clone().without_autodiff();
        let load = |t: &NamedTensor| {
            Tensor::<1>::from_data(TensorData::new(t.data.clone(), [t.data.len()]), &device)
        };
        let mut moments = BTreeMap::new();
        for (name, t) in tensors {
            let Some(path) = name.strip_prefix("exp_avg.") else {
                continue;
            };
            let sq = tensors.get(&format!("exp_avg_sq.{path}")).ok_or_else(|| {
                StudentError::Config(format!("optimizer state lacks exp_avg_sq.{path}"))
            })?;
            moments.insert(
                path.to_string(),
                Moments {
                    exp_avg: load(t),
                    exp_avg_sq: load(sq),
                },
            );
        }
        Ok(AdamW {
            config,
            step,
            moments,
        })
    }
}

/// Learning rate of epoch `epoch` (0-based) under per-epoch cosine annealing, in the closed
/// form of PyTorch's `CosineAnnealingLR` with `T_max = t_max` and floor `eta_min`.
pub fn cosine_lr(base_lr: f64, eta_min: f64, t_max: usize, epoch: usize) -> f64 {
    let t_max = t_max.max(1) as f64;
    eta_min
        + (base_lr - eta_min) * (1.0 + (std::f64::consts::PI * epoch as f64 / t_max).cos()) / 2.0
}

#[cfg(test)]
mod tests {
    use super::cosine_lr;

    #[test]
    fn cosine_schedule_endpoints() {
        assert_eq!(cosine_lr(1e-4, 1e-8, 10, 0), 1e-4);
        assert!((cosine_lr(1e-4, 1e-8, 10, 10) - 1e-8).abs() < 1e-20);
        let mid = cosine_lr(1e-4, 1e-8, 10, 5);
        assert!((mid - (1e-4 + 1e-8) / 2.0).abs() < 1e-18);
    }
}
