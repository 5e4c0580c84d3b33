//! The tensor names of a Hugging Face LLaMA checkpoint: one owner for the Burn loader and
//! the CUDA engine. Linear layers and norms are named by their prefix; the tensors are
//! `<prefix>.weight` (and `<prefix>.bias` where the config has biases).

use crate::weights::NamedTensors;

/// Token embedding, `[vocab, d]`.
pub(crate) const TOKEN_EMBEDDING: &str = "embed_tokens.weight";
/// The final RMSNorm.
pub(crate) const FINAL_NORM: &str = "norm";
/// The prefix of every key in checkpoints saved from `LlamaForCausalLM`.
const CAUSAL_LM_PREFIX: &str = "model.";

/// Reads `tensors` through the `model.` prefix when its keys carry it (saved from
/// `LlamaForCausalLM`; none when saved from `LlamaModel`).
pub(crate) fn use_checkpoint_prefix(tensors: &mut NamedTensors<'_>) {
    tensors.use_prefix_if_needed(CAUSAL_LM_PREFIX, TOKEN_EMBEDDING);
}

/// The layers of block `i`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlockNames(pub usize);

impl BlockNames {
    fn part(self, part: &str) -> String {
        format!("layers.{}.{part}", self.0)
    }
    /// RMSNorm before attention.
    pub fn input_norm(self) -> String {
        self.part("input_layernorm")
    }
    /// Query projection, `[heads · head_dim, d]` (`nn.Linear` layout).
    pub fn q_proj(self) -> String {
        self.part("self_attn.q_proj")
    }
    /// Key projection, `[kv_heads · head_dim, d]`.
    pub fn k_proj(self) -> String {
        self.part("self_attn.k_proj")
    }
    /// Value projection, `[kv_heads · head_dim, d]`.
    pub fn v_proj(self) -> String {
        self.part("self_attn.v_proj")
    }
    /// Attention output projection, `[d, heads · head_dim]`.
    pub fn o_proj(self) -> String {
        self.part("self_attn.o_proj")
    }
    /// RMSNorm before the MLP.
    pub fn post_attention_norm(self) -> String {
        self.part("post_attention_layernorm")
    }
    /// The MLP's gate projection, `[inner, d]`.
    pub fn gate_proj(self) -> String {
        self.part("mlp.gate_proj")
    }
    /// The MLP's up projection, `[inner, d]`.
    pub fn up_proj(self) -> String {
        self.part("mlp.up_proj")
    }
    /// The MLP's down projection, `[d, inner]`.
    pub fn down_proj(self) -> String {
        self.part("mlp.down_proj")
    }
}
