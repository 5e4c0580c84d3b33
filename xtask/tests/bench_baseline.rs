//! `cargo xtask bench extract --baseline`: the baseline build runs every case too, and the
//! table's `vs base` column is the ratio of the two rates. Scripts that print what timekd
//! prints stand in for the GPU builds (no GPU, reference or expert needed).

#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// A stand-in for timekd whose steady rate is `rate` windows/s; it logs its calls to `log`.
fn fake_timekd(path: &Path, rate: u32, log: &Path) {
    let script = format!(
        r#"#!/bin/sh
echo "$@" >> "{log}"
case "$1" in
  random-model)
    while [ "$#" -gt 0 ]; do
      if [ "$1" = --out ]; then mkdir -p "$2" && touch "$2/model.safetensors"; fi
      shift
    done ;;
  extract)
    for a in "$@"; do
      if [ "$a" = --dry-run ]; then
        echo "work in chunks of 4 windows"
        echo "forward FLOPs run ≈ 2e12"
        echo "tokens in all: 1000"
        exit 0
      fi
    done
    echo "steady state after the first 64 windows: 100 windows in 0.5 s = {rate} windows/s over 25 chunks" >&2 ;;
esac
"#,
        log = log.display()
    );
    std::fs::write(path, script).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn bench(dir: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["bench", "extract", "--no-reference", "--no-expert"])
        .args(["--cases", "ETTh1:24", "--windows", "64", "--warmup", "32"])
        .arg("--work")
        .arg(dir.join("work"))
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn a_baseline_build_runs_every_case_and_its_ratio_is_printed() {
    let dir = tempfile::tempdir().unwrap();
    let (new, base) = (dir.path().join("new"), dir.path().join("base"));
    let (new_log, base_log) = (dir.path().join("new.log"), dir.path().join("base.log"));
    fake_timekd(&new, 250, &new_log);
    fake_timekd(&base, 200, &base_log);
    let out = bench(
        dir.path(),
        &[
            "--timekd",
            new.to_str().unwrap(),
            "--baseline",
            base.to_str().unwrap(),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = stdout
        .lines()
        .find(|l| l.starts_with("ETTh1:24"))
        .unwrap_or_else(|| panic!("no ETTh1:24 row:\n{stdout}"));
    assert!(row.contains(" 250.0 "), "{row}");
    assert!(row.contains(" 1.25x "), "vs base is 250 / 200: {row}");
    assert!(
        stdout.contains("vs base = our windows/s over those of"),
        "{stdout}"
    );
    // The baseline ran the case's timed extraction with the same windows.
    let timed = |log: &Path| {
        std::fs::read_to_string(log)
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("extract") && l.contains("--report-after"))
            .map(|l| {
                l.split("--max-windows ")
                    .nth(1)
                    .unwrap()
                    .split(' ')
                    .next()
                    .unwrap()
                    .to_string()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(timed(&base_log), timed(&new_log));
    assert_eq!(timed(&new_log).len(), 1);
}

#[test]
fn a_missing_baseline_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let new = dir.path().join("new");
    fake_timekd(&new, 250, &dir.path().join("new.log"));
    let out = bench(
        dir.path(),
        &[
            "--timekd",
            new.to_str().unwrap(),
            "--baseline",
            "/nonexistent/timekd",
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--baseline /nonexistent/timekd: no such file"),
        "{stderr}"
    );
}
