//! Parity with the release's PyTorch `Dual` model (fixture set B4), as unit tests: the
//! optimiser and gradients they check are crate internals: outputs, loss terms,
//! gradients, gradient norm and one AdamW step with both clipping thresholds.
//!
//! The fixture directory is `TIMEKD_PARITY_DIR` when set, else the copy committed in the
//! repository. Every size comes from `meta.json`. Errors are relative to the largest
//! magnitude of the reference tensor: max |ours − ref| / max |ref|.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::optim::{AdamW, GradientSet};
use crate::{
    Dual, DualConfig, LossConfig, NamedTensor, OptimConfig, distillation_loss, load_safetensors,
    read_safetensors, state_dict,
};
use burn::tensor::{Device, Tensor, TensorData};

fn fixture_dir() -> PathBuf {
    match std::env::var_os("TIMEKD_PARITY_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/parity"),
    }
}

struct Fixture {
    meta: serde_json::Value,
    io: BTreeMap<String, NamedTensor>,
    weights: PathBuf,
}

fn fixture() -> Fixture {
    let dir = fixture_dir();
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("meta.json")).expect("meta.json"))
            .expect("meta.json is JSON");
    Fixture {
        meta,
        io: read_safetensors(&dir.join("dual_io.safetensors")).expect("dual_io.safetensors"),
        weights: dir.join("dual_weights.safetensors"),
    }
}

impl Fixture {
    fn dual(&self, key: &str) -> &serde_json::Value {
        &self.meta["dual"][key]
    }

    fn usize(&self, key: &str) -> usize {
        self.dual(key)
            .as_u64()
            .unwrap_or_else(|| panic!("meta.dual.{key}")) as usize
    }

    fn f64(&self, path: &[&str]) -> f64 {
        let mut v = &self.meta["dual"];
        for p in path {
            v = &v[*p];
        }
        v.as_f64()
            .unwrap_or_else(|| panic!("meta.dual.{}", path.join(".")))
    }

    fn config(&self) -> DualConfig {
        DualConfig {
            input_len: self.usize("seq_len"),
            output_len: self.usize("pred_len"),
            channel: self.usize("channel"),
            heads: self.usize("head"),
            layers: self.usize("e_layer"),
            d_llm: self.usize("d_llm"),
            d_ff: self.usize("d_ff"),
            dropout: 0.0,
        }
    }

    fn loss_config(&self) -> LossConfig {
        LossConfig {
            forecast_weight: self.f64(&["loss", "fcst_w"]),
            recon_weight: self.f64(&["loss", "recon_w"]),
            feature_weight: self.f64(&["loss", "feature_w"]),
            att_weight: self.f64(&["loss", "att_w"]),
            ..LossConfig::default()
        }
    }

    fn optim_config(&self, clip: f64) -> OptimConfig {
        let betas = &self.meta["dual"]["optimizer"]["betas"];
        OptimConfig {
            lr: self.f64(&["optimizer", "lr"]),
            weight_decay: self.f64(&["optimizer", "weight_decay"]),
            beta1: betas[0].as_f64().expect("beta1"),
            beta2: betas[1].as_f64().expect("beta2"),
            eps: self.f64(&["optimizer", "eps"]),
            clip_grad_norm: Some(clip),
        }
    }

    fn tensor(&self, name: &str) -> &NamedTensor {
        self.io
            .get(name)
            .unwrap_or_else(|| panic!("dual_io.safetensors lacks {name}"))
    }

    fn input(&self, name: &str, device: &Device) -> Tensor<3> {
        let t = self.tensor(name);
        let shape: [usize; 3] = t.shape.clone().try_into().expect("3-D input");
        Tensor::from_data(TensorData::new(t.data.clone(), shape), device)
    }
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.try_into_vec_as::<f32>().expect("f32 data")
}

/// max |a − b| / max |b|, and max |a − b|.
fn errors(ours: &[f32], reference: &[f32]) -> (f64, f64) {
    assert_eq!(ours.len(), reference.len(), "length mismatch");
    let abs = ours
        .iter()
        .zip(reference)
        .map(|(a, b)| (f64::from(*a) - f64::from(*b)).abs())
        .fold(0.0, f64::max);
    let scale = reference
        .iter()
        .map(|v| f64::from(v.abs()))
        .fold(0.0, f64::max);
    (if scale > 0.0 { abs / scale } else { abs }, abs)
}

/// Checks `ours` against `reference` with a relative tolerance and logs the error.
fn check(label: &str, ours: &[f32], reference: &[f32], rel_tol: f64) -> f64 {
    let (rel, abs) = errors(ours, reference);
    eprintln!("parity {label:<70} rel {rel:.3e}  abs {abs:.3e}");
    assert!(
        rel <= rel_tol,
        "{label}: relative error {rel:.3e} > {rel_tol:.0e}"
    );
    rel
}

fn check_scalar(label: &str, ours: f64, reference: f64, rel_tol: f64) {
    let rel = (ours - reference).abs() / reference.abs();
    eprintln!("parity {label:<70} rel {rel:.3e}  ours {ours:.9} ref {reference:.9}");
    assert!(
        rel <= rel_tol,
        "{label}: relative error {rel:.3e} > {rel_tol:.0e}"
    );
}

fn is_key_bias(name: &str) -> bool {
    name.ends_with("key_projection.bias")
}

/// Model with the fixture weights on a CPU autodiff device, eval mode (no dropout).
fn model(f: &Fixture, device: &Device) -> Dual {
    let model = Dual::init(&f.config(), 0, device).expect("config");
    load_safetensors(model, &f.weights).expect("dual_weights.safetensors loads")
}

struct Pass {
    model: Dual,
    grads: GradientSet,
}

fn forward_backward(f: &Fixture, device: &Device) -> Pass {
    let model = model(f, device);
    let x = f.input("x", device);
    let emb = f.input("emb", device);
    let y = f.input("y", device);
    let out = model.forward(x, emb);
    let loss = distillation_loss(&f.loss_config(), &out, y);
    let backward = loss.total.backward();
    let grads = GradientSet::from_backward(&model, &backward);
    Pass { model, grads }
}

#[test]
fn forward_outputs_and_losses_match_the_release() {
    let f = fixture();
    let device = Device::flex().autodiff();
    let model = model(&f, &device);
    let out = model.forward(f.input("x", &device), f.input("emb", &device));
    for (label, ours) in [
        ("ts_out", out.ts_out.clone()),
        ("prompt_out", out.prompt_out.clone()),
        ("ts_enc", out.ts_enc.clone()),
        ("prompt_enc", out.prompt_enc.clone()),
        ("ts_att_avg", out.ts_att.clone()),
        ("prompt_att_avg", out.prompt_att.clone()),
    ] {
        let reference = f.tensor(label);
        assert_eq!(ours.dims().to_vec(), reference.shape, "{label} shape");
        check(label, &host(ours), &reference.data, 1e-5);
    }
    let [values] = <[_; 1]>::try_from(
        distillation_loss(&f.loss_config(), &out, f.input("y", &device))
            .values()
            .expect("loss values"),
    )
    .expect("one run");
    for (label, ours) in [
        ("loss_total", values.total),
        ("loss_fcst", values.forecast),
        ("loss_recon", values.recon),
        ("loss_feature", values.feature),
        ("loss_att", values.att),
    ] {
        check_scalar(label, ours, f.f64(&["scalars_f64", label]), 1e-5);
    }
}

#[test]
fn weights_round_trip_through_the_state_dict() {
    let f = fixture();
    let device = Device::flex();
    let ours = state_dict(&model(&f, &device)).expect("state dict");
    let reference = read_safetensors(&f.weights).expect("weights");
    assert_eq!(ours.len(), reference.len());
    for t in ours {
        assert_eq!(reference[&t.name], t, "{} round trip", t.name);
    }
}

#[test]
fn gradients_and_grad_norm_match_the_release() {
    let f = fixture();
    let device = Device::flex().autodiff();
    let pass = forward_backward(&f, &device);
    let grads = pass.grads.to_torch().expect("gradients");
    let expected = f.io.keys().filter(|k| k.starts_with("grad.")).count();
    assert_eq!(grads.len(), expected, "one gradient per parameter");
    let mut worst: f64 = 0.0;
    for g in &grads {
        let reference = f.tensor(&format!("grad.{}", g.name));
        assert_eq!(g.shape, reference.shape, "{} shape", g.name);
        if is_key_bias(&g.name) {
            // Analytically zero: softmax ignores a per-row constant. Absolute tolerance.
            let (_, abs) = errors(&g.data, &reference.data);
            eprintln!(
                "parity grad.{:<65} abs {abs:.3e} (analytically zero)",
                g.name
            );
            assert!(abs <= 1e-6, "grad.{}: {abs:.3e} is not ~0", g.name);
        } else {
            worst = worst.max(check(
                &format!("grad.{}", g.name),
                &g.data,
                &reference.data,
                1e-4,
            ));
        }
    }
    eprintln!("parity worst gradient relative error {worst:.3e}");
    let norm = pass.grads.norms().expect("norm")[0];
    check_scalar(
        "grad_norm_before_clip",
        norm,
        f.f64(&["scalars_f64", "grad_norm_before_clip"]),
        1e-5,
    );
}

/// One clipped AdamW step from our own gradients.
fn step(f: &Fixture, clip: f64) -> (Vec<NamedTensor>, Vec<NamedTensor>) {
    let device = Device::flex().autodiff();
    let Pass { model, mut grads } = forward_backward(f, &device);
    let config = f.optim_config(clip);
    grads.clip_norm(clip).expect("clip");
    let clipped = grads.to_torch().expect("clipped gradients");
    let mut adamw = AdamW::new(config.clone());
    let model = adamw.step(model, grads, config.lr).expect("step");
    (clipped, state_dict(&model).expect("state dict"))
}

#[test]
fn one_adamw_step_matches_the_release_with_clip_5() {
    let f = fixture();
    let lr = f.f64(&["optimizer", "lr"]);
    let (_, after) = step(&f, f.f64(&["optimizer", "clip_grad_norm"]));
    for p in &after {
        let reference = f.tensor(&format!("after_step.{}", p.name));
        if is_key_bias(&p.name) {
            // The first Adam step is ±lr·g/(|g|+eps): for a gradient that is rounding noise
            // its size is noise too, so only the bound |Δ| ≤ lr can be checked.
            let (_, abs) = errors(&p.data, &reference.data);
            eprintln!(
                "parity after_step.{:<59} abs {abs:.3e} (≤ lr: noise gradient)",
                p.name
            );
            assert!(abs <= lr * 1.01, "after_step.{}: {abs:.3e} > lr", p.name);
        } else {
            check(
                &format!("after_step.{}", p.name),
                &p.data,
                &reference.data,
                1e-5,
            );
        }
    }
}

#[test]
fn clipping_at_0_1_matches_the_release() {
    let f = fixture();
    let (clipped, after) = step(&f, 0.1);
    let mut checked = 0;
    for (prefix, tensors, tol) in [
        ("clip0p1.clipped_grad.", &clipped, 1e-4),
        ("clip0p1.after_step.", &after, 1e-5),
    ] {
        for t in tensors.iter() {
            if let Some(reference) = f.io.get(&format!("{prefix}{}", t.name)) {
                check(
                    &format!("{prefix}{}", t.name),
                    &t.data,
                    &reference.data,
                    tol,
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 2, "the fixture holds clip0p1 tensors");
}
