//! Embeds ETTh1 train windows with the tiny GPT-2 shipped in the repository, on the CPU.
//!
//! ```text
//! cargo run -p timekd-teacher --example embed_window -- [WINDOW] [H]
//! ```
//!
//! Prints the window's first prompts, their token counts and types, and the stored
//! embedding's shape and first values.

use std::path::PathBuf;

use burn::tensor::Device;
use timekd_data::{Dataset, DatasetOptions, SplitKind};
use timekd_teacher::{
    BatchOptions, Gpt2, PromptBuilder, PromptTemplate, Sca, Teacher, ValueFormat, WindowInput,
    encode_windows,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let window: usize = args.next().map_or(Ok(0), |a| a.parse())?;
    let output_len: usize = args.next().map_or(Ok(24), |a| a.parse())?;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");

    let data = Dataset::load(
        &root.join("datasets/ETTh1.csv"),
        &DatasetOptions {
            output_len,
            ..Default::default()
        },
    )?;
    let device = Device::flex();
    let gpt2 = Gpt2::load_dir(&root.join("models/tiny-gpt2"), None, &device)?;
    println!(
        "model: {} layers, d = {}, weights sha256 {}",
        gpt2.layers(),
        gpt2.d_model(),
        gpt2.weights_sha256()
    );
    let sca = Sca::init(data.n_vars(), 4 * gpt2.d_model(), 20250501, &device);
    let builder = PromptBuilder::new(
        PromptTemplate::for_preset(data.preset(), data.interval_seconds()),
        ValueFormat::Int,
    );
    let teacher = Teacher::new(gpt2, sca, builder, BatchOptions::default())?;

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
