//! Writes the NVRTC program of the CUDA engine's kernels (source and options) to a folder, for
//! checks without a GPU (`scripts/kernel-report.sh` compiles it with NVRTC and ptxas).
//!
//! ```text
//! cargo run --release -p timekd-teacher --features cuda --example kernel_program -- OUT [D_MODEL] [MAJOR.MINOR] [mma | sca=N]
//! ```
//!
//! `D_MODEL` (default 768) picks the norm kernels, `MAJOR.MINOR` (default 9.0) the device,
//! `mma` leaves the Hopper attention out, as `TIMEKD_CUDA_ATTENTION=mma` does; `sca=N` writes
//! the fused SCA's program for N variables instead.

use std::path::PathBuf;

use timekd_teacher::cuda::{kernel_program, sca_program};

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(out) = args.first().map(PathBuf::from) else {
        return Err("usage: kernel_program OUT [D_MODEL] [MAJOR.MINOR] [mma | sca=N]".to_string());
    };
    let d_model: usize = match args.get(1) {
        Some(d) => d
            .parse()
            .map_err(|_| format!("D_MODEL must be a number, not {d:?}"))?,
        None => 768,
    };
    let cc = match args.get(2) {
        Some(cc) => cc
            .split_once('.')
            .and_then(|(major, minor)| Some((major.parse().ok()?, minor.parse().ok()?)))
            .ok_or_else(|| format!("MAJOR.MINOR like 9.0, not {cc:?}"))?,
        None => (9, 0),
    };
    let choice = args.get(3).map(String::as_str);
    let program = match choice.and_then(|c| c.strip_prefix("sca=")) {
        Some(n) => sca_program(
            n.parse()
                .map_err(|_| format!("sca=N needs a variable count, not {n:?}"))?,
            cc,
        ),
        None => kernel_program(d_model, cc, choice),
    };
    let write = |name: &str, text: &str| {
        let path = out.join(name);
        std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))
    };
    std::fs::create_dir_all(&out).map_err(|e| format!("creating {}: {e}", out.display()))?;
    write("kernels.cu", &program.source)?;
    write("options.txt", &(program.options.join("\n") + "\n"))?;
    println!(
        "{}: kernels.cu and options.txt ({}) for d_model {d_model}, compute capability {}.{}{}",
        out.display(),
        choice
            .filter(|c| c.starts_with("sca="))
            .unwrap_or("the engine"),
        cc.0,
        cc.1,
        if program.wgmma {
            ", wgmma attention"
        } else {
            ""
        }
    );
    Ok(())
}
