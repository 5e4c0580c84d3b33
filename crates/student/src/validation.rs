//! Checks of a split against the configuration, and the validation loss.

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use timekd_data::{BatchOrder, Split};

use crate::batches::stream_batches;
use crate::data::SplitData;
use crate::error::{Result, StudentError};
use crate::loss::{LossValues, TERMS, distillation_loss};
use crate::model::Dual;
use crate::train_config::{Selection, TrainConfig};

pub(crate) fn check_split(config: &TrainConfig, data: &SplitData) -> Result<()> {
    let dataset = data.split.dataset();
    let (windows, n, d) = data.embeddings.dims();
    let kind = data.split.kind();
    let problems = [
        (windows < data.split.num_windows()).then(|| {
            format!(
                "only {windows} embeddings for {} {kind} windows",
                data.split.num_windows()
            )
        }),
        (n != dataset.n_vars()).then(|| {
            format!(
                "embeddings have {n} variables, the data {}",
                dataset.n_vars()
            )
        }),
        (d != config.model.d_llm).then(|| {
            format!(
                "embeddings are {d} wide, model.d_llm is {}",
                config.model.d_llm
            )
        }),
        (dataset.input_len() != config.model.input_len).then(|| {
            format!(
                "data L = {}, model.input_len = {}",
                dataset.input_len(),
                config.model.input_len
            )
        }),
        (dataset.output_len() != config.model.output_len).then(|| {
            format!(
                "data H = {}, model.output_len = {}",
                dataset.output_len(),
                config.model.output_len
            )
        }),
        (data.split.num_windows() == 0).then(|| format!("the {kind} split has no windows")),
    ];
    let problems: Vec<String> = problems.into_iter().flatten().collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(StudentError::Config(format!(
            "{kind} split: {}",
            problems.join("; ")
        )))
    }
}

/// What [`Selection::Paper`] needs beyond [`check_split`]: a test split, and a validation
/// split of at least one full batch (its last partial batch is left out, as the release's
/// `drop_last` loader does).
pub(crate) fn check_paper_split(
    config: &TrainConfig,
    val: &SplitData,
    test: Option<&Split>,
) -> Result<()> {
    if test.is_none() {
        return Err(paper_needs_test());
    }
    let windows = val.split.num_windows();
    if windows < config.batch_size {
        return Err(StudentError::Config(format!(
            "selection paper leaves out the last partial validation batch, as the release \
             does, and the val split's {windows} windows are fewer than one batch of {}; use \
             a smaller batch_size or selection val",
            config.batch_size
        )));
    }
    Ok(())
}

/// The error of [`Selection::Paper`] without a test split.
pub(crate) fn paper_needs_test() -> StudentError {
    StudentError::Config(
        "selection paper evaluates the test split while training (the release's rule); pass \
         it as TrainData::test"
            .into(),
    )
}

/// Mean loss terms over a split in evaluation mode (no dropout, no autodiff), one per run
/// of the model (a pack sees the same windows in each run). Under [`Selection::Paper`] the
/// last partial batch is left out, as the release's loader does.
pub fn validation_loss(
    model: &Dual,
    config: &TrainConfig,
    data: &mut SplitData,
    device: &Device,
) -> Result<Vec<LossValues>> {
    let device = device.clone().without_autodiff();
    let model = model.valid();
    let runs = model.runs();
    let order = BatchOrder {
        drop_last: config.selection == Selection::Paper,
        ..BatchOrder::default()
    };
    let batches: Vec<Vec<usize>> = data.split.batches(config.batch_size, order).collect();
    let total: usize = batches.iter().map(Vec::len).sum();
    let mut sum = Tensor::<2>::zeros([runs, TERMS], &device);
    let each_run = |t: Tensor<3>| if runs == 1 { t } else { t.repeat_dim(0, runs) };
    stream_batches(data, &batches, &device, |stream| {
        for batch in stream {
            let batch = batch?;
            let out = model.forward(each_run(batch.x), each_run(batch.emb));
            let values = distillation_loss(&config.loss, &out, each_run(batch.y)).stacked();
            sum = sum.clone() + values * (batch.len as f64 / total as f64);
        }
        Ok::<_, StudentError>(())
    })?;
    LossValues::read(sum)
}
