//! `timekd train`: distil the teacher's embeddings into the dual student.
//!
//! Reads `<stores>/<dataset>/<H>/{train,val}.h5` (as written by `timekd extract`), trains
//! with the settings of a TOML config file (every field optional: the defaults are the
//! release's) overridden by flags, and writes a run directory: `config.toml` (resolved),
//! `metrics.jsonl`, `loss.png`, `checkpoints/{best,last}/` and, at the end, `test.json`
//! (test MSE/MAE of the best checkpoint) and `summary.json` (epochs, best validation loss,
//! test MSE/MAE, training time: what `cargo xtask train` tabulates).

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use timekd_data::SplitKind;
use timekd_store::{StoreLayout, StoreReader};
use timekd_student::{
    DataInfo, EmbeddingSource, LossKind, RunDir, SourceError, SplitData, TrainConfig, TrainData,
    evaluate, load_checkpoint,
};

use crate::data_args::{DataArgs, LoadedData};
use timekd_teacher::DeviceSpec;

/// Arguments of `timekd train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Root directory of the embedding stores (`timekd extract --out`).
    #[arg(long, default_value = "runs/embeddings")]
    pub stores: PathBuf,
    /// Run directory (default: runs/student/<dataset>/<H>/seed-<seed>).
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
    /// TOML file of training settings (fields of the run's `config.toml`); flags override it.
    #[arg(long, value_name = "TOML")]
    pub config: Option<PathBuf>,
    /// Continue the run in --run-dir from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Where to train: cpu, cuda[:N], or cuda:all (data-parallel: every batch is split over
    /// all GPUs, gradients summed on the first).
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    /// Maximum epochs [100].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Windows per batch [16].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Batches whose gradients are accumulated into one step [1].
    #[arg(long, value_name = "K")]
    pub accumulate: Option<usize>,
    /// Learning rate [1e-4].
    #[arg(long)]
    pub lr: Option<f64>,
    /// AdamW weight decay [1e-3].
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Gradient-norm clipping threshold [5]; 0 disables clipping.
    #[arg(long)]
    pub clip: Option<f64>,
    /// Student width C [64].
    #[arg(long)]
    pub channel: Option<usize>,
    /// Attention heads [4].
    #[arg(long)]
    pub heads: Option<usize>,
    /// Encoder layers [2].
    #[arg(long)]
    pub layers: Option<usize>,
    /// Dropout while training [0.5].
    #[arg(long)]
    pub dropout: Option<f64>,
    /// Seed of initialisation, shuffling and dropout [2024].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Early-stopping patience in epochs on the validation loss [50].
    #[arg(long)]
    pub patience: Option<usize>,
    /// Keep the windows in order, as the release does.
    #[arg(long)]
    pub no_shuffle: bool,
    /// Drop the last partial training batch, as the release does.
    #[arg(long)]
    pub drop_last: bool,
    /// Loss of every term: smooth_l1, mse or l1 [smooth_l1].
    #[arg(long)]
    pub loss: Option<LossKind>,
    /// Weights of the forecast, reconstruction, feature and attention terms [1,0.5,0.1,0.01].
    #[arg(long, value_delimiter = ',', num_args = 4, value_name = "F,R,FE,A")]
    pub loss_weights: Option<Vec<f64>>,
    /// Train and validate on the first K windows of each split only (stores extracted with
    /// the same `--max-windows`); the test split stays whole.
    #[arg(long, value_name = "K")]
    pub max_windows: Option<usize>,
}

/// The student's view of one store file (the lead may swap in the store's prefetcher).
struct StoreEmbeddings(StoreReader);

impl EmbeddingSource for StoreEmbeddings {
    fn dims(&self) -> (usize, usize, usize) {
        let d = self.0.dims();
        (d.windows, d.n_vars, d.d_model)
    }

    fn read_batch(&mut self, windows: &[usize]) -> Result<Vec<f32>, SourceError> {
        Ok(self.0.read_batch(windows)?)
    }
}

/// Opens the store of `split` and checks it was made from this data and these lengths.
fn open_store(
    args: &TrainArgs,
    data: &LoadedData,
    split: SplitKind,
) -> anyhow::Result<StoreEmbeddings> {
    let dataset = &data.dataset;
    let path = StoreLayout::new(&args.stores).store(
        data.source.name(),
        dataset.output_len(),
        split.name(),
    );
    let reader = StoreReader::open(&path).with_context(|| {
        format!(
            "{}: no {split} embeddings; run `timekd extract` for this dataset and --output-len \
             first, or point --stores at their root",
            path.display()
        )
    })?;
    let f = reader.fingerprint();
    if f.data_sha256 != data.source.sha256()
        || f.input_len != dataset.input_len()
        || f.output_len != dataset.output_len()
        || f.split != split.name()
    {
        bail!(
            "{}: the store was extracted for other data (sha256 {}, L {}, H {}, split {}); this \
             run has sha256 {}, L {}, H {}, split {split}",
            path.display(),
            f.data_sha256,
            f.input_len,
            f.output_len,
            f.split,
            data.source.sha256(),
            dataset.input_len(),
            dataset.output_len()
        );
    }
    if !reader.is_finished() {
        bail!(
            "{}: extraction is not finished; rerun `timekd extract`",
            path.display()
        );
    }
    Ok(StoreEmbeddings(reader))
}

/// The config file (if any) with the flags applied, and L, H from the data flags.
fn resolve_config(args: &TrainArgs) -> anyhow::Result<TrainConfig> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--config {}: cannot read", path.display()))?;
            toml::from_str(&text).with_context(|| format!("--config {}", path.display()))?
        }
        None => TrainConfig::default(),
    };
    config.model.input_len = args.data.input_len;
    config.model.output_len = args.data.output_len()?;
    macro_rules! set {
        ($flag:ident => $($field:tt)+) => {
            if let Some(v) = args.$flag.clone() { config.$($field)+ = v; }
        };
    }
    set!(epochs => epochs);
    set!(batch_size => batch_size);
    set!(accumulate => accumulate);
    set!(lr => optim.lr);
    set!(weight_decay => optim.weight_decay);
    set!(channel => model.channel);
    set!(heads => model.heads);
    set!(layers => model.layers);
    set!(dropout => model.dropout);
    set!(seed => seed);
    set!(patience => patience);
    if let Some(clip) = args.clip {
        config.optim.clip_grad_norm = (clip > 0.0).then_some(clip);
    }
    if let Some(kind) = args.loss {
        config.loss.forecast_kind = kind;
        config.loss.distill_kind = kind;
    }
    if let Some(w) = &args.loss_weights {
        (
            config.loss.forecast_weight,
            config.loss.recon_weight,
            config.loss.feature_weight,
            config.loss.att_weight,
        ) = (w[0], w[1], w[2], w[3]);
    }
    config.shuffle &= !args.no_shuffle;
    config.drop_last |= args.drop_last;
    config.validate()?;
    Ok(config)
}

fn write_toml(path: &Path, config: &TrainConfig) -> anyhow::Result<()> {
    let text = toml::to_string_pretty(config).context("serialising the resolved config")?;
    std::fs::write(path, text).with_context(|| format!("{}: cannot write", path.display()))
}

/// Runs `timekd train`.
pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let data = args.data.load()?;
    let mut config = resolve_config(&args)?;
    let dataset = &data.dataset;
    let run = RunDir::new(args.run_dir.clone().unwrap_or_else(|| {
        PathBuf::from("runs/student")
            .join(data.source.name())
            .join(dataset.output_len().to_string())
            .join(format!("seed-{}", config.seed))
    }));
    if !args.resume && run.last().join(timekd_student::STATE_FILE).exists() {
        bail!(
            "{}: a run already exists there; pass --resume to continue it or choose another \
             --run-dir",
            run.path().display()
        );
    }
    let devices = args.device.devices()?;
    let device = devices[0].clone();
    let limit = |kind| {
        let split = dataset.split(kind);
        args.max_windows.map_or(split.clone(), |k| split.head(k))
    };
    let (train_split, val_split) = (limit(SplitKind::Train), limit(SplitKind::Val));
    let mut train_source = open_store(&args, &data, SplitKind::Train)?;
    let mut val_source = open_store(&args, &data, SplitKind::Val)?;
    // The prompt branch's input width is the teacher's width, recorded in the store.
    config.model.d_llm = train_source.0.dims().d_model;
    std::fs::create_dir_all(run.path())
        .with_context(|| format!("{}: cannot create", run.path().display()))?;
    write_toml(&run.path().join("config.toml"), &config)?;
    eprintln!(
        "training on {} ({} train / {} val windows, H = {}) into {}",
        data.source.origin(),
        train_split.num_windows(),
        val_split.num_windows(),
        dataset.output_len(),
        run.path().display()
    );
    let info = DataInfo {
        dataset: data.source.name().to_string(),
        var_names: dataset.var_names().to_vec(),
    };
    let started = std::time::Instant::now();
    let summary = timekd_student::train_on(
        &config,
        TrainData {
            info,
            train: SplitData {
                split: train_split,
                embeddings: &mut train_source,
            },
            val: SplitData {
                split: val_split,
                embeddings: &mut val_source,
            },
        },
        &run,
        args.resume,
        &devices,
        &mut |m| {
            eprintln!(
                "epoch {:>3}  lr {:.2e}  train {:.5}  val {:.5}{}  ({:.1} s, training steps {:.1} s)",
                m.epoch,
                m.lr,
                m.train.total,
                m.val.total,
                if m.best { "  *best" } else { "" },
                m.seconds,
                m.train_seconds
            );
            ControlFlow::Continue(())
        },
    )?;
    let train_seconds = started.elapsed().as_secs_f64();
    let best = load_checkpoint(&run.best(), &device)?;
    let report = evaluate(
        &best.model,
        &dataset.split(SplitKind::Test),
        config.batch_size,
        &device,
    )?;
    let path = run.path().join("test.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("{}: cannot write", path.display()))?;
    let (best_epoch, best_val) = summary.best.unwrap_or((0, f64::NAN));
    let run_summary = serde_json::json!({
        "output_len": dataset.output_len(),
        "epochs": summary.epochs_done,
        "stopped_early": summary.stopped_early,
        "best_epoch": best_epoch,
        "best_val_loss": best_val,
        "test_mse": report.mse,
        "test_mae": report.mae,
        "train_seconds_this_invocation": train_seconds,
        "device": args.device.to_string(),
        "devices": devices.len(),
    });
    let summary_path = run.path().join("summary.json");
    std::fs::write(&summary_path, serde_json::to_vec_pretty(&run_summary)?)
        .with_context(|| format!("{}: cannot write", summary_path.display()))?;
    println!(
        "{} epochs{}; best val loss {best_val:.5} at epoch {best_epoch}; test MSE {:.4} MAE {:.4} \
         ({})",
        summary.epochs_done,
        if summary.stopped_early {
            " (early stop)"
        } else {
            ""
        },
        report.mse,
        report.mae,
        path.display()
    );
    Ok(())
}
