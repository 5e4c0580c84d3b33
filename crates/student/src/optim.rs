//! Gradients, global-norm clipping and AdamW with PyTorch's exact update rule.
//!
//! Burn's own `AdamW` computes the same formula but keeps its bias corrections in f32 and
//! its state in Burn's record format; this implementation evaluates the scalar factors in
//! f64 as PyTorch does and exposes its moments as named tensors, so a checkpoint can store
//! them and a resumed run continues bit for bit.

use std::collections::BTreeMap;

use burn::tensor::{Device, Gradients, Tensor, TensorData};

use crate::config::OptimConfig;
use crate::error::{Result, StudentError};
use crate::flat::{ALIGN, FlatLayout, Source, flatten};
use crate::model::Dual;
use crate::state_dict::{NamedTensor, tensor_to_vec, to_torch};

/// The gradient of every parameter, as one flat tensor `[runs, len]` (see the `flat`
/// module): clipping and accumulation are a few kernels whatever the number of parameters,
/// and each run of a pack is clipped by its own norm.
#[derive(Debug, Clone, Default)]
pub struct GradientSet {
    flat: Option<(FlatLayout, Tensor<2>)>,
}

impl GradientSet {
    /// Collects the gradients of every parameter of `model` from a backward pass (zero for
    /// a parameter outside the loss's graph).
    pub fn from_backward(model: &Dual, grads: &Gradients) -> GradientSet {
        GradientSet {
            flat: flatten(model, Source::Gradients(grads)),
        }
    }

    /// Adds another micro-batch's gradients (gradient accumulation).
    pub fn accumulate(&mut self, other: GradientSet) {
        self.flat = match (self.flat.take(), other.flat) {
            (Some((layout, mine)), Some((other_layout, theirs))) => {
                debug_assert_eq!(layout, other_layout, "gradients of different models");
                Some((layout, mine + theirs))
            }
            (mine, theirs) => mine.or(theirs),
        };
    }

    /// The gradients moved to `device` (data-parallel replicas report to the main device).
    pub fn into_device(self, device: &Device) -> GradientSet {
        GradientSet {
            flat: self
                .flat
                .map(|(layout, grad)| (layout, grad.to_device(device))),
        }
    }

    /// Global L2 norm over all gradients of each run.
    pub fn norms(&self) -> Result<Vec<f64>> {
        match self.norm_tensor() {
            Some(norm) => Ok(tensor_to_vec(norm)?.into_iter().map(f64::from).collect()),
            None => Ok(Vec::new()),
        }
    }

    /// Each run's global L2 norm as a `[runs, 1]` tensor on the gradients' device (no host
    /// transfer); `None` without gradients.
    pub fn norm_tensor(&self) -> Option<Tensor<2>> {
        let (_, grad) = self.flat.as_ref()?;
        let [runs, len] = grad.dims();
        // Squares summed per aligned block first, then the blocks' sums: one f32 sum over
        // the student's 1.7M squares loses the small terms (1.5e-3 low on the CPU against
        // an f64 sum; 1e-6 this way).
        let blocks = grad
            .clone()
            .square()
            .reshape([runs, len / ALIGN, ALIGN])
            .sum_dim(2)
            .reshape([runs, len / ALIGN]);
        Some(
            crate::pack::run_sums(blocks, runs)
                .sqrt()
                .reshape([runs, 1]),
        )
    }

    /// PyTorch's `clip_grad_norm_`, per run: scales a run's gradients by
    /// `max_norm / (norm + 1e-6)` when that is below 1. Returns the norms before clipping.
    pub fn clip_norm(&mut self, max_norm: f64) -> Result<Vec<f64>> {
        let norms = self.norms()?;
        let coefs: Vec<f32> = norms
            .iter()
            .map(|norm| (max_norm / (norm + 1e-6)).min(1.0) as f32)
            .collect();
        if coefs.iter().any(|&c| c < 1.0)
            && let Some((_, grad)) = self.flat.as_mut()
        {
            let coefs = Tensor::from_data(TensorData::new(coefs, [norms.len(), 1]), &grad.device());
            *grad = grad.clone() * coefs;
        }
        Ok(norms)
    }

    /// [`clip_norm`](Self::clip_norm) computed on the device, without waiting for the norms:
    /// each run's gradients are multiplied by `min(1, max_norm / (norm + 1e-6))`. Returns the
    /// norms as a `[runs, 1]` tensor (`None` without gradients).
    pub fn clip_norm_on_device(&mut self, max_norm: f64) -> Option<Tensor<2>> {
        let norm = self.norm_tensor()?;
        let coef = (norm.clone().add_scalar(1e-6).recip() * max_norm).clamp_max(1.0);
        if let Some((_, grad)) = self.flat.as_mut() {
            *grad = grad.clone() * coef;
        }
        Some(norm)
    }

    /// Every gradient of a one-run model in the PyTorch layout of its parameter (names as
    /// in the state dict).
    pub fn to_torch(&self) -> Result<Vec<NamedTensor>> {
        let Some((layout, grad)) = &self.flat else {
            return Ok(Vec::new());
        };
        if grad.dims()[0] != 1 {
            return Err(one_run_only("gradients"));
        }
        let host = tensor_to_vec(grad.clone())?;
        let mut out: Vec<NamedTensor> = layout
            .split(&host)
            .flat_map(|(segment, part)| to_torch(&segment.name, &segment.dims, part))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

/// The error of asking a pack of runs for what only one run has (a named state).
fn one_run_only(what: &str) -> StudentError {
    StudentError::Config(format!(
        "{what} of a pack of runs have no single named form; unpack the runs first"
    ))
}

/// First and second moments per parameter name, on the host.
type NamedMoments = BTreeMap<String, (Vec<f32>, Vec<f32>)>;

/// First and second moments of every parameter as flat device tensors `[runs, len]`.
#[derive(Debug, Clone)]
struct FlatMoments {
    layout: FlatLayout,
    exp_avg: Tensor<2>,
    exp_avg_sq: Tensor<2>,
}

/// First and second moments of every parameter.
#[derive(Debug, Clone)]
enum Moments {
    /// On the host, per run: a fresh optimiser (no state) or one restored from a checkpoint,
    /// before its first step tells the flat layout.
    Host(Vec<NamedMoments>),
    /// On the device, after a step.
    Flat(Box<FlatMoments>),
}

impl Moments {
    /// Runs these moments belong to.
    fn runs(&self) -> usize {
        match self {
            Moments::Host(runs) => runs.len(),
            Moments::Flat(flat) => flat.exp_avg.dims()[0],
        }
    }

    /// Per run, per parameter name on the host (reads the device tensors).
    fn to_host(&self) -> Result<Vec<NamedMoments>> {
        let FlatMoments {
            layout,
            exp_avg,
            exp_avg_sq,
        } = match self {
            Moments::Host(named) => return Ok(named.clone()),
            Moments::Flat(flat) => flat.as_ref(),
        };
        let [runs, len] = exp_avg.dims();
        let m = tensor_to_vec(exp_avg.clone())?;
        let v = tensor_to_vec(exp_avg_sq.clone())?;
        Ok((0..runs)
            .map(|r| {
                let row = r * len..(r + 1) * len;
                layout
                    .split(&m[row.clone()])
                    .zip(layout.split(&v[row]))
                    .map(|((segment, m), (_, v))| (segment.name.clone(), (m.to_vec(), v.to_vec())))
                    .collect()
            })
            .collect())
    }

    /// The flat moments of `runs` runs in `layout` on `device` (zero for parameters without
    /// state).
    fn into_flat(
        self,
        layout: &FlatLayout,
        runs: usize,
        device: &Device,
    ) -> Result<(Tensor<2>, Tensor<2>)> {
        let named = match self {
            Moments::Flat(flat) if flat.layout == *layout && flat.exp_avg.dims()[0] == runs => {
                return Ok((flat.exp_avg, flat.exp_avg_sq));
            }
            other => other.to_host()?,
        };
        if named.len() != runs {
            return Err(StudentError::Config(format!(
                "optimizer state of {} runs for a model of {runs}",
                named.len()
            )));
        }
        let assemble = |second: bool| -> Result<Tensor<2>> {
            let rows = named
                .iter()
                .map(|run| {
                    layout
                        .assemble(
                            |name| {
                                run.get(name)
                                    .map(|(m, v)| if second { &v[..] } else { &m[..] })
                            },
                            device,
                        )
                        .map_err(|e| StudentError::Config(format!("optimizer state: {e}")))
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Tensor::cat(rows, 0))
        };
        Ok((assemble(false)?, assemble(true)?))
    }
}

/// AdamW with decoupled weight decay, as `torch.optim.AdamW` (amsgrad off), over the flat
/// parameter vector: a step is about twenty kernels plus one copy per parameter.
#[derive(Debug, Clone)]
pub struct AdamW {
    config: OptimConfig,
    step: u64,
    moments: Moments,
}

impl AdamW {
    /// A fresh optimiser for one run (step 0, zero moments).
    pub fn new(config: OptimConfig) -> AdamW {
        AdamW {
            config,
            step: 0,
            moments: Moments::Host(vec![BTreeMap::new()]),
        }
    }

    /// One optimiser for a pack of runs (see [`Dual::pack`]), in pack order. The runs must
    /// have taken the same number of steps with the same settings.
    pub fn pack(optimizers: Vec<AdamW>) -> Result<AdamW> {
        let first = optimizers
            .first()
            .ok_or_else(|| StudentError::Config("no optimizer to pack".into()))?;
        let (config, step) = (first.config.clone(), first.step);
        if optimizers
            .iter()
            .any(|o| o.config != config || o.step != step)
        {
            return Err(StudentError::Config(
                "only optimizers at the same step with the same settings pack together".into(),
            ));
        }
        let flat_layouts: Option<Vec<&FlatLayout>> = optimizers
            .iter()
            .map(|o| match &o.moments {
                Moments::Flat(flat) => Some(&flat.layout),
                Moments::Host(_) => None,
            })
            .collect();
        let moments = match flat_layouts {
            Some(layouts) if layouts.iter().all(|l| *l == layouts[0]) => {
                let layout = layouts[0].clone();
                let (m, v): (Vec<_>, Vec<_>) = optimizers
                    .into_iter()
                    .map(|o| match o.moments {
                        Moments::Flat(flat) => (flat.exp_avg, flat.exp_avg_sq),
                        Moments::Host(_) => unreachable!("checked above"),
                    })
                    .unzip();
                Moments::Flat(Box::new(FlatMoments {
                    layout,
                    exp_avg: Tensor::cat(m, 0),
                    exp_avg_sq: Tensor::cat(v, 0),
                }))
            }
            _ => {
                let mut named = Vec::new();
                for o in &optimizers {
                    named.extend(o.moments.to_host()?);
                }
                Moments::Host(named)
            }
        };
        Ok(AdamW {
            config,
            step,
            moments,
        })
    }

    /// The optimiser of each run of a pack, in pack order.
    pub fn unpack(self) -> Vec<AdamW> {
        let runs = self.moments.runs();
        let one = |moments| AdamW {
            config: self.config.clone(),
            step: self.step,
            moments,
        };
        match self.moments.clone() {
            Moments::Host(named) => named
                .into_iter()
                .map(|run| one(Moments::Host(vec![run])))
                .collect(),
            Moments::Flat(flat) => (0..runs)
                .map(|r| {
                    one(Moments::Flat(Box::new(FlatMoments {
                        layout: flat.layout.clone(),
                        exp_avg: flat.exp_avg.clone().narrow(0, r, 1),
                        exp_avg_sq: flat.exp_avg_sq.clone().narrow(0, r, 1),
                    })))
                })
                .collect(),
        }
    }

    /// Number of steps taken.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// One AdamW step at learning rate `lr` with the given (already clipped) gradients.
    pub fn step(&mut self, model: Dual, grads: GradientSet, lr: f64) -> Result<Dual> {
        self.step_tracked(model, &mut None, grads, lr)
    }

    /// [`step`](Self::step) for a training loop: `params` carries the flat parameter vector
    /// from one step to the next, so it is not gathered from the model's tensors again. It
    /// must be `None` or what the previous call left for the model that call returned.
    pub(crate) fn step_tracked(
        &mut self,
        model: Dual,
        params: &mut Option<(FlatLayout, Tensor<2>)>,
        grads: GradientSet,
        lr: f64,
    ) -> Result<Dual> {
        self.step += 1;
        let Some((layout, grad)) = grads.flat else {
            return Ok(model);
        };
        let Some((param_layout, p)) = params.take().or_else(|| flatten(&model, Source::Values))
        else {
            return Ok(model);
        };
        if param_layout != layout {
            return Err(StudentError::Config(
                "AdamW: the gradients belong to a model of another shape".into(),
            ));
        }
        let moments = std::mem::replace(&mut self.moments, Moments::Host(Vec::new()));
        let (m, v) = moments.into_flat(&layout, grad.dims()[0], &grad.device())?;
        let c = &self.config;
        // p ← p·(1 − lr·wd); m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²
        let p = p.mul_scalar(1.0 - lr * c.weight_decay);
        let exp_avg = m.mul_scalar(c.beta1) + grad.clone().mul_scalar(1.0 - c.beta1);
        let exp_avg_sq = v.mul_scalar(c.beta2) + grad.square().mul_scalar(1.0 - c.beta2);
        // p ← p − lr/bc1 · m / (sqrt(v)/sqrt(bc2) + eps)
        let bc1 = 1.0 - c.beta1.powi(self.step as i32);
        let bc2 = 1.0 - c.beta2.powi(self.step as i32);
        let denom = exp_avg_sq
            .clone()
            .sqrt()
            .div_scalar(bc2.sqrt())
            .add_scalar(c.eps);
        let p = p - (exp_avg.clone() / denom).mul_scalar(lr / bc1);
        let model = layout.unflatten(model, &p);
        *params = Some((layout.clone(), p));
        self.moments = Moments::Flat(Box::new(FlatMoments {
            layout,
            exp_avg,
            exp_avg_sq,
        }));
        Ok(model)
    }

    /// A one-run optimiser's moments as host rows in `layout` (zero for parameters without
    /// state): (exp_avg, exp_avg_sq), for an engine that keeps them itself.
    #[cfg(feature = "cuda")]
    pub(crate) fn host_rows(&self, layout: &FlatLayout) -> Result<(Vec<f32>, Vec<f32>)> {
        let Ok([named]) = <[NamedMoments; 1]>::try_from(self.moments.to_host()?) else {
            return Err(one_run_only("optimizer moments"));
        };
        let row = |second: bool| {
            layout
                .assemble_host(|name| {
                    named
                        .get(name)
                        .map(|(m, v)| if second { &v[..] } else { &m[..] })
                })
                .map_err(|e| StudentError::Config(format!("optimizer state: {e}")))
        };
        Ok((row(false)?, row(true)?))
    }

    /// This optimiser's settings with the state an engine kept: `steps` taken and the
    /// moments as rows `[1, len]` in `layout`, on `device`.
    #[cfg(feature = "cuda")]
    pub(crate) fn with_rows(
        &self,
        steps: u64,
        layout: &FlatLayout,
        (exp_avg, exp_avg_sq): (Vec<f32>, Vec<f32>),
        device: &Device,
    ) -> AdamW {
        let row = |v: Vec<f32>| Tensor::from_data(TensorData::new(v, [1, layout.len()]), device);
        AdamW {
            config: self.config.clone(),
            step: steps,
            moments: Moments::Flat(Box::new(FlatMoments {
                layout: layout.clone(),
                exp_avg: row(exp_avg),
                exp_avg_sq: row(exp_avg_sq),
            })),
        }
    }

    /// The moments of a one-run optimiser as flat named tensors (`exp_avg.<path>`,
    /// `exp_avg_sq.<path>`).
    pub fn state_tensors(&self) -> Result<Vec<NamedTensor>> {
        let Ok([named]) = <[NamedMoments; 1]>::try_from(self.moments.to_host()?) else {
            return Err(one_run_only("optimizer moments"));
        };
        let mut out = Vec::with_capacity(named.len() * 2);
        for (path, (m, v)) in named {
            for (prefix, data) in [("exp_avg", m), ("exp_avg_sq", v)] {
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
    /// The moments move to the device with the first step.
    pub fn from_state(
        config: OptimConfig,
        step: u64,
        tensors: &BTreeMap<String, NamedTensor>,
    ) -> Result<AdamW> {
        let mut moments = BTreeMap::new();
        for (name, t) in tensors {
            let Some(path) = name.strip_prefix("exp_avg.") else {
                continue;
            };
            let sq = tensors.get(&format!("exp_avg_sq.{path}")).ok_or_else(|| {
                StudentError::Config(format!("optimizer state lacks exp_avg_sq.{path}"))
            })?;
            if sq.data.len() != t.data.len() {
                return Err(StudentError::Config(format!(
                    "optimizer state: exp_avg.{path} has {} values, exp_avg_sq.{path} {}",
                    t.data.len(),
                    sq.data.len()
                )));
            }
            moments.insert(path.to_string(), (t.data.clone(), sq.data.clone()));
        }
        Ok(AdamW {
            config,
            step,
            moments: Moments::Host(vec![moments]),
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
    use super::*;
    use crate::config::DualConfig;

    #[test]
    fn restored_moments_of_the_wrong_size_are_an_error_not_a_panic() {
        let device = Device::flex().autodiff();
        let model = Dual::init(&DualConfig::default(), 3, &device).expect("model");
        let x = Tensor::<3>::ones([2, 96, 7], &device);
        let emb = Tensor::<3>::ones([2, 7, 768], &device);
        let grads = model.forward(x, emb).ts_out.sum().backward();
        let grads = GradientSet::from_backward(&model, &grads);
        let name = "projection.bias";
        let tensors: BTreeMap<String, NamedTensor> = ["exp_avg", "exp_avg_sq"]
            .into_iter()
            .map(|prefix| {
                let t = NamedTensor {
                    name: format!("{prefix}.{name}"),
                    shape: vec![3],
                    data: vec![0.0; 3],
                };
                (t.name.clone(), t)
            })
            .collect();
        let mut adamw = AdamW::from_state(OptimConfig::default(), 7, &tensors).expect("state");
        let err = adamw.step(model, grads, 1e-4).expect_err("wrong size");
        assert!(err.to_string().contains(name), "{err}");
    }

    #[test]
    fn cosine_schedule_endpoints() {
        assert_eq!(cosine_lr(1e-4, 1e-8, 10, 0), 1e-4);
        assert!((cosine_lr(1e-4, 1e-8, 10, 10) - 1e-8).abs() < 1e-20);
        let mid = cosine_lr(1e-4, 1e-8, 10, 5);
        assert!((mid - (1e-4 + 1e-8) / 2.0).abs() < 1e-18);
    }
}
