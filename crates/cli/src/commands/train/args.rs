//! The flags of `timekd train` and the training settings they resolve to: a TOML file of
//! [`TrainConfig`] fields (every one optional: the defaults are the release's), overridden by
//! flags.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use timekd_data::Features;
use timekd_student::{LossKind, Selection, TrainConfig};
use timekd_teacher::{DeviceSpec, Gpus};

use crate::data_args::DataArgs;

/// Arguments of `timekd train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Root directory of the embedding stores (`timekd extract --out`).
    #[arg(long, default_value = "runs/embeddings")]
    pub stores: PathBuf,
    /// Run directory of one output length (default: `<runs>/<dataset>/<H>/seed-<seed>`).
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
    /// Root of the default run directories (also `--out`, its earlier name).
    #[arg(
        long,
        alias = "out",
        default_value = "runs/student",
        value_name = "DIR"
    )]
    pub runs: PathBuf,
    /// TOML file of training settings (fields of the run's `config.toml`); flags override it.
    #[arg(long, value_name = "TOML")]
    pub config: Option<PathBuf>,
    /// Continue the run in --run-dir from its last checkpoint (start it when there is none
    /// yet, so a requeued job can always pass --resume).
    #[arg(long)]
    pub resume: bool,
    /// Train on stores without checking them against their checksums (by default each
    /// store is read once per invocation and verified; a damaged one is refused).
    #[arg(long)]
    pub no_verify: bool,
    /// Remove an existing run directory first and start afresh.
    #[arg(long, conflicts_with = "resume")]
    pub fresh: bool,
    /// Where to train: cpu, cuda[:N], or cuda:all. One run on cuda:all is data-parallel
    /// (every batch split over all GPUs, gradients summed on the first); several runs
    /// (--seeds, several --output-len) are spread over the GPUs, one GPU each.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    /// Processes trained at once on each device when there are several (H, seed) runs: one
    /// per run, or per pack of seeds with --pack; each run reaches the same weights as alone
    /// [GPU: half the CPU cores, at most 8 per GPU; CPU: 1].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub jobs: Option<u64>,
    /// Train the seeds of each output length together in one process (one per length with
    /// --jobs): with Burn as one packed model, every operation once for all of them (a step
    /// of 3 seeds took 1.3x one seed's, H100); on the student's CUDA engine each seed on its
    /// own stream (3 seeds: 1.23x the steps of one, H100). Each run keeps its own batches,
    /// dropout, optimiser, selection and run directory and reaches the weights it reaches
    /// alone [on for GPUs, off for the CPU].
    #[arg(long, conflicts_with = "no_pack")]
    pub pack: bool,
    /// Train every seed on its own (see --pack).
    #[arg(long)]
    pub no_pack: bool,
    /// At most N seeds in one packed model (a length with more seeds trains as several
    /// packs, e.g. to spread them over --jobs processes) [all seeds of a length].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub pack_size: Option<u64>,
    /// What trains the student's steps on a GPU: `cuda`, the student's own CUDA engine
    /// (about a hundred launches a step, splits resident on the GPU, losses read once an
    /// epoch; CUDA builds); `burn`, Burn's CUDA backend; `auto`, the engine where it applies
    /// (one GPU per run, --accumulate 1), else Burn. The engine draws its own dropout masks
    /// (seeded as Burn's, not the same bits), so the two give different curves with dropout
    /// on [auto].
    #[arg(long, default_value = "auto", value_name = "auto|cuda|burn")]
    pub train_engine: TrainEngine,
    /// (Internal) train only these runs of the sweep, `H:SEED[+SEED...]` or `H:-`: a child
    /// process of `--jobs`.
    #[arg(long, hide = true, value_name = "H:SEED")]
    pub worker_run: Option<String>,
    /// (Internal) the device of a `--worker-run`.
    #[arg(long, hide = true, requires = "worker_run")]
    pub worker_device: Option<DeviceSpec>,
    /// (Internal) the checkpoint selection of a `--worker-run`.
    #[arg(long, hide = true, requires = "worker_run")]
    pub worker_selection: Option<Selection>,
    /// How the kept checkpoint is chosen: `val` (the lowest validation loss, the default)
    /// or `paper` (the release's rule: after epoch 10 the lowest TEST MSE among epochs
    /// whose validation loss improved; test-set leakage, for reproducing its numbers; runs
    /// go under `<dataset>-paper`). `val,paper` trains both and tabulates them side by side
    /// (results-by-selection.md). For the release's whole protocol add --no-shuffle
    /// --drop-last.
    #[arg(long, value_delimiter = ',', value_name = "val|paper")]
    pub selection: Option<Vec<Selection>>,
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
    /// The student's encoder layers [2].
    #[arg(long, alias = "layers", value_name = "K")]
    pub encoder_layers: Option<usize>,
    /// Dropout while training [0.5].
    #[arg(long)]
    pub dropout: Option<f64>,
    /// Seed of initialisation, shuffling and dropout [2024].
    #[arg(long, conflicts_with = "seeds")]
    pub seed: Option<u64>,
    /// Train one run per seed (each resumable; finished ones are reused), then write
    /// results.csv, results.md and results.tex (mean ± std over seeds) beside the runs.
    #[arg(long, value_delimiter = ',', value_name = "S1,S2,...")]
    pub seeds: Option<Vec<u64>>,
    /// Time-Series-Library's repetitions: N runs with seeds --seed, --seed + 1, ...
    /// (Time-Series-Library repeats with one seed's random stream; here each repetition has
    /// its own seed, so it can be rerun alone).
    #[arg(long, value_name = "N", conflicts_with = "seeds", value_parser = clap::value_parser!(u64).range(1..))]
    pub itr: Option<u64>,
    /// Also write each run's test results in Time-Series-Library's layout under DIR
    /// (default: the current directory): `results/<setting>/{metrics,pred,true}.npy` and a
    /// block in result_long_term_forecast.txt (data units with --inverse, as TSLib does).
    #[arg(long, value_name = "DIR", num_args = 0..=1, default_missing_value = ".")]
    pub tslib: Option<PathBuf>,
    /// M: every variable in and scored; S: the --target column alone; MS: every variable
    /// in, the target scored (Time-Series-Library's modes). Stores hold every variable in
    /// all three.
    #[arg(long, default_value = "M", value_name = "M|S|MS")]
    pub features: Features,
    /// Also score the test split in the data's units (the train-fitted scaler's inverse)
    /// and write pred_inverse.npy / true_inverse.npy.
    #[arg(long)]
    pub inverse: bool,
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

impl TrainArgs {
    /// Most runs in one packed model: 1 (no packing) with `--no-pack`, or by default on the
    /// CPU; else `--pack-size`, or unbounded.
    pub fn pack_size(&self) -> usize {
        let packs = match (self.pack, self.no_pack) {
            (true, _) => true,
            (_, true) => false,
            _ => self.device.is_gpu(),
        };
        match (packs, self.pack_size) {
            (false, _) => 1,
            (true, Some(n)) => n as usize,
            (true, None) => usize::MAX,
        }
    }

    /// The device this process trains on: `--device`, or a child's `--worker-device`.
    pub fn training_device(&self) -> DeviceSpec {
        self.worker_device.unwrap_or(self.device)
    }
}

/// What trains the student's steps on a GPU (`--train-engine`).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainEngine {
    /// The CUDA engine where it applies, else Burn.
    Auto,
    /// The student's CUDA engine (CUDA builds, one GPU, no accumulation).
    Cuda,
    /// Burn's backend.
    Burn,
}

impl TrainArgs {
    /// Refuses `--train-engine cuda` up front where it cannot run at all: a build without
    /// CUDA, or the CPU.
    pub fn check_train_engine(&self) -> anyhow::Result<()> {
        let gpu = matches!(self.training_device(), DeviceSpec::Cuda(_));
        if self.train_engine == TrainEngine::Cuda && !(cfg!(feature = "cuda") && gpu) {
            anyhow::bail!(
                "--train-engine cuda needs a CUDA build of timekd (scripts/gpu-build.sh) and a \
                 GPU (--device cuda[:N]); this is {} on {}",
                if cfg!(feature = "cuda") {
                    "a CUDA build"
                } else {
                    "a CPU-only build"
                },
                self.training_device()
            );
        }
        Ok(())
    }

    /// The GPU whose CUDA engine trains this process's steps, or `None` for Burn; an error
    /// for `--train-engine cuda` where the engine cannot run.
    pub fn engine_ordinal(&self, accumulate: usize) -> anyhow::Result<Option<usize>> {
        let gpu = match self.training_device() {
            DeviceSpec::Cuda(Gpus::Index(i)) => Some(i),
            _ => None,
        };
        let built = cfg!(feature = "cuda");
        match (self.train_engine, gpu) {
            (TrainEngine::Burn, _) => Ok(None),
            (TrainEngine::Auto, Some(i)) if built && accumulate == 1 => Ok(Some(i)),
            (TrainEngine::Auto, _) => Ok(None),
            (TrainEngine::Cuda, Some(i)) if built && accumulate == 1 => Ok(Some(i)),
            (TrainEngine::Cuda, _) => anyhow::bail!(
                "--train-engine cuda needs a CUDA build of timekd, one GPU per run                  (--device cuda[:N], or cuda:all with several runs) and --accumulate 1"
            ),
        }
    }
}

/// The seeds to train: `--seeds`, or `--itr`'s from `--seed` (or the config's) on, else
/// the one of `--seed` or the config (`None`).
pub fn seeds(args: &TrainArgs) -> anyhow::Result<Option<Vec<u64>>> {
    if let Some(n) = args.itr {
        let first = match args.seed {
            Some(seed) => seed,
            None => read_config_file(args)?.seed,
        };
        return Ok(Some((0..n).map(|i| first + i).collect()));
    }
    let Some(seeds) = &args.seeds else {
        return Ok(None);
    };
    let mut unique = seeds.clone();
    unique.sort_unstable();
    unique.dedup();
    if unique.len() != seeds.len() {
        anyhow::bail!("--seeds {seeds:?}: a seed is given twice");
    }
    Ok(Some(seeds.clone()))
}

/// The selections to train: a child's `--worker-selection`, else `--selection` (each once),
/// else the config file's.
pub fn selections(args: &TrainArgs) -> anyhow::Result<Vec<Selection>> {
    if let Some(selection) = args.worker_selection {
        return Ok(vec![selection]);
    }
    match &args.selection {
        Some(list) => {
            let mut unique = list.clone();
            unique.sort_unstable();
            unique.dedup();
            if unique.len() != list.len() {
                anyhow::bail!("--selection {list:?}: a selection is given twice");
            }
            Ok(list.clone())
        }
        None => Ok(vec![read_config_file(args)?.selection]),
    }
}

/// `--config`'s settings, or the defaults.
fn read_config_file(args: &TrainArgs) -> anyhow::Result<TrainConfig> {
    match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--config {}: cannot read", path.display()))?;
            Ok(toml::from_str(&text).with_context(|| format!("--config {}", path.display()))?)
        }
        None => Ok(TrainConfig::default()),
    }
}

/// The config file (if any) with the flags applied, L from the data flags and H = `output_len`.
pub fn resolve_config(args: &TrainArgs, output_len: usize) -> anyhow::Result<TrainConfig> {
    let mut config = read_config_file(args)?;
    config.model.input_len = args.data.input_len;
    config.model.output_len = output_len;
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
    set!(encoder_layers => model.layers);
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
    config.loss.target_only = args.features.scores_last_only();
    config.shuffle &= !args.no_shuffle;
    config.drop_last |= args.drop_last;
    config.validate()?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        train: TrainArgs,
    }

    fn parse(flags: &[&str]) -> TrainArgs {
        let argv = ["timekd", "--output-len", "24"].iter().chain(flags);
        Cli::try_parse_from(argv).expect("flags parse").train
    }

    #[test]
    fn the_train_engine_is_chosen_by_build_device_and_accumulation() {
        let cpu = parse(&["--train-engine", "cuda"]);
        let err = cpu
            .check_train_engine()
            .expect_err("cuda on the CPU")
            .to_string();
        assert!(
            err.contains("--train-engine cuda") && err.contains("cpu"),
            "{err}"
        );
        assert!(cpu.engine_ordinal(1).is_err());
        // auto and burn never fail; auto takes the engine on one GPU with accumulate 1 in
        // CUDA builds only.
        for engine in ["auto", "burn"] {
            let args = parse(&["--train-engine", engine, "--device", "cuda:1"]);
            args.check_train_engine().expect("never refused");
            let want = (engine == "auto" && cfg!(feature = "cuda")).then_some(1);
            assert_eq!(args.engine_ordinal(1).expect("ordinal"), want, "{engine}");
            assert_eq!(args.engine_ordinal(2).expect("ordinal"), None, "{engine}");
        }
        assert!(parse(&[]).train_engine == TrainEngine::Auto);
        let unknown = ["timekd", "--output-len", "24", "--train-engine", "fast"];
        assert!(Cli::try_parse_from(unknown).is_err());
    }
}
