//! `timekd prompts`: the teacher's prompts, token ids and token types for chosen windows,
//! one JSON line per (window, variable), with the field names of the parity fixture's
//! `prompts.json`, in GPT-2's tokens or those of `--model`'s checkpoint (its
//! `tokenizer.json`); with `--states`, each prompt's last-token state from the checkpoint
//! (any family: GPT-2, LLaMA, BERT), so a user can check the teacher against a reference of
//! their own. Without `--states` no weights are loaded.

use std::io::Write;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::json;
use timekd_data::SplitKind;
use timekd_teacher::gpt2::hub::fetch_model;
use timekd_teacher::{
    BatchOptions, DeviceSpec, ModelConfig, Precision, PromptBuilder, PromptFamily, PromptTemplate,
    PromptTokenizer, Tokenizer, ValueFormat, WindowInput, encode_windows,
};

use crate::data_args::DataArgs;
use crate::download::DownloadProgress;

/// Print the teacher's GT and HD prompts, token ids, token texts and types as JSON lines.
///
/// Example: `timekd prompts --output-len 24 --windows 0,5538 --columns OT`
#[derive(Args, Debug)]
pub struct PromptsArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Split the window indices refer to: train, val or test.
    #[arg(long, default_value = "train")]
    split: SplitKind,
    /// Window indices within the split, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0",
        value_name = "I,J,..."
    )]
    windows: Vec<usize>,
    /// How values are written: `int` (truncated, the release's format) or `fixedN`.
    #[arg(long, default_value = "int", value_name = "FORMAT")]
    value_format: ValueFormat,
    /// The checkpoint whose tokens are shown (GPT-2's own tokenizer for `model_type` gpt2,
    /// else its `tokenizer.json`) and whose states `--states` adds: a directory, or a model
    /// id (Hugging Face cache, downloaded when missing) [GPT-2's tokens, no model].
    #[arg(long, value_name = "DIR|ID")]
    model: Option<String>,
    /// Add each prompt's last-token hidden state (after the final norm — BERT's last block —
    /// before the SCA; the calibrated forward of the checkpoint's family in f32 on the CPU)
    /// as `gt_state` and `hd_state`.
    #[arg(long, requires = "model")]
    states: bool,
}

/// Runs the command.
pub fn run(args: PromptsArgs) -> anyhow::Result<()> {
    let loaded = args.data.load()?;
    let data = &loaded.dataset;
    let split = data.split(args.split);
    if let Some(&bad) = args.windows.iter().find(|&&i| i >= split.num_windows()) {
        bail!(
            "--windows {bad}: the {} split of {} has {} windows (0..{})",
            args.split,
            loaded.source.origin(),
            split.num_windows(),
            split.num_windows()
        );
    }
    let builder = PromptBuilder::new(
        PromptTemplate::for_preset(data.preset(), data.interval_seconds()),
        args.value_format,
    );
    let model_dir = match &args.model {
        Some(model) => Some(fetch_model(model, &mut DownloadProgress::new())?),
        None => None,
    };
    let tokenizer = match &model_dir {
        Some(dir) => Tokenizer::for_model_dir(dir)?,
        None => Tokenizer::gpt2()?,
    };
    let windows: Vec<WindowInput> = args
        .windows
        .iter()
        .map(|&i| WindowInput::from_window(&split.window(i), data.n_vars()))
        .collect();
    let prompts = encode_windows(&tokenizer, &builder, &windows)?;
    let texts = |ids: &[u32]| -> anyhow::Result<Vec<String>> {
        ids.iter()
            .map(|&id| tokenizer.token_text(id).map_err(anyhow::Error::from))
            .collect()
    };
    let codes = |p: &timekd_teacher::EncodedPrompt| -> Vec<u8> {
        p.types.iter().map(|t| t.code()).collect()
    };
    let states = match (&model_dir, args.states) {
        (Some(dir), true) => Some(last_token_states(dir, &prompts)?),
        _ => None,
    };
    let mut out = std::io::stdout().lock();
    for (i, p) in prompts.iter().enumerate() {
        let mut line = json!({
            "split": args.split.to_string(),
            "window": p.window,
            "variable": p.variable,
            "column": data.var_names()[p.variable],
            "gt_prompt": p.text.gt,
            "hd_prompt": p.text.hd,
            "gt_ids": p.gt.ids,
            "hd_ids": p.hd.ids,
            "gt_tokens": texts(&p.gt.ids)?,
            "hd_tokens": texts(&p.hd.ids)?,
            "gt_token_types": codes(&p.gt),
            "hd_token_types": codes(&p.hd),
        });
        if let Some((states, d)) = &states {
            line["gt_state"] = json!(states[2 * i * d..(2 * i + 1) * d]);
            line["hd_state"] = json!(states[(2 * i + 1) * d..(2 * i + 2) * d]);
        }
        writeln!(out, "{line}").context("writing to stdout")?;
    }
    Ok(())
}

/// The last-token states of every prompt's GT then HD, `[2 · prompts, d]` row-major, and `d`:
/// the checkpoint's family in Burn, every block, f32 on the CPU.
fn last_token_states(
    dir: &std::path::Path,
    prompts: &[timekd_teacher::VariablePrompts],
) -> anyhow::Result<(Vec<f32>, usize)> {
    let device = DeviceSpec::Cpu.devices()?.remove(0);
    let config = ModelConfig::for_model_dir(dir)?;
    let shape = config.shape();
    let model = config.load_burn(dir, shape.layers, &device, Precision::F32)?;
    eprintln!(
        "states of {} ({}, {} layers, width {}), f32 on the CPU",
        dir.display(),
        shape.family,
        shape.layers,
        shape.d_model
    );
    let families: Vec<PromptFamily> = prompts
        .iter()
        .flat_map(|p| [&p.gt, &p.hd])
        .map(|prompt| PromptFamily::new(vec![prompt], false))
        .collect();
    let states = model.family_last_token_states(&families, &BatchOptions::default())?;
    let values = states
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("reading the states back: {e:?}"))?;
    Ok((values, shape.d_model))
}
