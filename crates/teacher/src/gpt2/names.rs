//! The tensor names of a Hugging Face GPT-2 checkpoint (`model.safetensors`): one owner for
//! the Burn loader, the CUDA engine and the random-model writer. Norms and linear layers are
//! named by their prefix; the tensors are `<prefix>.weight` and `<prefix>.bias`.

use crate::weights::NamedTensors;

/// Token embedding, `[vocab, d]`.
pub(crate) const TOKEN_EMBEDDING: &str = "wte.weight";
/// Position embedding, `[positions, d]`.
pub(crate) const POSITION_EMBEDDING: &str = "wpe.weight";
/// The final LayerNorm.
pub(crate) const FINAL_NORM: &str = "ln_f";
/// The prefix of every key in checkpoints saved from `GPT2LMHeadModel`.
const LM_HEAD_PREFIX: &str = "transformer.";

/// Reads `tensors` through the `transformer.` prefix when its keys carry it.
pub(crate) fn use_checkpoint_prefix(tensors: &mut NamedTensors<'_>) {
    tensors.use_prefix_if_needed(LM_HEAD_PREFIX, TOKEN_EMBEDDING);
}

/// The layers of block `i`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlockNames(pub usize);

impl BlockNames {
    fn part(self, part: &str) -> String {
        format!("h.{}.{part}", self.0)
    }
    /// LayerNorm before attention.
    pub fn ln_1(self) -> String {
        self.part("ln_1")
    }
    /// The fused q|k|v projection, `[d, 3d]` (Conv1D layout).
    pub fn attn(self) -> String {
        self.part("attn.c_attn")
    }
    /// Attention output projection, `[d, d]`.
    pub fn attn_proj(self) -> String {
        self.part("attn.c_proj")
    }
    /// LayerNorm before the MLP.
    pub fn ln_2(self) -> String {
        self.part("ln_2")
    }
    /// MLP up-projection, `[d, inner]`.
    pub fn fc(self) -> String {
        self.part("mlp.c_fc")
    }
    /// MLP down-projection, `[inner, d]`.
    pub fn mlp_proj(self) -> String {
        self.part("mlp.c_proj")
    }
}
