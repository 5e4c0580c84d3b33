//! Training behaviour on a small real setting: the first rows of ETTh1 (custom 70/10/20
//! splits) with seeded random embeddings standing in for the teacher.
//!
//! One test reads the process's resident memory, so the tests of this file take turns
//! through one lock (runs on threads inside a test are another matter: see
//! `runs_trained_at_once_on_threads_reach_the_weights_they_reach_alone`).

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Mutex;

use burn::tensor::Device;
use timekd_data::{Dataset, DatasetOptions, Features, Frame, Preset, SplitKind};
use timekd_student::{
    DataInfo, DualConfig, EpochMetrics, Forecaster, InMemoryEmbeddings, OptimConfig, Origins,
    RunDir, Selection, SplitData, TestOptions, TrainConfig, TrainData, TrainSummary, Trainer,
    evaluate, load_checkpoint, predict, read_safetensors, test_run,
};

static TRAINING: Mutex<()> = Mutex::new(());

const ROWS: usize = 400;
const D_LLM: usize = 16;

fn dataset() -> Dataset {
    let head = head_csv();
    let options = DatasetOptions {
        preset: Some(Preset::Custom),
        input_len: 24,
        output_len: 12,
        ..DatasetOptions::default()
    };
    Dataset::from_csv_bytes(head.as_bytes(), Path::new("ETTh1-head.csv"), &options)
        .expect("ETTh1 head loads")
}

fn config(epochs: usize) -> TrainConfig {
    TrainConfig {
        model: DualConfig {
            input_len: 24,
            output_len: 12,
            channel: 8,
            heads: 2,
            layers: 1,
            d_llm: D_LLM,
            d_ff: 32,
            dropout: 0.5,
        },
        epochs,
        batch_size: 32,
        accumulate: 2,
        seed: 7,
        ..TrainConfig::default()
    }
}

fn embeddings(data: &Dataset, kind: SplitKind) -> InMemoryEmbeddings {
    let windows = data.split(kind).num_windows();
    InMemoryEmbeddings::random(windows, data.n_vars(), D_LLM, kind as u64 + 11)
}

/// Trains into `dir` (fresh or resumed) on the CPU; `on_epoch` may interrupt.
fn run(
    data: &Dataset,
    config: &TrainConfig,
    dir: &Path,
    resume: bool,
    on_epoch: &mut dyn FnMut(&EpochMetrics) -> ControlFlow<()>,
) -> TrainSummary {
    run_on(data, config, dir, resume, &[Device::flex()], on_epoch)
}

/// [`run`] data-parallel over `devices`.
fn run_on(
    data: &Dataset,
    config: &TrainConfig,
    dir: &Path,
    resume: bool,
    devices: &[Device],
    on_epoch: &mut dyn FnMut(&EpochMetrics) -> ControlFlow<()>,
) -> TrainSummary {
    try_run_on(data, config, dir, resume, devices, on_epoch).expect("training runs")
}

/// [`run_on`] returning the error instead of panicking.
fn try_run_on(
    data: &Dataset,
    config: &TrainConfig,
    dir: &Path,
    resume: bool,
    devices: &[Device],
    on_epoch: &mut dyn FnMut(&EpochMetrics) -> ControlFlow<()>,
) -> timekd_student::Result<TrainSummary> {
    let mut embeddings = split_embeddings(data);
    Trainer::new(config, &RunDir::new(dir))
        .devices(devices)
        .resume(resume)
        .on_epoch(&mut |_, m| on_epoch(m))
        .train(train_data(data, &mut embeddings))
}

/// Seeded random embeddings of the train and val splits.
fn split_embeddings(data: &Dataset) -> [InMemoryEmbeddings; 2] {
    [
        embeddings(data, SplitKind::Train),
        embeddings(data, SplitKind::Val),
    ]
}

/// The training data of `data` with the embeddings of [`split_embeddings`].
fn train_data<'a>(data: &'a Dataset, embeddings: &'a mut [InMemoryEmbeddings; 2]) -> TrainData<'a> {
    let [train, val] = embeddings;
    TrainData {
        info: DataInfo::of("ETTh1-head", data),
        train: SplitData {
            split: data.split(SplitKind::Train),
            embeddings: train,
        },
        val: SplitData {
            split: data.split(SplitKind::Val),
            embeddings: val,
        },
        test: Some(data.split(SplitKind::Test)),
    }
}

/// Loss curve without wall times.
fn curve(summary: &TrainSummary) -> Vec<(f64, f64, f64)> {
    summary
        .history
        .iter()
        .map(|m| (m.train.total, m.val.total, m.grad_norm))
        .collect()
}

fn weights(dir: &Path) -> Vec<(String, Vec<f32>)> {
    read_safetensors(&RunDir::new(dir).last().join("model.safetensors"))
        .expect("last checkpoint")
        .into_values()
        .map(|t| (t.name, t.data))
        .collect()
}

#[test]
fn same_seed_gives_the_same_loss_curve() {
    let _turn = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let data = dataset();
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let go = &mut |_: &EpochMetrics| ControlFlow::Continue(());
    let first = run(&data, &config(3), a.path(), false, go);
    let second = run(&data, &config(3), b.path(), false, go);
    assert_eq!(first.epochs_done, 3);
    assert_eq!(curve(&first), curve(&second));
    assert_eq!(weights(a.path()), weights(b.path()));
    let other_seed = TrainConfig {
        seed: 8,
        ..config(3)
    };
    let third = run(&data, &other_seed, c.path(), false, go);
    assert_ne!(curve(&first), curve(&third), "the seed must matter");
    // The loss went down and the run directory is complete.
    let losses: Vec<f64> = first.history.iter().map(|m| m.train.total).collect();
    assert!(losses[2] < losses[0], "training loss falls: {losses:?}");
    let run_dir = RunDir::new(a.path());
    let lines = std::fs::read_to_string(run_dir.metrics()).unwrap();
    assert_eq!(lines.lines().count(), 3);
    assert!(std::fs::metadata(run_dir.plot()).unwrap().len() > 1000);
    assert!(run_dir.best().join("checkpoint.json").exists());
}

#[test]
fn runs_trained_at_once_on_threads_reach_the_weights_they_reach_alone() {
    let _turn = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let data = dataset();
    let go = || |_: &EpochMetrics| ControlFlow::Continue(());
    let seeds = [5u64, 6, 7];
    let seeded = |seed| TrainConfig { seed, ..config(2) };
    let alone: Vec<tempfile::TempDir> = seeds
        .iter()
        .map(|&seed| {
            let dir = tempfile::tempdir().unwrap();
            run(&data, &seeded(seed), dir.path(), false, &mut go());
            dir
        })
        .collect();
    // Dropout masks drawn on one thread do not move another's (one generator per process).
    let together: Vec<tempfile::TempDir> = std::thread::scope(|scope| {
        let handles: Vec<_> = seeds
            .iter()
            .map(|&seed| {
                let (data, seeded, go) = (&data, &seeded, &go);
                scope.spawn(move || {
                    let dir = tempfile::tempdir().unwrap();
                    run(data, &seeded(seed), dir.path(), false, &mut go());
                    dir
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for ((seed, a), b) in seeds.iter().zip(&alone).zip(&together) {
        assert_eq!(weights(a.path()), weights(b.path()), "seed {seed}");
    }
    assert_ne!(weights(alone[0].path()), weights(alone[1].path()));
}

/// Trains `configs` (one per directory) packed into one model on the CPU.
fn train_packed(
    data: &Dataset,
    configs: &[TrainConfig],
    dirs: &[RunDir],
    resume: bool,
) -> Vec<TrainSummary> {
    let mut embeddings = split_embeddings(data);
    let mut trainer = Trainer::new(&configs[0], &dirs[0]);
    for (config, dir) in configs.iter().zip(dirs).skip(1) {
        trainer = trainer.and_run(config, dir);
    }
    trainer
        .devices(&[Device::flex()])
        .resume(resume)
        .train_all(train_data(data, &mut embeddings))
        .expect("packed training runs")
}

/// Largest difference between two runs' weights, relative to the largest weight of its
/// tensor.
fn weight_difference(a: &Path, b: &Path) -> f64 {
    let (a, b) = (weights(a), weights(b));
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(&b)
        .map(|((name, x), (other, y))| {
            assert_eq!(name, other);
            let scale = y.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
            let diff = x.iter().zip(y).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
            f64::from(diff / scale)
        })
        .fold(0.0, f64::max)
}

#[test]
fn packed_runs_reach_what_they_reach_alone_and_leave_the_pack_when_they_stop() {
    let _turn = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let data = dataset();
    let seeds = [5u64, 6, 7];
    // A high learning rate and a patience of 1 make runs stop early, after different epochs.
    let seeded = |seed| {
        let mut config = config(8);
        config.seed = seed;
        config.patience = 1;
        config.optim.lr = 5e-2;
        config
    };
    let configs: Vec<TrainConfig> = seeds.iter().map(|&s| seeded(s)).collect();
    let go = &mut |_: &EpochMetrics| ControlFlow::Continue(());
    let alone: Vec<(tempfile::TempDir, TrainSummary)> = configs
        .iter()
        .map(|config| {
            let dir = tempfile::tempdir().unwrap();
            let summary = run(&data, config, dir.path(), false, go);
            (dir, summary)
        })
        .collect();
    let ends: Vec<usize> = alone.iter().map(|(_, s)| s.epochs_done).collect();
    assert!(
        ends.iter().any(|&e| e != ends[0]),
        "the test needs runs that leave the pack at different epochs: {ends:?}"
    );
    eprintln!("alone, the runs end after {ends:?} epochs");
    let packed: Vec<tempfile::TempDir> =
        seeds.iter().map(|_| tempfile::tempdir().unwrap()).collect();
    let dirs: Vec<RunDir> = packed.iter().map(|d| RunDir::new(d.path())).collect();
    let summaries = train_packed(&data, &configs, &dirs, false);
    for (((seed, (a, alone)), b), together) in seeds.iter().zip(&alone).zip(&packed).zip(&summaries)
    {
        let difference = weight_difference(b.path(), a.path());
        eprintln!("seed {seed}: packed weights differ from alone by {difference:.1e} (relative)");
        assert!(difference <= 1e-6, "seed {seed}: {difference:.3e}");
        assert_eq!(together.epochs_done, alone.epochs_done, "seed {seed}");
        assert_eq!(together.stopped_early, alone.stopped_early, "seed {seed}");
        assert_eq!(
            together.best.map(|b| b.0),
            alone.best.map(|b| b.0),
            "seed {seed}"
        );
        for (x, y) in curve(together).iter().zip(curve(alone)) {
            for (p, q) in [(x.0, y.0), (x.1, y.1), (x.2, y.2)] {
                assert!(
                    (p - q).abs() <= 1e-6 * q.abs(),
                    "seed {seed}: {x:?} vs {y:?}"
                );
            }
        }
    }
    assert_ne!(weights(packed[0].path()), weights(packed[1].path()));

    // Runs found at different places resume: the one ahead waits until the others catch up.
    let staggered: Vec<tempfile::TempDir> =
        seeds.iter().map(|_| tempfile::tempdir().unwrap()).collect();
    let first = run(&data, &configs[0], staggered[0].path(), false, &mut |_| {
        ControlFlow::Break(())
    });
    assert_eq!(first.epochs_done, 1);
    let dirs: Vec<RunDir> = staggered.iter().map(|d| RunDir::new(d.path())).collect();
    let resumed = train_packed(&data, &configs, &dirs, true);
    for ((seed, (a, alone)), (b, together)) in
        seeds.iter().zip(&alone).zip(staggered.iter().zip(&resumed))
    {
        let difference = weight_difference(b.path(), a.path());
        assert!(
            difference <= 1e-6,
            "seed {seed} after a staggered resume: {difference:.3e}"
        );
        assert_eq!(together.epochs_done, alone.epochs_done, "seed {seed}");
    }
}

#[test]
fn runs_that_cannot_pack_are_refused_with_the_reason() {
    let data = dataset();
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let runs: Vec<RunDir> = dirs.iter().map(|d| RunDir::new(d.path())).collect();
    let first = config(1);
    let mut other_lr = TrainConfig {
        seed: 8,
        ..config(1)
    };
    other_lr.optim.lr *= 2.0;
    let other_seed = TrainConfig {
        seed: 8,
        ..config(1)
    };
    let attempt = |second: &TrainConfig, devices: &[Device]| {
        let mut embeddings = split_embeddings(&data);
        Trainer::new(&first, &runs[0])
            .and_run(second, &runs[1])
            .devices(devices)
            .train_all(train_data(&data, &mut embeddings))
            .expect_err("refused")
            .to_string()
    };
    let err = attempt(&other_lr, &[Device::flex()]);
    assert!(err.contains("differ only in their seed"), "{err}");
    let err = attempt(&other_seed, &[Device::flex(), Device::flex()]);
    assert!(err.contains("packed runs train on one device"), "{err}");
    // Nothing was written for a refused pack.
    assert!(!runs[0].has_checkpoint() && !runs[1].has_checkpoint());
    // One run asked through train() of a pack is refused too.
    let mut embeddings = split_embeddings(&data);
    let err = Trainer::new(&first, &runs[0])
        .and_run(&other_seed, &runs[1])
        .devices(&[Device::flex()])
        .train(train_data(&data, &mut embeddings))
        .expect_err("train() trains one run")
        .to_string();
    assert!(err.contains("train_all"), "{err}");
}

#[test]
fn an_interrupted_run_resumes_to_the_same_result() {
    let _turn = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let data = dataset();
    let (whole, parts) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let uninterrupted = run(&data, &config(4), whole.path(), false, &mut |_| {
        ControlFlow::Continue(())
    });
    let first = run(&data, &config(4), parts.path(), false, &mut |m| {
        if m.epoch == 1 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    assert!(first.interrupted);
    assert_eq!(first.epochs_done, 2);
    let resumed = run(&data, &config(4), parts.path(), true, &mut |_| {
        ControlFlow::Continue(())
    });
    assert_eq!(resumed.epochs_done, 4);
    assert_eq!(curve(&uninterrupted), curve(&resumed));
    assert_eq!(weights(whole.path()), weights(parts.path()));
    let metrics = std::fs::read_to_string(RunDir::new(parts.path()).metrics()).unwrap();
    assert_eq!(
        metrics.lines().count(),
        4,
        "metrics.jsonl continues, without duplicates"
    );
    // A resume with another configuration is refused.
    let mut changed = config(4);
    changed.optim.lr *= 2.0;
    let refused = try_run_on(
        &data,
        &changed,
        parts.path(),
        true,
        &[Device::flex()],
        &mut |_| ControlFlow::Continue(()),
    );
    assert!(refused.is_err());
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

#[test]
fn training_memory_stays_flat_across_epochs() {
    let _turn = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let data = dataset();
    let dir = tempfile::tempdir().unwrap();
    let mut rss = Vec::new();
    run(&data, &config(10), dir.path(), false, &mut |_| {
        rss.push(rss_kib());
        ControlFlow::Continue(())
    });
    eprintln!("RSS after each epoch (KiB): {rss:?}");
    // After warm-up (epoch 2), growth over 8 more epochs stays under 16 MiB.
    let growth = rss[9].saturating_sub(rss[2]);
    assert!(
        growth < 16 * 1024,
        "RSS grew {growth} KiB from epoch 2 to 9: {rss:?}"
    );
}

#[test]
fn evaluation_and_forecast_use_the_trained_model() {
    let _turn = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let data = dataset();
    let dir = tempfile::tempdir().unwrap();
    run(&data, &config(2), dir.path(), false, &mut |_| {
        ControlFlow::Continue(())
    });
    let device = Device::flex();
    let best = load_checkpoint(&RunDir::new(dir.path()).best(), &device).expect("best checkpoint");
    let test = data.split(SplitKind::Test);
    let report = evaluate(&best.model, &test, 16, &device).expect("evaluation");
    assert_eq!(report.windows, test.num_windows());
    assert_eq!(report.mse_per_step.len(), 12);
    let mean_mse = report.mse_per_step.iter().sum::<f64>() / 12.0;
    assert!((mean_mse - report.mse).abs() < 1e-12);
    assert!(report.mse.is_finite() && report.mse > 0.0 && report.mae > 0.0);
    // Batch size must not change the result.
    let again = evaluate(&best.model, &test, 5, &device).expect("evaluation");
    assert!((again.mse - report.mse).abs() < 1e-9 * report.mse);

    // A CSV holding only the last test window's history: the forecaster reads it with the
    // checkpoint's scaler and gives that window's prediction.
    let forecaster =
        Forecaster::from_checkpoint_on(&RunDir::new(dir.path()).best(), &device).expect("load");
    let predictions = predict(&best.model, &test, 16, false, true, &device).expect("predict");
    let units = predictions.data_units.as_ref().expect("data units");
    let last = test.num_windows() - 1;
    let window = test.window(last);
    let lines: Vec<String> = head_lines().collect();
    let history: String = std::iter::once(lines[0].clone())
        .chain(window.history_rows().map(|row| lines[row + 1].clone()))
        .flat_map(|l| [l, "\n".to_string()])
        .collect();
    let frame = Frame::from_csv_bytes(history.as_bytes(), Path::new("history.csv")).unwrap();
    let result = forecaster.forecast(&frame).expect("forecast");
    let n = data.n_vars();
    assert_eq!((result.values.len(), result.values[0].len()), (12, n));
    for (step, row) in result.values.iter().enumerate() {
        for (var, value) in row.iter().enumerate() {
            let expected = f64::from(units.pred[(last * 12 + step) * n + var]);
            assert!((value - expected).abs() <= 1e-6 * expected.abs().max(1.0));
        }
    }
    let future = data.timestamps()[window.future_rows()].to_vec();
    assert_eq!(
        result.timestamps, future,
        "dates continue the data's interval"
    );
    assert_eq!(result.to_csv().lines().count(), 13);
    let png = dir.path().join("forecast.png");
    result.plot(n - 1, &png).expect("plot");
    assert!(std::fs::metadata(&png).unwrap().len() > 1000);

    // A backtest from every test window's origin scores as evaluation does, exactly.
    let whole = Frame::from_csv_bytes(head_csv().as_bytes(), Path::new("ETTh1-head.csv")).unwrap();
    let first = data.timestamps()[test.window(0).history_rows().end - 1];
    let origins = Origins::Between(first, data.timestamps()[window.history_rows().end - 1]);
    let mut csv = Vec::new();
    let summary = forecaster
        .backtest(&whole, &origins, 16, &mut csv)
        .expect("backtest");
    assert_eq!(summary.scored_origins, test.num_windows());
    let scaled = summary.scaled.expect("scored");
    assert_eq!(scaled.overall.mse, report.mse);
    assert_eq!(scaled.overall.mae, report.mae);
    let csv = String::from_utf8(csv).unwrap();
    assert_eq!(csv.lines().count(), 1 + test.num_windows() * 12 * n);
}

/// The ETTh1 head the tests train on, as CSV text.
fn head_csv() -> String {
    head_lines().flat_map(|l| [l, "\n".to_string()]).collect()
}

/// The rows of the ETTh1 head the tests train on, header first.
fn head_lines() -> impl Iterator<Item = String> {
    let csv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/ETTh1.csv");
    let text = std::fs::read_to_string(&csv).expect("datasets/ETTh1.csv");
    text.lines()
        .take(ROWS + 1)
        .map(str::to_string)
        .collect::<Vec<_>>()
        .into_iter()
}

/// Two replicas (both on the CPU here; GPUs on a multi-GPU host) split every micro-batch.
/// Without dropout and the batch-level attention term, that is the one-device gradient up
/// to float rounding; with the attention term on, the split changes the loss (so the
/// comparison can fail).
#[test]
fn data_parallel_training_matches_one_device_on_per_window_terms() {
    let _turn = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let data = dataset();
    let mut config = config(2);
    config.model.dropout = 0.0;
    config.loss.att_weight = 0.0;
    let dir = tempfile::tempdir().unwrap();
    let continue_ = &mut |_: &EpochMetrics| ControlFlow::Continue(());
    let two_devices = [Device::flex(), Device::flex()];
    let single = run(&data, &config, &dir.path().join("one"), false, continue_);
    let parallel = run_on(
        &data,
        &config,
        &dir.path().join("two"),
        false,
        &two_devices,
        continue_,
    );
    for (a, b) in curve(&single).iter().zip(curve(&parallel)) {
        assert!(
            (a.0 - b.0).abs() <= 1e-5 * a.0.abs(),
            "train loss {a:?} vs {b:?}"
        );
        assert!(
            (a.1 - b.1).abs() <= 1e-5 * a.1.abs(),
            "val loss {a:?} vs {b:?}"
        );
    }
    for ((name, a), (_, b)) in weights(&dir.path().join("one"))
        .iter()
        .zip(weights(&dir.path().join("two")))
    {
        let scale = a.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
        let diff = a
            .iter()
            .zip(&b)
            .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(diff <= 1e-4 * scale, "{name}: {diff} (scale {scale})");
    }

    config.loss.att_weight = 0.01;
    let single = run(
        &data,
        &config,
        &dir.path().join("one-att"),
        false,
        continue_,
    );
    let parallel = run_on(
        &data,
        &config,
        &dir.path().join("two-att"),
        false,
        &two_devices,
        continue_,
    );
    assert_ne!(curve(&single)[0].0, curve(&parallel)[0].0);
}

/// `Selection::Paper` keeps the epoch that the release's loop (`train.py`, written out
/// below from its source) keeps, given each epoch's validation loss and test MSE, on a run
/// where that is not the epoch of the lowest validation loss; every output names it.
#[test]
fn paper_selection_keeps_the_epoch_the_release_loop_keeps() {
    let _turn = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let data = dataset();
    let dir = tempfile::tempdir().unwrap();
    let config = TrainConfig {
        batch_size: 8,
        accumulate: 1,
        selection: Selection::Paper,
        optim: OptimConfig {
            lr: 2e-3,
            ..OptimConfig::default()
        },
        ..config(30)
    };
    let device = Device::flex();
    let run_dir = RunDir::new(dir.path());
    let test = data.split(SplitKind::Test);
    let (mut val, mut test_mse, mut evaluated) = (Vec::new(), Vec::new(), Vec::new());
    let summary = run(&data, &config, dir.path(), false, &mut |m| {
        // This epoch's model: the last checkpoint, written before the callback.
        let last = load_checkpoint(&run_dir.last(), &device).expect("last checkpoint");
        val.push(m.val.total);
        test_mse.push(evaluate(&last.model, &test, 8, &device).unwrap().mse);
        evaluated.push(m.test_mse);
        assert_eq!(m.selection, Selection::Paper);
        ControlFlow::Continue(())
    });

    // The release's loop, epoch i from 1.
    let (mut loss, mut test_log, mut since, mut bestid) = (9_999_999.0, 999_999.0, 0, 0);
    for i in 1..=val.len() {
        let (mvalid_loss, amse) = (val[i - 1], test_mse[i - 1]);
        if mvalid_loss < loss {
            if i <= 10 {
                (loss, bestid, since) = (mvalid_loss, i, 0);
            } else if amse < test_log {
                (test_log, loss, bestid, since) = (amse, mvalid_loss, i, 0);
            } else {
                since += 1;
            }
        } else {
            since += 1;
        }
    }
    let kept = summary.best.expect("a kept epoch").0;
    assert_eq!(kept + 1, bestid, "val {val:?}\ntest {test_mse:?}");
    let lowest_val = (0..val.len())
        .min_by(|&a, &b| val[a].total_cmp(&val[b]))
        .unwrap();
    assert_ne!(
        kept, lowest_val,
        "validation and test must disagree on this run: val {val:?}
test {test_mse:?}"
    );
    // The test split is read only after epoch 10, and what it gave is recorded.
    assert!(
        evaluated.iter().any(Option::is_some),
        "the rule read the test split"
    );
    for (epoch, mse) in evaluated.iter().enumerate() {
        if let Some(mse) = mse {
            assert!(epoch >= 10, "epoch {epoch} read the test split");
            assert!((mse - test_mse[epoch]).abs() <= 1e-12 * mse);
        }
    }
    assert!(since < config.patience);
    eprintln!("kept epoch {kept} (paper), lowest validation loss at epoch {lowest_val}");

    // The kept checkpoint is that epoch's model, and its outputs name the protocol.
    let options = TestOptions {
        batch_size: 8,
        features: Features::M,
        data_units: false,
    };
    let (report, results) = test_run(&run_dir, &test, &options, &device).expect("test");
    assert_eq!(report.mse, test_mse[kept]);
    assert_eq!(results.selection, Selection::Paper);
    let metrics = std::fs::read_to_string(run_dir.metrics()).unwrap();
    assert_eq!(
        metrics.matches("\"selection\":\"paper\"").count(),
        val.len()
    );
}
