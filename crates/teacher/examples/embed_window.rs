//! Embeds an ETTh1 train window on the CPU with a teacher of any family: the tiny GPT-2
//! shipped in the repository by default, or the checkpoint directory given (its family from
//! `config.json`, e.g. the LLaMA or BERT test fixtures).
//!
//! ```text
//! cargo run -p timekd-teacher --example embed_window -- [WINDOW] [H] [MODEL_DIR]
//! cargo run -p timekd-teacher --example embed_window -- 0 24 crates/teacher/tests/fixtures/families/llama
//! ```
//!
//! Prints the model, the window's first prompts, their token counts and types, and the stored
//! embedding's shape and first values.

use std::path::PathBuf;

use burn::tensor::Device;
use timekd_data::{Dataset, DatasetOptions, SplitKind};
use timekd_teacher::{
    BatchOptions, ModelConfig, Precision, PromptBuilder, PromptTemplate, Sca, Teacher, ValueFormat,
    WindowInput, encode_windows,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let window: usize = args.next().map_or(Ok(0), |a| a.parse())?;
    let output_len: usize = args.next().map_or(Ok(24), |a| a.parse())?;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let model_dir = args
        .next()
        .map_or_else(|| root.join("models/tiny-gpt2"), PathBuf::from);

    let data = Dataset::load(
        &root.join("datasets/ETTh1.csv"),
        &DatasetOptions {
            output_len,
            ..Default::default()
        },
    )?;
    let device = Device::flex();
    let config = ModelConfig::for_model_dir(&model_dir)?;
    let shape = config.shape();
    let model = config.load_burn(&model_dir, shape.layers, &device, Precision::F32)?;
    println!(
        "model: {} ({}), {} layers, d = {}, weights sha256 {}",
        model_dir.display(),
        model.family(),
        model.layers(),
        model.d_model(),
        model.weights_sha256()
    );
    let sca = Sca::init(data.n_vars(), 4 * model.d_model(), 20250501, &device);
    let builder = PromptBuilder::new(
        PromptTemplate::for_preset(data.preset(), data.interval_seconds()),
        ValueFormat::Int,
    );
    let teacher = Teacher::new(model, sca, builder, BatchOptions::default())?;

    let train = data.split(SplitKind::Train);
    let input = WindowInput::from_window(&train.window(window), data.n_vars());
    let prompts = encode_windows(
        teacher.tokenizer(),
        teacher.prompt_builder(),
        std::slice::from_ref(&input),
    )?;
    let first = &prompts[0];
    println!("GT prompt ({} tokens): {}", first.gt.len(), first.text.gt);
    println!("HD prompt ({} tokens): {}", first.hd.len(), first.text.hd);
    let ts = first.gt.types.iter().filter(|t| t.code() == 1).count();
    println!(
        "GT token types: {ts} time-series, {} language",
        first.gt.len() - ts
    );

    let embedding = teacher.embed(&[input])?; // [1, N, D]
    let [_, n, d] = embedding.dims();
    let values = embedding
        .try_into_vec_as::<f32>()
        .map_err(|e| format!("reading the embedding back: {e:?}"))?;
    println!("stored embedding of window {window}: [{n}, {d}]");
    for (v, name) in data.var_names().iter().enumerate() {
        let row = &values[v * d..v * d + 4.min(d)];
        println!("  {name:<6} {row:?} ...");
    }
    Ok(())
}
