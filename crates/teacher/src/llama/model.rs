//! LLaMA in Burn ([`Architecture`] of the `llama` family).
//!
//! ```text
//! h   = embed_tokens[ids]
//! h   = h + Attn(rms_1(h));  h = h + down(silu(gate(rms_2(h))) · up(rms_2(h)))   (each block)
//! out = norm(h)
//! ```
//!
//! Queries and keys are rotated by their positions (rotary embeddings, Hugging Face's
//! half-split layout: dimension i pairs with i + head_dim/2); key/value heads are shared by
//! groups of query heads. The residual stream and norms are f32; products follow the
//! model's [`Precision`].

use burn::nn::{Embedding, Linear, RmsNorm};
use burn::tensor::activation::silu;
use burn::tensor::{Device, FloatDType, Int, Tensor, TensorData};

use super::config::LlamaConfig;
use crate::arch::{Architecture, Block};
use crate::attention::{scale_queries, split_heads};
use crate::error::TeacherError;
use crate::kv::LayerKv;
use crate::precision::Precision;
use crate::shape::ModelShape;
use crate::weights::NamedTensors;

/// Rotary position embedding: the inverse frequencies of one head's dimension pairs.
#[derive(Debug, Clone)]
pub(crate) struct Rotary {
    inverse_frequencies: Tensor<1>,
}

impl Rotary {
    pub(crate) fn new(config: &LlamaConfig, device: &Device) -> Self {
        let values = config.inverse_frequencies();
        let half = values.len();
        Rotary {
            inverse_frequencies: Tensor::from_data(TensorData::new(values, [half]), device),
        }
    }

    /// `x` [b, heads, t, head_dim] rotated by `positions` [b or 1, t].
    fn rotate(&self, x: Tensor<4>, positions: &Tensor<2, Int>) -> Tensor<4> {
        let [_, _, _, hd] = x.dims();
        let half = hd / 2;
        let [pb, t] = positions.dims();
        let angles = positions.clone().float().reshape([pb, 1, t, 1])
            * self.inverse_frequencies.clone().reshape([1, 1, 1, half]);
        let dtype = x.dtype();
        let (cos, sin) = (angles.clone().cos().cast(dtype), angles.sin().cast(dtype));
        let x1 = x.clone().narrow(3, 0, half);
        let x2 = x.narrow(3, half, half);
        Tensor::cat(
            vec![
                x1.clone() * cos.clone() - x2.clone() * sin.clone(),
                x2 * cos + x1 * sin,
            ],
            3,
        )
    }
}

/// One LLaMA block: pre-RMSNorm grouped-query attention with rotary positions, then a
/// pre-RMSNorm SwiGLU MLP.
#[derive(Debug)]
pub struct LlamaBlock {
    pub(crate) input_norm: RmsNorm,
    pub(crate) q_proj: Linear,
    pub(crate) k_proj: Linear,
    pub(crate) v_proj: Linear,
    pub(crate) o_proj: Linear,
    pub(crate) post_attention_norm: RmsNorm,
    pub(crate) gate_proj: Linear,
    pub(crate) up_proj: Linear,
    pub(crate) down_proj: Linear,
    pub(crate) heads: usize,
    pub(crate) kv_heads: usize,
    pub(crate) rotary: Rotary,
}

impl LlamaBlock {
    /// Queries of the normalised rows `h`.
    fn queries_of(
        &self,
        h: Tensor<3>,
        positions: &Tensor<2, Int>,
        precision: Precision,
    ) -> Tensor<4> {
        let q = split_heads(precision.linear(&self.q_proj, h), self.heads);
        scale_queries(self.rotary.rotate(q, positions))
    }

    /// Keys and values of the normalised rows `h`.
    fn keys_values_of(
        &self,
        h: Tensor<3>,
        positions: &Tensor<2, Int>,
        precision: Precision,
    ) -> LayerKv {
        let k = split_heads(precision.linear(&self.k_proj, h.clone()), self.kv_heads);
        let v = split_heads(precision.linear(&self.v_proj, h), self.kv_heads);
        LayerKv::new(self.rotary.rotate(k, positions), v)
    }
}

impl Block for LlamaBlock {
    fn queries(
        &self,
        x: &Tensor<3>,
        positions: &Tensor<2, Int>,
        precision: Precision,
    ) -> Tensor<4> {
        self.queries_of(self.input_norm.forward(x.clone()), positions, precision)
    }

    fn keys_values(
        &self,
        x: &Tensor<3>,
        positions: &Tensor<2, Int>,
        precision: Precision,
    ) -> LayerKv {
        self.keys_values_of(self.input_norm.forward(x.clone()), positions, precision)
    }

    fn projections(
        &self,
        x: &Tensor<3>,
        positions: &Tensor<2, Int>,
        precision: Precision,
    ) -> (Tensor<4>, LayerKv) {
        let h = self.input_norm.forward(x.clone());
        (
            self.queries_of(h.clone(), positions, precision),
            self.keys_values_of(h, positions, precision),
        )
    }

    fn finish(&self, x: Tensor<3>, context: Tensor<3>, precision: Precision) -> Tensor<3> {
        let x = x + precision
            .linear(&self.o_proj, context)
            .cast(FloatDType::F32);
        let h = self.post_attention_norm.forward(x.clone());
        let gate = silu(precision.linear(&self.gate_proj, h.clone()));
        let inner = gate * precision.linear(&self.up_proj, h);
        x + precision
            .linear(&self.down_proj, inner)
            .cast(FloatDType::F32)
    }

    fn prepared(self, precision: Precision) -> Self {
        let p = |layer| precision.prepare_linear(layer);
        LlamaBlock {
            q_proj: p(self.q_proj),
            k_proj: p(self.k_proj),
            v_proj: p(self.v_proj),
            o_proj: p(self.o_proj),
            gate_proj: p(self.gate_proj),
            up_proj: p(self.up_proj),
            down_proj: p(self.down_proj),
            ..self
        }
    }
}

/// LLaMA (token embedding, blocks, final RMSNorm), inference only.
#[derive(Debug)]
pub struct LlamaModule {
    pub(crate) embed_tokens: Embedding,
    pub(crate) blocks: Vec<LlamaBlock>,
    pub(crate) norm: RmsNorm,
}

impl Architecture for LlamaModule {
    type Config = LlamaConfig;
    type Block = LlamaBlock;
    const MODEL_TYPE: &'static str = "llama";
    const CAUSAL: bool = true;

    fn parse_config(text: &str) -> Result<LlamaConfig, String> {
        LlamaConfig::from_json(text)
    }

    fn shape(config: &LlamaConfig) -> ModelShape {
        ModelShape {
            family: Self::MODEL_TYPE,
            d_model: config.hidden_size,
            layers: config.num_hidden_layers,
            heads: config.num_attention_heads,
            kv_heads: config.num_key_value_heads,
            head_dim: config.head_dim,
            mlp_width: config.intermediate_size,
            gated_mlp: true,
            vocab: config.vocab_size,
            position_rows: 0,
            max_tokens: config.max_position_embeddings,
            causal: Self::CAUSAL,
        }
    }

    fn build(
        tensors: &mut NamedTensors<'_>,
        config: &LlamaConfig,
        layers: usize,
        device: &Device,
    ) -> Result<Self, TeacherError> {
        super::load::build_module(tensors, config, layers, device)
    }

    fn embed(&self, ids: Tensor<2, Int>, _: &Tensor<2, Int>) -> Tensor<3> {
        self.embed_tokens.forward(ids)
    }

    fn blocks(&self) -> &[LlamaBlock] {
        &self.blocks
    }

    fn blocks_mut(&mut self) -> &mut Vec<LlamaBlock> {
        &mut self.blocks
    }

    fn final_norm(&self, x: Tensor<3>) -> Tensor<3> {
        self.norm.forward(x)
    }
}
