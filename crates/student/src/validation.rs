//! Checks of a split against the configuration, and the validation loss.

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use timekd_data::BatchOrder;

use crate::batches::stream_batches;
use crate::data::SplitData;
use crate::error::{Result, StudentError};
use crate::loss::{LossValues, distillation_loss};
use crate::model::Dual;
use crate::train_config::TrainConfig;

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

/// Mean loss terms over a split in evaluation mode (no dropout, no autodiff).
pub fn validation_loss(
    model: &Dual,
    config: &TrainConfig,
    data: &mut SplitData,
    device: &Device,
) -> Result<LossValues> {
    let device = device.clone().without_autodiff();
    let model = model.valid();
    let total = data.split.num_windows();
    let mut sum = Tensor::<1>::zeros([5], &device);
    let batches: Vec<Vec<usize>> = data
        .split
        .batches(config.batch_size, BatchOrder::default())
        .collect();
    stream_batches(data, &batches, &device, |stream| {
        for batch in stream {
            let batch = batch?;
            let out = model.forward(batch.x, batch.emb);
            let values = distillation_loss(&config.loss, &out, batch.y).stacked();
            sum = sum.clone() + values * (batch.len as f64 / total as f64);
        }
        Ok::<_, StudentError>(())
    })?;
    LossValues::read(sum)
}
