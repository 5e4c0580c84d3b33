//! Building [`Gpt2Module`] from a Hugging Face GPT-2 checkpoint (`model.safetensors`).
//!
//! Conv1D weights are stored [in, out], which is Burn's `Linear` layout, so they load
//! untransposed. The causal-mask buffers `attn.bias` / `attn.masked_bias` of the real
//! checkpoint are not parameters and are never read. Keys may carry a `transformer.`
//! prefix (checkpoints saved from `GPT2LMHeadModel`).

use burn::module::Param;
use burn::nn::{Embedding, LayerNorm, LayerNormConfig, Linear};
use burn::tensor::Device;

use super::config::Gpt2Config;
use super::model::{Block, Gpt2Module};
use super::names::{self, BlockNames};
use crate::error::TeacherError;
use crate::weights::NamedTensors;

/// Builds the first `layers` blocks of the checkpoint.
pub(crate) fn build_module(
    tensors: &mut NamedTensors<'_>,
    config: &Gpt2Config,
    layers: usize,
    device: &Device,
) -> Result<Gpt2Module, TeacherError> {
    names::use_checkpoint_prefix(tensors);
    let d = config.n_embd;
    let eps = config.layer_norm_epsilon;
    let wte = embedding(
        tensors,
        names::TOKEN_EMBEDDING,
        config.vocab_size,
        d,
        device,
    )?;
    let wpe = embedding(
        tensors,
        names::POSITION_EMBEDDING,
        config.n_positions,
        d,
        device,
    )?;
    let blocks = (0..layers)
        .map(|i| {
            let n = BlockNames(i);
            Ok(Block {
                ln_1: layer_norm(tensors, &n.ln_1(), d, eps, device)?,
                c_attn: linear(tensors, &n.attn(), d, 3 * d, device)?,
                attn_proj: linear(tensors, &n.attn_proj(), d, d, device)?,
                ln_2: layer_norm(tensors, &n.ln_2(), d, eps, device)?,
                c_fc: linear(tensors, &n.fc(), d, config.n_inner, device)?,
                mlp_proj: linear(tensors, &n.mlp_proj(), config.n_inner, d, device)?,
                n_head: config.n_head,
                tanh_gelu: config.tanh_gelu,
            })
        })
        .collect::<Result<Vec<_>, TeacherError>>()?;
    let ln_f = layer_norm(tensors, names::FINAL_NORM, d, eps, device)?;
    Ok(Gpt2Module {
        wte,
        wpe,
        blocks,
        ln_f,
    })
}

fn embedding(
    tensors: &NamedTensors<'_>,
    name: &str,
    rows: usize,
    d: usize,
    device: &Device,
) -> Result<Embedding, TeacherError> {
    Ok(Embedding {
        weight: Param::from_tensor(tensors.tensor(name, [rows, d], device)?),
    })
}

/// A Conv1D `{name}.weight` [d_in, d_out] and `{name}.bias` [d_out].
fn linear(
    tensors: &NamedTensors<'_>,
    name: &str,
    d_in: usize,
    d_out: usize,
    device: &Device,
) -> Result<Linear, TeacherError> {
    Ok(Linear {
        weight: Param::from_tensor(tensors.tensor(
            &format!("{name}.weight"),
            [d_in, d_out],
            device,
        )?),
        bias: Some(Param::from_tensor(tensors.tensor(
            &format!("{name}.bias"),
            [d_out],
            device,
        )?)),
    })
}

fn layer_norm(
    tensors: &NamedTensors<'_>,
    name: &str,
    d: usize,
    eps: f64,
    device: &Device,
) -> Result<LayerNorm, TeacherError> {
    let mut ln = LayerNormConfig::new(d).with_epsilon(eps).init(device);
    ln.gamma = Param::from_tensor(tensors.tensor(&format!("{name}.weight"), [d], device)?);
    ln.beta = Some(Param::from_tensor(tensors.tensor(
        &format!("{name}.bias"),
        [d],
        device,
    )?));
    Ok(ln)
}
