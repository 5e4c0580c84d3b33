//! The fingerprint every store of a run records: what was extracted, from what, how.

use timekd_data::{DataSource, Dataset, Split};
use timekd_store::{Dtype, Fingerprint, SCHEMA_VERSION};

use crate::prompt::PromptBuilder;

/// What every store of one run shares; [`for_store`](RunFingerprint::for_store) adds the
/// split and the output length.
#[derive(Debug, Clone)]
pub(crate) struct RunFingerprint(Fingerprint);

/// The model half of a run's fingerprint.
#[derive(Debug, Clone)]
pub(crate) struct ModelIdentity {
    /// The model as asked for (directory or Hugging Face id).
    pub model_id: String,
    /// Hex SHA-256 of its `model.safetensors`.
    pub weights_sha256: String,
    /// Width D of its states.
    pub d_model: usize,
    /// Blocks used.
    pub layers: usize,
    /// The SCA's seed.
    pub sca_seed: u64,
    /// The requested precision's name (`f32`, `tf32`, `f16`).
    pub compute_precision: String,
}

impl RunFingerprint {
    /// The fingerprint of a run over `data` (from `source`) with `prompts` and `model`.
    pub fn new(
        source: &DataSource,
        data: &Dataset,
        prompts: &PromptBuilder,
        model: ModelIdentity,
    ) -> Self {
        RunFingerprint(Fingerprint {
            schema_version: SCHEMA_VERSION,
            dataset: source.name().to_string(),
            data_sha256: source.sha256().to_string(),
            columns: data.var_names().to_vec(),
            split: String::new(),
            split_start: 0,
            split_end: 0,
            input_len: data.input_len(),
            output_len: 0,
            n_vars: data.n_vars(),
            d_model: model.d_model,
            value_format: prompts.value_format.name(),
            prompt_template: template_id(prompts),
            model_id: model.model_id,
            weights_sha256: model.weights_sha256,
            layers: model.layers,
            sca_seed: model.sca_seed,
            compute_precision: model.compute_precision,
            dtype: Dtype::F32,
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            created: String::new(),
        })
    }

    /// The fingerprint of the store of `split` at `output_len`.
    pub fn for_store(&self, split: &Split<'_>, output_len: usize) -> Fingerprint {
        let rows = split.rows();
        Fingerprint {
            split: split.kind().name().to_string(),
            split_start: rows.start,
            split_end: rows.end,
            output_len,
            ..self.0.clone()
        }
    }
}

/// The string recorded as the prompt template in store fingerprints.
fn template_id(builder: &PromptBuilder) -> String {
    let t = &builder.template;
    format!(
        "timekd-v1|{}|{}|every {}|{}|{:?}",
        t.history_noun, t.future_noun, t.every, t.unit, t.date_format
    )
}
