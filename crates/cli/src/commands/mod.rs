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

/// An outcome that is not an error but needs its own exit status (e.g. `store verify` of a
/// store without a checksum): `main` prints the message and exits with `code`.
#[derive(Debug)]
pub struct Status {
    /// The process's exit status.
    pub code: u8,
    /// What to tell the user (printed to stderr).
    pub message: String,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Status {}
