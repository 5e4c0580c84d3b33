//! The GPT-2 family: its `config.json`, checkpoint names and Burn model ([`Gpt2`]), plus
//! where model directories come from ([`resolve`], `hub`), which every family shares.
//!
//! [`Gpt2::load`] resolves a directory or a cached model id ([`resolve`]), reads
//! `config.json` and `model.safetensors`, keeps the first `layers` blocks and records the
//! sha256 of the weights file for store fingerprints (see [`BurnModel`]).

mod config;
#[cfg(feature = "hub")]
pub mod hub;
mod load;
mod model;
pub(crate) mod names;
pub mod resolve;

pub use config::Gpt2Config;
pub use model::{Gpt2Block, Gpt2Module};
pub use resolve::{hub_cache_roots, resolve_model_dir, resolve_model_dir_in};

pub use crate::mask::{BLOCKED, CALIBRATION_PENALTY, calibrated_mask, causal_mask};

use crate::burn_model::BurnModel;

/// GPT-2 in Burn, any size (small, medium, large, xl).
pub type Gpt2 = BurnModel<Gpt2Module>;
