//! Train, evaluate and forecast with the dual student on the first 2,000 rows of ETTh1,
//! with seeded random embeddings standing in for the teacher's (run `timekd extract` for
//! real ones).
//!
//! ```text
//! cargo run --release -p timekd-student --example train_synthetic [RUN_DIR]
//! ```

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use timekd_data::{Dataset, DatasetOptions, Frame, Preset, SplitKind};
use timekd_student::{
    DataInfo, DualConfig, Forecaster, InMemoryEmbeddings, RunDir, SplitData, TrainConfig,
    TrainData, Trainer, evaluate, load_checkpoint,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let csv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/ETTh1.csv");
    let text = std::fs::read_to_string(&csv)?;
    let head: String = text.lines().take(2001).flat_map(|l| [l, "\n"]).collect();
    let options = DatasetOptions {
        preset: Some(Preset::Custom),
        input_len: 96,
        output_len: 24,
        ..DatasetOptions::default()
    };
    let data = Dataset::from_csv_bytes(head.as_bytes(), Path::new("ETTh1-head.csv"), &options)?;

    let d_llm = 32;
    let config = TrainConfig {
        model: DualConfig {
            output_len: 24,
            channel: 16,
            d_llm,
            d_ff: 64,
            ..DualConfig::default()
        },
        epochs: 3,
        ..TrainConfig::default()
    };
    let source = |kind: SplitKind| {
        InMemoryEmbeddings::random(data.split(kind).num_windows(), data.n_vars(), d_llm, 1)
    };
    let (mut train_emb, mut val_emb) = (source(SplitKind::Train), source(SplitKind::Val));
    let run = RunDir::new(
        std::env::args()
            .nth(1)
            .map(PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join("timekd-student-example")),
    );
    let _ = std::fs::remove_dir_all(run.path());

    let device = Device::flex();
    let summary = Trainer::new(&config, &run)
        .devices(std::slice::from_ref(&device))
        .on_epoch(&mut |_, m| {
            println!(
                "epoch {}  train {:.4}  val {:.4}  ({:.1} s)",
                m.epoch, m.train.total, m.val.total, m.seconds
            );
            ControlFlow::Continue(())
        })
        .train(TrainData {
            info: DataInfo::of("ETTh1-head", &data),
            train: SplitData {
                split: data.split(SplitKind::Train),
                embeddings: &mut train_emb,
            },
            val: SplitData {
                split: data.split(SplitKind::Val),
                embeddings: &mut val_emb,
            },
            test: Some(data.split(SplitKind::Test)),
        })?;
    println!("best (epoch, val loss): {:?}", summary.best);

    let best = load_checkpoint(&run.best(), &device)?;
    let report = evaluate(&best.model, &data.split(SplitKind::Test), 64, &device)?;
    println!("test MSE {:.4}  MAE {:.4}", report.mse, report.mae);

    // Forecast after the file's last row, with the scaler the checkpoint recorded.
    let rows = Frame::from_csv_bytes(head.as_bytes(), Path::new("ETTh1-head.csv"))?;
    let next = Forecaster::from_checkpoint_on(&run.best(), &device)?.forecast(&rows)?;
    println!("next {} hours of OT:", next.values.len());
    let ot = next.var_names.len() - 1;
    for (t, row) in next.timestamps.iter().zip(&next.values).take(5) {
        println!("  {t}  {:.3}", row[ot]);
    }
    next.plot(ot, &run.path().join("forecast.png"))?;
    println!("run directory: {}", run.path().display());
    Ok(())
}
