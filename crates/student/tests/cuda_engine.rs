//! The student's CUDA engine against the Burn trainer (feature `cuda`; ignored unless run
//! with `--ignored` on a machine with an NVIDIA GPU): the same runs on ETTh1, Burn on the
//! CPU (f32) as the reference.
//!
//! - dropout 0: the engine's loss curve (every term of train and validation, and the mean
//!   gradient norm, per epoch) and the final model's test forecasts equal Burn's to 1e-4
//!   relative, at small widths and at the paper's (channel 64, d_ff 3072, d_llm 768);
//! - dropout 0.5 (the engine draws its own masks): the same seed gives the same curve bit
//!   for bit, runs packed give each run's curve alone bit for bit, and the first epoch's
//!   train loss is within 10% of Burn's;
//! - a run stopped part way through an epoch and resumed ends where an uninterrupted one
//!   does, bit for bit.
#![cfg(feature = "cuda")]

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::Device;
use timekd_data::{Dataset, DatasetOptions, Preset, SplitKind};
use timekd_student::{
    DataInfo, DualConfig, InMemoryEmbeddings, RunDir, SplitData, TrainConfig, TrainData,
    TrainSummary, Trainer, load_checkpoint, predict,
};

/// Rows of ETTh1 the runs read.
const ROWS: usize = 1200;

fn dataset(input_len: usize, output_len: usize) -> Dataset {
    let csv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/ETTh1.csv");
    let text = std::fs::read_to_string(&csv).expect("datasets/ETTh1.csv");
    let head: String = text
        .lines()
        .take(ROWS + 1)
        .flat_map(|l| [l, "\n"])
        .collect();
    let options = DatasetOptions {
        preset: Some(Preset::Custom),
        input_len,
        output_len,
        ..DatasetOptions::default()
    };
    Dataset::from_csv_bytes(head.as_bytes(), Path::new("ETTh1-head.csv"), &options)
        .expect("ETTh1 head loads")
}

/// A small student, or the paper's widths.
fn config(paper: bool, dropout: f64, seed: u64) -> TrainConfig {
    let model = match paper {
        true => DualConfig {
            output_len: 24,
            dropout,
            ..DualConfig::default()
        },
        false => DualConfig {
            input_len: 48,
            output_len: 12,
            channel: 16,
            heads: 4,
            layers: 2,
            d_llm: 32,
            d_ff: 64,
            dropout,
        },
    };
    TrainConfig {
        model,
        epochs: 2,
        batch_size: 16,
        accumulate: 1,
        seed,
        ..TrainConfig::default()
    }
}

/// Trains the runs of `configs` (packed when several) into `dir`/seed-<seed>, with the
/// engine on GPU 0 or with Burn on the CPU; `stop_after` sets the stop flag after that
/// many steps.
fn train(
    configs: &[TrainConfig],
    dir: &Path,
    engine: bool,
    resume: bool,
    stop_after: Option<usize>,
) -> Vec<TrainSummary> {
    let model = &configs[0].model;
    let data = dataset(model.input_len, model.output_len);
    let mut emb: Vec<InMemoryEmbeddings> = [SplitKind::Train, SplitKind::Val]
        .into_iter()
        .map(|kind| {
            let windows = data.split(kind).num_windows();
            InMemoryEmbeddings::random(windows, data.n_vars(), model.d_llm, kind as u64 + 11)
        })
        .collect();
    let [train_emb, val_emb] = &mut emb[..] else {
        unreachable!()
    };
    let runs: Vec<RunDir> = configs
        .iter()
        .map(|c| RunDir::new(dir.join(format!("seed-{}", c.seed))))
        .collect();
    let mut trainer = Trainer::new(&configs[0], &runs[0]);
    for (c, run) in configs[1..].iter().zip(&runs[1..]) {
        trainer = trainer.and_run(c, run);
    }
    let stop = AtomicBool::new(false);
    let mut steps = 0;
    let mut on_step = |_: &timekd_student::TrainStep| {
        steps += 1;
        if stop_after == Some(steps) {
            stop.store(true, Ordering::Relaxed);
        }
    };
    trainer
        .devices(&[Device::flex()])
        .cuda_engine(engine.then_some(0))
        .resume(resume)
        .stop_on(&stop)
        .on_step(&mut on_step)
        .on_epoch(&mut |_, _| ControlFlow::Continue(()))
        .train_all(TrainData {
            info: DataInfo::of("ETTh1-head", &data),
            train: SplitData {
                split: data.split(SplitKind::Train),
                embeddings: train_emb,
            },
            val: SplitData {
                split: data.split(SplitKind::Val),
                embeddings: val_emb,
            },
            test: Some(data.split(SplitKind::Test)),
        })
        .expect("training runs")
}

/// Every number of a loss curve: per epoch, each term of train and val and the mean
/// gradient norm.
fn curve(summary: &TrainSummary) -> Vec<f64> {
    summary
        .history
        .iter()
        .flat_map(|m| {
            let (t, v) = (m.train, m.val);
            [
                t.total,
                t.forecast,
                t.recon,
                t.feature,
                t.att,
                v.total,
                v.forecast,
                v.recon,
                v.feature,
                v.att,
                m.grad_norm,
            ]
        })
        .collect()
}

/// The last checkpoint's forecasts of the test split.
fn forecasts(dir: &Path, config: &TrainConfig) -> Vec<f32> {
    let device = Device::flex();
    let run = RunDir::new(dir.join(format!("seed-{}", config.seed)));
    let model = load_checkpoint(&run.last(), &device)
        .expect("checkpoint")
        .model;
    let data = dataset(config.model.input_len, config.model.output_len);
    let p = predict(
        &model,
        &data.split(SplitKind::Test),
        16,
        false,
        false,
        &device,
    )
    .expect("forecasts");
    p.scaled.pred
}

fn max_relative(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / x.abs().max(y.abs()).max(1e-12))
        .fold(0.0, f64::max)
}

fn relative_l2(a: &[f32], b: &[f32]) -> f64 {
    let diff: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
    let norm: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum();
    (diff / norm).sqrt()
}

fn without_dropout_matches_burn(paper: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = config(paper, 0.0, 2024);
    let burn = train(
        std::slice::from_ref(&c),
        &dir.path().join("burn"),
        false,
        false,
        None,
    );
    let gpu = train(
        std::slice::from_ref(&c),
        &dir.path().join("gpu"),
        true,
        false,
        None,
    );
    let (b, g) = (curve(&burn[0]), curve(&gpu[0]));
    let err = max_relative(&g, &b);
    println!(
        "paper widths {paper}: loss curve max relative difference {err:.2e}\n burn {b:?}\n gpu  {g:?}"
    );
    assert!(err <= 1e-4, "loss curves differ by {err:.2e}");
    let f = relative_l2(
        &forecasts(&dir.path().join("gpu"), &c),
        &forecasts(&dir.path().join("burn"), &c),
    );
    println!("paper widths {paper}: test forecasts relative L2 {f:.2e}");
    assert!(f <= 1e-4, "forecasts differ by {f:.2e}");
}

#[test]
#[ignore = "needs an NVIDIA GPU"]
fn without_dropout_the_engine_trains_as_burn_does() {
    without_dropout_matches_burn(false);
}

#[test]
#[ignore = "needs an NVIDIA GPU"]
fn without_dropout_the_engine_trains_as_burn_does_at_the_papers_widths() {
    without_dropout_matches_burn(true);
}

#[test]
#[ignore = "needs an NVIDIA GPU"]
fn with_dropout_runs_are_reproducible_packed_resumed_and_close_to_burn() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seeds = [2024, 6666, 8888];
    let configs: Vec<TrainConfig> = seeds.iter().map(|&s| config(false, 0.5, s)).collect();
    let alone = train(&configs[..1], &dir.path().join("a"), true, false, None);
    let again = train(&configs[..1], &dir.path().join("b"), true, false, None);
    assert_eq!(curve(&alone[0]), curve(&again[0]), "same seed, same curve");
    let packed = train(&configs, &dir.path().join("p"), true, false, None);
    assert_eq!(curve(&packed[0]), curve(&alone[0]), "packed equals alone");
    assert_ne!(
        curve(&packed[1]),
        curve(&alone[0]),
        "another seed, another curve"
    );
    // Stopped after 5 steps of the first epoch, then resumed.
    let stopped_dir = dir.path().join("s");
    let stopped = train(&configs[..1], &stopped_dir, true, false, Some(5));
    assert!(stopped[0].interrupted);
    let resumed = train(&configs[..1], &stopped_dir, true, true, None);
    assert_eq!(
        curve(&resumed[0]),
        curve(&alone[0]),
        "resumed equals uninterrupted"
    );
    let burn = train(&configs[..1], &dir.path().join("burn"), false, false, None);
    let (g, b) = (
        alone[0].history[0].train.total,
        burn[0].history[0].train.total,
    );
    println!("dropout 0.5, first epoch train loss: engine {g:.5}, Burn {b:.5}");
    assert!((g - b).abs() / b <= 0.1, "engine {g} against Burn {b}");
}
