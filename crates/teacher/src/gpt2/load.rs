//! Building [`Gpt2Module`] from a Hugging Face GPT-2 checkpoint (`model.safetensors`).
//!
//! Conv1D weights are stored [in, out], which is Burn's `Linear` layout, so they load
//! untransposed. The causal-mask buffers `attn.bias` / `attn.masked_bias` of the real
//! checkpoint are not parameters and are never read. Keys may carry a `transformer.`
//! prefix (checkpoints saved from `GPT2LMHeadModel`).

use burn::tensor::Device;

use super::config::Gpt2Config;
use super::model::{Gpt2Block, Gpt2Module};
use super::names::{self, BlockNames};
use crate::error::TeacherError;
use crate::weights::{Layout, NamedTensors};

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
    let wte = tensors.embedding(names::TOKEN_EMBEDDING, config.vocab_size, d, device)?;
    let wpe = tensors.embedding(names::POSITION_EMBEDDING, config.n_positions, d, device)?;
    let linear = |name: &str, shape| tensors.linear(name, shape, Layout::InOut, true, device);
    let blocks = (0..layers)
        .map(|i| {
            let n = BlockNames(i);
            Ok(Gpt2Block {
                ln_1: tensors.layer_norm(&n.ln_1(), d, eps, device)?,
                c_attn: linear(&n.attn(), [d, 3 * d])?,
                attn_proj: linear(&n.attn_proj(), [d, d])?,
                ln_2: tensors.layer_norm(&n.ln_2(), d, eps, device)?,
                c_fc: linear(&n.fc(), [d, config.n_inner])?,
                mlp_proj: linear(&n.mlp_proj(), [config.n_inner, d])?,
                n_head: config.n_head,
                tanh_gelu: config.tanh_gelu,
            })
        })
        .collect::<Result<Vec<_>, TeacherError>>()?;
    let ln_f = tensors.layer_norm(names::FINAL_NORM, d, eps, device)?;
    Ok(Gpt2Module {
        wte,
        wpe,
        blocks,
        ln_f,
    })
}
