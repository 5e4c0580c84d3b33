//! [`Extraction`]: the settings of a run, checked once ([`ExtractionBuilder::build`]), then
//! planned ([`Extraction::plan`]) or run ([`Extraction::run`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use timekd_data::{DataSource, Dataset, SplitKind};
use timekd_store::StoreLayout;

use super::budget::{MemSize, MemoryBudget};
use super::error::ExtractError;
use super::fingerprint::{ModelIdentity, RunFingerprint};
use super::model::{Engine, TeacherSpec};
use super::observer::{ExtractObserver, Progress, RunStart, StoreStatus};
use super::plan::{ExtractionPlan, PassPlan, PassRequest, StorePlan, TokenSurvey};
use super::precision::RequestedPrecision;
use super::shard::Shard;
use super::stores::{RunStores, StoreRequest};
use super::workers::{Pool, WorkerMessage};
use crate::device::DeviceSpec;
use crate::families::ModelConfig;
use crate::gpt2::resolve_model_dir;
use crate::prompt::{PromptBuilder, PromptTemplate, ValueFormat};
use crate::shape::ModelShape;
use crate::tokenizer::Tokenizer;

/// Builds an [`Extraction`]; every setting but the model has a default (the `timekd extract`
/// defaults: train and val, the data's H, the CPU, f32, seed 2024).
#[derive(Debug, Clone)]
pub struct ExtractionBuilder<'a> {
    source: &'a DataSource,
    data: &'a Dataset,
    out: PathBuf,
    model: Option<String>,
    gpt2_layers: Option<usize>,
    engine: Engine,
    devices: DeviceSpec,
    precision: RequestedPrecision,
    max_memory: Option<MemSize>,
    batch_tokens: Option<usize>,
    prefix_cache: bool,
    sca_seed: u64,
    sca_weights: Option<PathBuf>,
    value_format: ValueFormat,
    splits: Vec<SplitKind>,
    lengths: Option<Vec<usize>>,
    max_windows: Option<usize>,
    shard: Option<Shard>,
    overwrite: bool,
}

/// Builder methods that set the field of the same name.
macro_rules! setters {
    ($($(#[$doc:meta])* $field:ident: $type:ty;)*) => {
        $(
            $(#[$doc])*
            pub fn $field(mut self, value: $type) -> Self {
                self.$field = value;
                self
            }
        )*
    };
}

impl<'a> ExtractionBuilder<'a> {
    /// The teacher's weights: a directory with `config.json` + `model.safetensors` (and
    /// `tokenizer.json` for families other than GPT-2), or a Hugging Face model id found in
    /// the local cache. The family comes from `config.json` ([`ModelConfig`]).
    pub fn model(mut self, model: &str) -> Self {
        self.model = Some(model.to_string());
        self
    }

    setters! {
        /// Use only the first K transformer blocks (default: all of the checkpoint's).
        gpt2_layers: Option<usize>;
        /// Which implementation runs GPT-2 on a GPU.
        engine: Engine;
        /// Where to run: one worker per device.
        devices: DeviceSpec;
        /// The float type of the model's products (stores record it and refuse to mix).
        precision: RequestedPrecision;
        /// The memory budget per device (default: a GPU's free memory less 10% and 1 GiB;
        /// 4 GiB on the CPU).
        max_memory: Option<MemSize>;
        /// Most padded tokens per pass, overriding the budget's choice.
        batch_tokens: Option<usize>;
        /// Compute each (window, variable)'s shared history prefix once (default) or run
        /// every prompt whole (same results up to float rounding).
        prefix_cache: bool;
        /// Seed of the SCA's PyTorch-default initialisation (recorded in the stores).
        sca_seed: u64;
        /// Load the SCA from a safetensors file (release key names) instead of the seed.
        sca_weights: Option<PathBuf>;
        /// How prompt values are written.
        value_format: ValueFormat;
        /// Extract only the first K windows of each split (the store says so).
        max_windows: Option<usize>;
        /// This host's share of the windows.
        shard: Option<Shard>;
        /// Replace existing stores instead of resuming them.
        overwrite: bool;
    }

    /// Which splits to extract, in this order (default: train, val).
    pub fn splits(mut self, splits: &[SplitKind]) -> Self {
        self.splits = splits.to_vec();
        self
    }

    /// Output lengths H to extract in one pass over the windows (default: the data's H).
    /// One store per (H, split); window i has the same history for every H.
    pub fn lengths(mut self, lengths: &[usize]) -> Self {
        self.lengths = Some(lengths.to_vec());
        self
    }

    /// Checks the settings against the data and the model's config, and takes the memory
    /// budget (nvidia-smi on a GPU): once per run, before any model is loaded.
    pub fn build(self) -> Result<Extraction<'a>, ExtractError> {
        let Some(model) = self.model.clone() else {
            return Err(ExtractError::Setting {
                setting: "--model",
                reason: "no GPT-2 model given".into(),
            });
        };
        let mut lengths = self
            .lengths
            .clone()
            .unwrap_or_else(|| vec![self.data.output_len()]);
        lengths.sort_unstable();
        lengths.dedup();
        if lengths.is_empty() || self.splits.is_empty() {
            return Err(ExtractError::Setting {
                setting: if lengths.is_empty() {
                    "--output-len"
                } else {
                    "--split"
                },
                reason: "nothing to extract: give at least one".into(),
            });
        }
        for &split in &self.splits {
            for &h in &lengths {
                self.data.split(split).check_output_len(h)?;
            }
        }
        let model_dir = resolve_model_dir(&model)?;
        let config = ModelConfig::for_model_dir(&model_dir)?;
        let shape = config.shape();
        let layers = shape.layers_in_use(self.gpt2_layers)?;
        let budget = MemoryBudget::resolve(self.max_memory, self.devices);
        let precision = self.precision.resolve(self.devices);
        if self.devices.is_gpu() || self.max_memory.is_some() {
            budget.check_weights(&shape, layers, precision)?;
        }
        let prompts = PromptBuilder::new(
            PromptTemplate::for_preset(self.data.preset(), self.data.interval_seconds()),
            self.value_format,
        );
        let spec = TeacherSpec {
            model,
            model_dir,
            config,
            shape,
            layers,
            engine: self.engine,
            precision,
            sca_seed: self.sca_seed,
            sca_weights: self.sca_weights.clone(),
            prompts,
            n_vars: self.data.n_vars(),
        };
        spec.check_engine()?;
        Ok(Extraction {
            settings: self,
            lengths,
            budget,
            spec,
        })
    }

    /// [`build`](Self::build), then [`Extraction::run`].
    pub fn run(
        self,
        observer: &mut dyn ExtractObserver,
    ) -> Result<ExtractionSummary, ExtractError> {
        self.build()?.run(observer)
    }
}

/// A checked extraction run: resumable stores of teacher embeddings for every (split, H).
///
/// ```no_run
/// use timekd_data::{DataSource, DatasetOptions, SplitKind};
/// use timekd_teacher::extract::Extraction;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let source = DataSource::resolve("ETTh1")?;
/// let data = source.load(&DatasetOptions { output_len: 24, ..Default::default() })?;
/// let summary = Extraction::builder(&source, &data, "runs/embeddings")
///     .model("models/tiny-gpt2")
///     .splits(&[SplitKind::Val])
///     .lengths(&[24, 48])
///     .run(&mut ())?; // rerun after a crash: it resumes
/// println!("{} embeddings", summary.embeddings);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Extraction<'a> {
    settings: ExtractionBuilder<'a>,
    lengths: Vec<usize>,
    budget: MemoryBudget,
    /// The teacher, with the model's config and block count resolved once.
    spec: TeacherSpec,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtractionSummary {
    /// Every store of the run, finished.
    pub stores: Vec<StoreStatus>,
    /// Embeddings (window × output length) computed by this run.
    pub embeddings: usize,
    /// Prompt tokens embedded by this run.
    pub tokens: usize,
    /// Time the workers ran.
    pub elapsed: Duration,
    /// Devices used.
    pub devices: usize,
}

impl<'a> Extraction<'a> {
    /// An extraction of `data` (loaded from `source`, at any H the lengths allow) into stores
    /// under `out`, laid out by [`StoreLayout`].
    pub fn builder(
        source: &'a DataSource,
        data: &'a Dataset,
        out: impl Into<PathBuf>,
    ) -> ExtractionBuilder<'a> {
        ExtractionBuilder {
            source,
            data,
            out: out.into(),
            model: None,
            gpt2_layers: None,
            engine: Engine::default(),
            devices: DeviceSpec::Cpu,
            precision: RequestedPrecision::F32,
            max_memory: None,
            batch_tokens: None,
            prefix_cache: true,
            sca_seed: 2024,
            sca_weights: None,
            value_format: ValueFormat::Int,
            splits: vec![SplitKind::Train, SplitKind::Val],
            lengths: None,
            max_windows: None,
            shard: None,
            overwrite: false,
        }
    }

    /// The output lengths, ascending.
    pub fn lengths(&self) -> &[usize] {
        &self.lengths
    }

    /// The model's directory.
    pub fn model_dir(&self) -> &Path {
        &self.spec.model_dir
    }

    /// The model's configuration (its family's `config.json`).
    pub fn model_config(&self) -> &ModelConfig {
        &self.spec.config
    }

    /// The model's sizes.
    pub fn model_shape(&self) -> &ModelShape {
        &self.spec.shape
    }

    /// Transformer blocks used.
    pub fn layers(&self) -> usize {
        self.spec.layers
    }

    /// The memory budget per device.
    pub fn budget(&self) -> &MemoryBudget {
        &self.budget
    }

    /// Where the store of `split` at `output_len` is.
    pub fn store_path(&self, split: SplitKind, output_len: usize) -> PathBuf {
        StoreLayout::new(&self.settings.out).store(
            self.settings.source.name(),
            output_len,
            split.name(),
        )
    }

    /// Windows the store of `split` at `output_len` covers before sharding.
    fn windows(&self, split: SplitKind, output_len: usize) -> usize {
        let all = self.settings.data.split(split).num_windows_at(output_len);
        self.settings.max_windows.map_or(all, |k| k.min(all))
    }

    fn pass_request(&self) -> PassRequest<'_> {
        PassRequest {
            shape: &self.spec.shape,
            layers: self.spec.layers,
            precision: self.spec.precision,
            budget_bytes: self.budget.bytes,
            batch_tokens: self.settings.batch_tokens,
            prefix_cache: self.settings.prefix_cache && self.spec.shape.causal,
            gpu: self.settings.devices.is_gpu(),
            cuda_engine: self.spec.runs_cuda_engine(),
        }
    }

    /// Pass sizes for the longest prompt (in `tokenizer`'s tokens, the model's) of any split
    /// at the longest H.
    fn passes(&self, tokenizer: &Tokenizer) -> Result<PassPlan, ExtractError> {
        let longest_h = *self.lengths.last().expect("checked non-empty");
        let mut longest = 1;
        for &split in &self.settings.splits {
            let windows = self.windows(split, longest_h);
            let view = self.settings.data.split(split);
            let survey = TokenSurvey::of(&view, windows, longest_h, &self.spec.prompts, tokenizer)?;
            longest = longest.max(survey.longest);
        }
        Ok(PassPlan::new(&self.pass_request(), longest))
    }

    /// Prompts of one window: GT and HD for every variable and output length.
    fn prompts_per_window(&self) -> usize {
        2 * self.settings.data.n_vars() * self.lengths.len()
    }

    /// What the run would do: windows, prompts, tokens, FLOPs and pass sizes per store. Loads
    /// no weights and writes nothing.
    pub fn plan(&self) -> Result<ExtractionPlan, ExtractError> {
        let request = self.pass_request();
        let tokenizer = Tokenizer::for_model_dir(&self.spec.model_dir)?;
        let mut stores = Vec::new();
        for &split in &self.settings.splits {
            let view = self.settings.data.split(split);
            for &h in &self.lengths {
                let windows = self.windows(split, h);
                let survey = TokenSurvey::of(&view, windows, h, &self.spec.prompts, &tokenizer)?;
                stores.push(StorePlan::new(&view, h, windows, survey, &request));
            }
        }
        let passes = self.passes(&tokenizer)?;
        Ok(ExtractionPlan {
            budget: self.budget.clone(),
            passes,
            chunk_windows: passes.chunk_windows(self.prompts_per_window()),
            stores,
        })
    }

    /// Runs the extraction: opens (or resumes) every store, embeds what they miss on one
    /// worker per device and finishes them. Killed at any point, a rerun continues.
    pub fn run(
        &self,
        observer: &mut dyn ExtractObserver,
    ) -> Result<ExtractionSummary, ExtractError> {
        let settings = &self.settings;
        let devices = settings.devices.workers()?;
        let passes = self.passes(&Tokenizer::for_model_dir(&self.spec.model_dir)?)?;
        observer.run_started(&RunStart {
            budget: self.budget.clone(),
            passes,
            devices: devices.len(),
            lengths: self.lengths.clone(),
        });
        let mut stores = RunStores::open(self.store_requests()?, observer)?;
        let total = stores.remaining();
        let started = Instant::now();
        let mut progress = Progress {
            done: 0,
            total,
            tokens: 0,
            elapsed: Duration::ZERO,
            computed: Duration::ZERO,
        };
        if total > 0 {
            observer.work_started(total);
            let chunk = passes.chunk_windows(self.prompts_per_window());
            let pool = Pool {
                spec: &self.spec,
                devices: &devices,
                budget_bytes: self.budget.bytes,
                options: passes.options,
                data: settings.data,
            };
            pool.run(stores.work(chunk), |message| {
                match message {
                    WorkerMessage::Note(text) => observer.note(&text),
                    WorkerMessage::Done(chunk) => {
                        progress.done += stores.put(chunk.split, &chunk.lengths, observer)?;
                        progress.tokens += chunk.tokens;
                        progress.elapsed = started.elapsed();
                        progress.computed = progress
                            .computed
                            .max(chunk.computed_at.saturating_duration_since(started));
                        observer.progress(&progress);
                    }
                }
                Ok(())
            })?;
            if stores.remaining() > 0 {
                return Err(ExtractError::Internal(format!(
                    "the workers stopped with {} embeddings still to do",
                    stores.remaining()
                )));
            }
        }
        Ok(ExtractionSummary {
            stores: stores.statuses(),
            embeddings: progress.done,
            tokens: progress.tokens,
            elapsed: started.elapsed(),
            devices: devices.len(),
        })
    }

    /// One request per (split, H), with its fingerprint and this shard's windows.
    fn store_requests(&self) -> Result<Vec<StoreRequest>, ExtractError> {
        let settings = &self.settings;
        let digests = crate::weights::checkpoint_files(&self.spec.model_dir)?
            .iter()
            .map(|file| timekd_store::sha256_file(file))
            .collect::<Result<Vec<_>, _>>()?;
        let fingerprint = RunFingerprint::new(
            settings.source,
            settings.data,
            &self.spec.prompts,
            ModelIdentity {
                model_id: self.spec.model.clone(),
                weights_sha256: crate::weights::combined_sha256(&digests),
                d_model: self.spec.shape.d_model,
                layers: self.spec.layers,
                sca_seed: settings.sca_seed,
                compute_precision: settings.precision.to_string(),
            },
        );
        let mut requests = Vec::new();
        for &split in &settings.splits {
            let view = settings.data.split(split);
            for &h in &self.lengths {
                let windows_total = self.windows(split, h);
                let range = settings.shard.map(|s| s.range(windows_total)).transpose()?;
                requests.push(StoreRequest {
                    status: StoreStatus {
                        split,
                        output_len: h,
                        path: self.store_path(split, h),
                        covered: range.as_ref().map_or(windows_total, |r| r.len()),
                        missing: 0,
                    },
                    fingerprint: fingerprint.for_store(&view, h),
                    windows_total,
                    range,
                    overwrite: settings.overwrite,
                });
            }
        }
        Ok(requests)
    }
}
