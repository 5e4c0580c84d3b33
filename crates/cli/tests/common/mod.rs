//! Helpers shared by the `timekd` command tests.

#![allow(dead_code)] // each test binary uses a different part of these helpers

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `timekd args` run in `dir`.
pub fn timekd(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_timekd"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

/// `out`, after checking that the command (`what`) succeeded.
pub fn ok(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The error text of a command (`what`) that must fail.
pub fn refused(out: Output, what: &str) -> String {
    assert!(!out.status.success(), "{what} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs the Python `script` (numpy available: `cargo xtask setup` installs it) with `args`;
/// checks that it succeeded and printed `ok` first, else fails naming `what`. Its stdout.
pub fn numpy_check(script: &str, args: &[&Path], what: &str) -> String {
    let check = Command::new("python3")
        .args(["-c", script])
        .args(args)
        .output()
        .expect("python3 with numpy (cargo xtask setup installs it)");
    let stdout = String::from_utf8_lossy(&check.stdout).into_owned();
    assert!(
        check.status.success() && stdout.starts_with("ok"),
        "{what}:\n{stdout}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    stdout
}
