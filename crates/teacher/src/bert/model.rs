//! BERT in Burn ([`Architecture`] of the `bert` family), and its checkpoint's names.
//!
//! ```text
//! h   = LN(word[ids] + position[positions] + token_type[0])
//! h   = LN(h + Attn(h));  h = LN(h + W2 · gelu(W1 · h))        (each block: post-norm)
//! out = h
//! ```
//!
//! Attention is bidirectional: with the calibration every token still sees every other
//! (−100 across types), so prompts run whole and padding keys are blocked by the mask.
//! Checkpoint keys may carry the `bert.` prefix of `BertForMaskedLM` / `BertForPreTraining`
//! (the pooler and heads are never read); LayerNorms are `weight`/`bias` or the older
//! `gamma`/`beta`; linear weights are `nn.Linear` `[out, in]`.

use burn::nn::{Embedding, LayerNorm, Linear};
use burn::tensor::activation::{gelu, gelu_approximate};
use burn::tensor::{Device, FloatDType, Int, Tensor};

use super::config::BertConfig;
use crate::arch::{Architecture, Block};
use crate::attention::{scale_queries, split_heads};
use crate::error::TeacherError;
use crate::kv::LayerKv;
use crate::precision::Precision;
use crate::shape::ModelShape;
use crate::weights::{Layout, NamedTensors};

/// The embeddings' names (after the optional prefix).
const WORD_EMBEDDING: &str = "embeddings.word_embeddings.weight";
const POSITION_EMBEDDING: &str = "embeddings.position_embeddings.weight";
const TYPE_EMBEDDING: &str = "embeddings.token_type_embeddings.weight";
const EMBEDDING_NORM: &str = "embeddings.LayerNorm";
/// The prefix of every key in checkpoints saved from `BertFor*` heads.
const HEAD_PREFIX: &str = "bert.";

/// One BERT block: attention, then the MLP, each followed by residual + LayerNorm.
#[derive(Debug)]
pub struct BertBlock {
    pub(crate) query: Linear,
    pub(crate) key: Linear,
    pub(crate) value: Linear,
    pub(crate) attention_out: Linear,
    pub(crate) attention_norm: LayerNorm,
    pub(crate) intermediate: Linear,
    pub(crate) output: Linear,
    pub(crate) output_norm: LayerNorm,
    pub(crate) heads: usize,
    pub(crate) tanh_gelu: bool,
}

impl BertBlock {
    /// `layer(x)` [b, t, d] as [b, heads, t, hd].
    fn projected_heads(&self, layer: &Linear, x: &Tensor<3>, precision: Precision) -> Tensor<4> {
        split_heads(precision.linear(layer, x.clone()), self.heads)
    }
}

impl Block for BertBlock {
    fn queries(&self, x: &Tensor<3>, _: &Tensor<2, Int>, precision: Precision) -> Tensor<4> {
        scale_queries(self.projected_heads(&self.query, x, precision))
    }

    fn keys_values(&self, x: &Tensor<3>, _: &Tensor<2, Int>, precision: Precision) -> LayerKv {
        LayerKv::new(
            self.projected_heads(&self.key, x, precision),
            self.projected_heads(&self.value, x, precision),
        )
    }

    fn finish(&self, x: Tensor<3>, context: Tensor<3>, precision: Precision) -> Tensor<3> {
        let attended = precision
            .linear(&self.attention_out, context)
            .cast(FloatDType::F32);
        let h = self.attention_norm.forward(x + attended);
        let inner = precision.linear(&self.intermediate, h.clone());
        let inner = if self.tanh_gelu {
            gelu_approximate(inner)
        } else {
            gelu(inner)
        };
        let out = precision.linear(&self.output, inner).cast(FloatDType::F32);
        self.output_norm.forward(h + out)
    }

    fn prepared(self, precision: Precision) -> Self {
        let p = |layer| precision.prepare_linear(layer);
        BertBlock {
            query: p(self.query),
            key: p(self.key),
            value: p(self.value),
            attention_out: p(self.attention_out),
            intermediate: p(self.intermediate),
            output: p(self.output),
            ..self
        }
    }
}

/// BERT's encoder (embeddings with their LayerNorm, blocks), inference only.
#[derive(Debug)]
pub struct BertModule {
    pub(crate) word: Embedding,
    pub(crate) position: Embedding,
    /// Row 0 of the token-type embedding: every prompt token is type 0.
    pub(crate) token_type: Tensor<1>,
    pub(crate) embedding_norm: LayerNorm,
    pub(crate) blocks: Vec<BertBlock>,
}

impl Architecture for BertModule {
    type Config = BertConfig;
    type Block = BertBlock;
    const MODEL_TYPE: &'static str = "bert";
    const CAUSAL: bool = false;

    fn parse_config(text: &str) -> Result<BertConfig, String> {
        BertConfig::from_json(text)
    }

    fn shape(config: &BertConfig) -> ModelShape {
        ModelShape {
            family: Self::MODEL_TYPE,
            d_model: config.hidden_size,
            layers: config.num_hidden_layers,
            heads: config.num_attention_heads,
            kv_heads: config.num_attention_heads,
            head_dim: config.hidden_size / config.num_attention_heads,
            mlp_width: config.intermediate_size,
            gated_mlp: false,
            vocab: config.vocab_size,
            position_rows: config.max_position_embeddings + config.type_vocab_size,
            max_tokens: config.max_position_embeddings,
            causal: Self::CAUSAL,
        }
    }

    fn build(
        tensors: &mut NamedTensors<'_>,
        config: &BertConfig,
        layers: usize,
        device: &Device,
    ) -> Result<Self, TeacherError> {
        tensors.use_prefix_if_needed(HEAD_PREFIX, WORD_EMBEDDING);
        let d = config.hidden_size;
        let inner = config.intermediate_size;
        let eps = config.layer_norm_eps;
        let linear =
            |name: String, shape| tensors.linear(&name, shape, Layout::OutIn, true, device);
        let blocks = (0..layers)
            .map(|i| {
                let part = |name: &str| format!("encoder.layer.{i}.{name}");
                Ok(BertBlock {
                    query: linear(part("attention.self.query"), [d, d])?,
                    key: linear(part("attention.self.key"), [d, d])?,
                    value: linear(part("attention.self.value"), [d, d])?,
                    attention_out: linear(part("attention.output.dense"), [d, d])?,
                    attention_norm: tensors.layer_norm(
                        &part("attention.output.LayerNorm"),
                        d,
                        eps,
                        device,
                    )?,
                    intermediate: linear(part("intermediate.dense"), [d, inner])?,
                    output: linear(part("output.dense"), [inner, d])?,
                    output_norm: tensors.layer_norm(&part("output.LayerNorm"), d, eps, device)?,
                    heads: config.num_attention_heads,
                    tanh_gelu: config.tanh_gelu,
                })
            })
            .collect::<Result<Vec<_>, TeacherError>>()?;
        let types: Tensor<2> =
            tensors.tensor(TYPE_EMBEDDING, [config.type_vocab_size, d], device)?;
        Ok(BertModule {
            word: tensors.embedding(WORD_EMBEDDING, config.vocab_size, d, device)?,
            position: tensors.embedding(
                POSITION_EMBEDDING,
                config.max_position_embeddings,
                d,
                device,
            )?,
            token_type: types.narrow(0, 0, 1).reshape([d]),
            embedding_norm: tensors.layer_norm(EMBEDDING_NORM, d, eps, device)?,
            blocks,
        })
    }

    fn embed(&self, ids: Tensor<2, Int>, positions: &Tensor<2, Int>) -> Tensor<3> {
        let x = self.word.forward(ids)
            + self.position.forward(positions.clone())
            + self
                .token_type
                .clone()
                .reshape([1, 1, self.token_type.dims()[0]]);
        self.embedding_norm.forward(x)
    }

    fn blocks(&self) -> &[BertBlock] {
        &self.blocks
    }

    fn blocks_mut(&mut self) -> &mut Vec<BertBlock> {
        &mut self.blocks
    }

    fn final_norm(&self, x: Tensor<3>) -> Tensor<3> {
        x
    }
}
