//! One module per `timekd` subcommand: its clap arguments and its `run` function.

pub mod eval;
pub mod extract;
pub mod forecast;
pub mod inspect;
pub mod plot;
pub mod prompts;
pub mod random_model;
pub mod store;
pub mod train;
