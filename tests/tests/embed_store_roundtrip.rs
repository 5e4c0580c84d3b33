//! data → teacher → store → reader, end to end on the tiny model and the shipped ETTh1:
//! what the store hands back equals the teacher's one-window-at-a-time output.

use std::path::Path;

use burn::tensor::Device;
use timekd_data::{Dataset, DatasetOptions, SplitKind};
use timekd_store::{Dtype, Fingerprint, StoreReader, StoreWriter, WriterOptions};
use timekd_teacher::{
    BatchOptions, Gpt2, PromptBuilder, PromptTemplate, Sca, Teacher, ValueFormat, WindowInput,
};

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[test]
fn stored_embeddings_equal_one_by_one_teacher_output() {
    let device = Device::flex();
    let options = DatasetOptions {
        output_len: 24,
        ..Default::default()
    };
    let data = Dataset::load(&repo().join("datasets/ETTh1.csv"), &options).unwrap();
    let gpt2 = Gpt2::load(
        repo().join("models/tiny-gpt2").to_str().unwrap(),
        None,
        &device,
    )
    .unwrap();
    let (n, d) = (data.n_vars(), gpt2.d_model());
    let sca = Sca::init(n, 4 * d, 7, &device);
    let template = PromptTemplate::for_preset(data.preset(), data.interval_seconds());
    let batching = BatchOptions {
        max_prompts: 16,
        max_tokens: 16 * 320,
        length_bucket: 32,
        share_prefix: true,
        batch_multiple: 1,
    };
    let teacher = Teacher::new(
        gpt2,
        sca,
        PromptBuilder::new(template, ValueFormat::Int),
        batching,
    )
    .unwrap();

    // Windows spread over the split, embedded together in one batched call.
    let train = data.split(SplitKind::Train);
    let picks = [0usize, 1, 777, 5538, train.num_windows() - 1];
    let inputs: Vec<WindowInput> = picks
        .iter()
        .map(|&i| WindowInput::from_window(&train.window(i), n))
        .collect();
    let batched: Vec<f32> = teacher
        .embed(&inputs)
        .unwrap()
        .into_data()
        .convert::<f32>()
        .try_to_vec()
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ETTh1/24/train.h5");
    let rows = train.rows();
    let fingerprint = Fingerprint {
        schema_version: timekd_store::SCHEMA_VERSION,
        dataset: "ETTh1".into(),
        data_sha256: "0".repeat(64),
        columns: data.var_names().to_vec(),
        split: "train".into(),
        split_start: rows.start,
        split_end: rows.end,
        input_len: 96,
        output_len: 24,
        n_vars: n,
        d_model: d,
        value_format: "int".into(),
        prompt_template: "test".into(),
        model_id: "models/tiny-gpt2".into(),
        weights_sha256: teacher.gpt2().weights_sha256().to_string(),
        layers: teacher.gpt2().layers(),
        sca_seed: 7,
        compute_precision: "f32".into(),
        dtype: Dtype::F32,
        tool_version: "test".into(),
        created: String::new(),
    };
    let mut writer =
        StoreWriter::open(&path, fingerprint, picks.len(), WriterOptions::default()).unwrap();
    for (slot, values) in batched.chunks(n * d).enumerate() {
        writer.put(slot, values).unwrap();
    }
    writer.finish().unwrap();
    let reader = StoreReader::open(&path).unwrap();

    for (slot, input) in inputs.iter().enumerate() {
        let alone: Vec<f32> = teacher
            .embed(std::slice::from_ref(input))
            .unwrap()
            .into_data()
            .convert::<f32>()
            .try_to_vec()
            .unwrap();
        let stored = reader.read(slot).unwrap();
        let diff = stored
            .iter()
            .zip(&alone)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f32>()
            .sqrt();
        let norm = alone.iter().map(|v| v * v).sum::<f32>().sqrt();
        eprintln!(
            "window {}: stored vs one-by-one relative L2 {:e}",
            input.index,
            diff / norm
        );
        assert!(
            diff / norm <= 1e-5,
            "window {}: relative L2 {}",
            input.index,
            diff / norm
        );
    }
}
