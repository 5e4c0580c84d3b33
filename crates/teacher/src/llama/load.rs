//! Building [`LlamaModule`] from a Hugging Face LLaMA checkpoint (`model.safetensors`; the
//! tensor names are in `names`).
//!
//! Weights are `nn.Linear` `[out, in]` (transposed on load), usually bf16. Keys carry the
//! `model.` prefix of `LlamaForCausalLM` (or none, saved from `LlamaModel`); `lm_head.weight`
//! (absent when tied to the embedding) is never read: the teacher keeps hidden states.

use burn::tensor::Device;

use super::config::LlamaConfig;
use super::model::{LlamaBlock, LlamaModule, Rotary};
use super::names::{self, BlockNames};
use crate::error::TeacherError;
use crate::weights::{Layout, NamedTensors};

/// Builds the first `layers` blocks of the checkpoint.
pub(crate) fn build_module(
    tensors: &mut NamedTensors<'_>,
    config: &LlamaConfig,
    layers: usize,
    device: &Device,
) -> Result<LlamaModule, TeacherError> {
    names::use_checkpoint_prefix(tensors);
    let d = config.hidden_size;
    let q = config.num_attention_heads * config.head_dim;
    let kv = config.num_key_value_heads * config.head_dim;
    let inner = config.intermediate_size;
    let eps = config.rms_norm_eps;
    let rotary = Rotary::new(config, device);
    let linear =
        |name: String, shape, bias| tensors.linear(&name, shape, Layout::OutIn, bias, device);
    let blocks = (0..layers)
        .map(|i| {
            let n = BlockNames(i);
            let (attn_bias, mlp_bias) = (config.attention_bias, config.mlp_bias);
            Ok(LlamaBlock {
                input_norm: tensors.rms_norm(&n.input_norm(), d, eps, device)?,
                q_proj: linear(n.q_proj(), [d, q], attn_bias)?,
                k_proj: linear(n.k_proj(), [d, kv], attn_bias)?,
                v_proj: linear(n.v_proj(), [d, kv], attn_bias)?,
                o_proj: linear(n.o_proj(), [q, d], attn_bias)?,
                post_attention_norm: tensors.rms_norm(&n.post_attention_norm(), d, eps, device)?,
                gate_proj: linear(n.gate_proj(), [d, inner], mlp_bias)?,
                up_proj: linear(n.up_proj(), [d, inner], mlp_bias)?,
                down_proj: linear(n.down_proj(), [inner, d], mlp_bias)?,
                heads: config.num_attention_heads,
                kv_heads: config.num_key_value_heads,
                rotary: rotary.clone(),
            })
        })
        .collect::<Result<Vec<_>, TeacherError>>()?;
    Ok(LlamaModule {
        embed_tokens: tensors.embedding(names::TOKEN_EMBEDDING, config.vocab_size, d, device)?,
        blocks,
        norm: tensors.rms_norm(names::FINAL_NORM, d, eps, device)?,
    })
}
