//! What the build and the tests need from the system, installed when missing.
//!
//! The HDF5 store links Debian's `libhdf5-dev` dynamically (a 21 s build, no cmake); the
//! interoperability tests run Python's `h5py`. Both are installed here on first use so
//! that a fresh machine needs nothing but the two README commands.

use std::process::Command;

use anyhow::{Context, bail};

use crate::run;

/// Installs libhdf5-dev (apt) and h5py + numpy (pip) if they are missing.
pub fn ensure_system_deps() -> anyhow::Result<()> {
    ensure_libhdf5()?;
    ensure_python_h5py()
}

fn ensure_libhdf5() -> anyhow::Result<()> {
    let installed = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "libhdf5-dev"])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).contains("install ok installed"))
        .unwrap_or(false);
    if installed {
        return Ok(());
    }
    if Command::new("apt-get").arg("--version").output().is_err() {
        bail!(
            "libhdf5-dev is missing and apt-get is not available: install HDF5 1.10+ development files (headers + libhdf5.so) and set HDF5_DIR"
        );
    }
    eprintln!("xtask: installing libhdf5-dev (HDF5 C library for the embedding store)...");
    run(apt_get().args(["update", "-qq"])).context("apt-get update")?;
    run(apt_get()
        .args(["install", "-y", "-qq", "libhdf5-dev", "pkg-config"])
        .env("DEBIAN_FRONTEND", "noninteractive"))
    .context("apt-get install libhdf5-dev")
}

/// `apt-get`, through sudo unless already root.
fn apt_get() -> Command {
    if is_root() {
        Command::new("apt-get")
    } else {
        let mut command = Command::new("sudo");
        command.arg("apt-get");
        command
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}

fn ensure_python_h5py() -> anyhow::Result<()> {
    let present = Command::new("python3")
        .args(["-c", "import h5py, numpy"])
        .output()
        .map(|out| out.status.success())
        .unwrap_or(false);
    if present {
        return Ok(());
    }
    eprintln!("xtask: installing h5py and numpy for the HDF5 interoperability tests...");
    run(Command::new("python3").args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "h5py",
        "numpy",
    ]))
    .context("pip install h5py numpy (needed by the store's h5py test)")
}
