//! The GPT-2 transformer in Burn ([`Architecture`] of the `gpt2` family).
//!
//! ```text
//! h0  = wte[ids] + wpe[positions]
//! h   = h + Attn(ln_1(h));  h = h + MLP(ln_2(h))        (each block)
//! out = ln_f(h)
//! ```
//!
//! The residual stream and LayerNorms are f32; matrix products follow the model's
//! [`Precision`]. The q|k|v projection is one product when all three are wanted.

use burn::module::Module;
use burn::nn::{Embedding, LayerNorm, Linear};
use burn::tensor::activation::{gelu, gelu_approximate};
use burn::tensor::{Device, FloatDType, Int, Tensor};

use super::config::Gpt2Config;
use crate::arch::{Architecture, Block};
use crate::attention::{scale_queries, split_heads};
use crate::error::TeacherError;
use crate::kv::LayerKv;
use crate::precision::Precision;
use crate::shape::ModelShape;
use crate::weights::NamedTensors;

/// One transformer block (pre-norm attention and MLP).
#[derive(Module, Debug)]
pub struct Gpt2Block {
    pub(crate) ln_1: LayerNorm,
    /// Query, key and value projection, `[d, 3d]` (q | k | v along the output axis).
    pub(crate) c_attn: Linear,
    pub(crate) attn_proj: Linear,
    pub(crate) ln_2: LayerNorm,
    pub(crate) c_fc: Linear,
    pub(crate) mlp_proj: Linear,
    pub(crate) n_head: usize,
    pub(crate) tanh_gelu: bool,
}

impl Gpt2Block {
    /// `ln_1(x) · c_attn + bias` for `x` [b, t, d], output columns `from..from + width` only
    /// (queries are columns 0..d, keys d..2d, values 2d..3d): [b, t, width], compute type.
    fn attn_columns(
        &self,
        x: &Tensor<3>,
        from: usize,
        width: usize,
        precision: Precision,
    ) -> Tensor<3> {
        let layer = &self.c_attn;
        let [_, cols] = layer.weight.dims();
        let x = self.ln_1.forward(x.clone());
        if from == 0 && width == cols {
            return precision.linear(layer, x);
        }
        precision.affine(
            x,
            layer.weight.val().narrow(1, from, width),
            layer.bias.as_ref().map(|b| b.val().narrow(0, from, width)),
        )
    }

    /// `[b, t, n·d]` projections → n tensors `[b, heads, t, head_dim]`.
    fn heads(&self, x: Tensor<3>, n: usize) -> Vec<Tensor<4>> {
        let d = x.dims()[2] / n;
        (0..n)
            .map(|i| split_heads(x.clone().narrow(2, i * d, d), self.n_head))
            .collect()
    }
}

impl Block for Gpt2Block {
    fn queries(&self, x: &Tensor<3>, _: &Tensor<2, Int>, precision: Precision) -> Tensor<4> {
        let d = x.dims()[2];
        let [q] = self
            .heads(self.attn_columns(x, 0, d, precision), 1)
            .try_into()
            .expect("one projection");
        scale_queries(q)
    }

    fn keys_values(&self, x: &Tensor<3>, _: &Tensor<2, Int>, precision: Precision) -> LayerKv {
        let d = x.dims()[2];
        let [k, v] = self
            .heads(self.attn_columns(x, d, 2 * d, precision), 2)
            .try_into()
            .expect("two projections");
        LayerKv::new(k, v)
    }

    fn projections(
        &self,
        x: &Tensor<3>,
        _: &Tensor<2, Int>,
        precision: Precision,
    ) -> (Tensor<4>, LayerKv) {
        let d = x.dims()[2];
        let [q, k, v] = self
            .heads(self.attn_columns(x, 0, 3 * d, precision), 3)
            .try_into()
            .expect("three projections");
        (scale_queries(q), LayerKv::new(k, v))
    }

    fn finish(&self, x: Tensor<3>, context: Tensor<3>, precision: Precision) -> Tensor<3> {
        let x = x + precision
            .linear(&self.attn_proj, context)
            .cast(FloatDType::F32);
        let inner = precision.linear(&self.c_fc, self.ln_2.forward(x.clone()));
        let inner = if self.tanh_gelu {
            gelu_approximate(inner)
        } else {
            gelu(inner)
        };
        x + precision
            .linear(&self.mlp_proj, inner)
            .cast(FloatDType::F32)
    }

    fn prepared(self, precision: Precision) -> Self {
        Gpt2Block {
            c_attn: precision.prepare_linear(self.c_attn),
            attn_proj: precision.prepare_linear(self.attn_proj),
            c_fc: precision.prepare_linear(self.c_fc),
            mlp_proj: precision.prepare_linear(self.mlp_proj),
            ..self
        }
    }
}

/// GPT-2 (embeddings, blocks, final LayerNorm), inference only.
#[derive(Module, Debug)]
pub struct Gpt2Module {
    pub(crate) wte: Embedding,
    pub(crate) wpe: Embedding,
    pub(crate) blocks: Vec<Gpt2Block>,
    pub(crate) ln_f: LayerNorm,
}

impl Architecture for Gpt2Module {
    type Config = Gpt2Config;
    type Block = Gpt2Block;
    const MODEL_TYPE: &'static str = "gpt2";
    const CAUSAL: bool = true;

    fn parse_config(text: &str) -> Result<Gpt2Config, String> {
        Gpt2Config::from_json(text)
    }

    fn shape(config: &Gpt2Config) -> ModelShape {
        ModelShape {
            family: Self::MODEL_TYPE,
            d_model: config.n_embd,
            layers: config.n_layer,
            heads: config.n_head,
            kv_heads: config.n_head,
            head_dim: config.head_dim(),
            mlp_width: config.n_inner,
            gated_mlp: false,
            vocab: config.vocab_size,
            position_rows: config.n_positions,
            max_tokens: config.n_positions,
            causal: Self::CAUSAL,
        }
    }

    fn build(
        tensors: &mut NamedTensors<'_>,
        config: &Gpt2Config,
        layers: usize,
        device: &Device,
    ) -> Result<Self, TeacherError> {
        super::load::build_module(tensors, config, layers, device)
    }

    fn embed(&self, ids: Tensor<2, Int>, positions: &Tensor<2, Int>) -> Tensor<3> {
        self.wte.forward(ids) + self.wpe.forward(positions.clone())
    }

    fn blocks(&self) -> &[Gpt2Block] {
        &self.blocks
    }

    fn blocks_mut(&mut self) -> &mut Vec<Gpt2Block> {
        &mut self.blocks
    }

    fn final_norm(&self, x: Tensor<3>) -> Tensor<3> {
        self.ln_f.forward(x)
    }
}
