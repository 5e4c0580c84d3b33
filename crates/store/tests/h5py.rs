//! Python interop: h5py opens our files and reads exactly the values we wrote.

mod common;

use std::process::Command;

use timekd_store::{Dtype, StoreReader, WriterOptions};

const N_VARS: usize = 3;
const D_MODEL: usize = 5;
const WINDOWS: usize = 7;

/// Runs `script` with python3 and returns its stdout; fails loudly when h5py is missing.
fn python(script: &str, arg: &std::path::Path) -> String {
    let probe = Command::new("python3")
        .args(["-c", "import h5py, numpy"])
        .output();
    match probe {
        Ok(out) if out.status.success() => {}
        _ => panic!(
            "python3 with h5py and numpy is required for this test: run the project's set-up \
             (it installs them), or `pip install h5py numpy`"
        ),
    }
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(arg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const DUMP: &str = r#"
import sys, json, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as f:
    e = f["embeddings"]
    attrs = {}
    for k, v in f.attrs.items():
        if isinstance(v, np.ndarray):
            v = [x.decode() if isinstance(x, bytes) else str(x) for x in v]
        elif isinstance(v, bytes):
            v = v.decode()
        elif isinstance(v, np.integer):
            v = int(v)
        attrs[k] = v
    print(json.dumps({
        "shape": list(e.shape),
        "dtype": str(e.dtype),
        "chunks": list(e.chunks),
        "bytes": e[...].tobytes().hex(),
        "complete": f["complete"][...].tolist(),
        "attrs": attrs,
    }))
"#;

fn check(dtype: Dtype) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.h5");
    let fingerprint = common::fingerprint(N_VARS, D_MODEL, dtype);
    common::write_store(&path, fingerprint, WINDOWS, WriterOptions::default());
    let reader = StoreReader::open(&path).unwrap();

    let dump: serde_json::Value = serde_json::from_str(&python(DUMP, &path)).unwrap();
    assert_eq!(dump["shape"], serde_json::json!([WINDOWS, N_VARS, D_MODEL]));
    assert_eq!(dump["chunks"], serde_json::json!([1, N_VARS, D_MODEL]));
    assert_eq!(dump["complete"], serde_json::json!(vec![1; WINDOWS]));

    // Bytes h5py reads, in its native little-endian type, versus what we wrote.
    let written: Vec<f32> = (0..WINDOWS)
        .flat_map(|w| common::window_values(w, N_VARS * D_MODEL))
        .collect();
    let expected_hex: String = match dtype {
        Dtype::F32 => {
            assert_eq!(dump["dtype"], "float32");
            written
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .map(|b| format!("{b:02x}"))
                .collect()
        }
        Dtype::F16 => {
            assert_eq!(dump["dtype"], "float16");
            written
                .iter()
                .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                .map(|b| format!("{b:02x}"))
                .collect()
        }
    };
    assert_eq!(dump["bytes"], expected_hex.as_str());
    // Our own reader agrees with the file.
    let all: Vec<usize> = (0..WINDOWS).collect();
    let ours = reader.read_batch(&all).unwrap();
    match dtype {
        Dtype::F32 => assert_eq!(ours, written),
        Dtype::F16 => assert!(
            ours.iter()
                .zip(&written)
                .all(|(a, b)| *a == half::f16::from_f32(*b).to_f32())
        ),
    }

    let attrs = &dump["attrs"];
    let fp = reader.fingerprint();
    assert_eq!(attrs["dataset"], fp.dataset.as_str());
    assert_eq!(attrs["columns"], serde_json::json!(fp.columns));
    assert_eq!(attrs["n_vars"], N_VARS);
    assert_eq!(attrs["d_model"], D_MODEL);
    assert_eq!(attrs["sca_seed"], fp.sca_seed);
    assert_eq!(attrs["dtype"], serde_json::to_value(dtype).unwrap());
    assert_eq!(attrs["created"], fp.created.as_str());
    assert_eq!(attrs["schema_version"], timekd_store::SCHEMA_VERSION);
    assert_eq!(attrs["windows_total"], WINDOWS);
}

#[test]
fn h5py_reads_identical_f32_values_and_fingerprint() {
    check(Dtype::F32);
}

#[test]
fn h5py_reads_identical_f16_values_and_fingerprint() {
    check(Dtype::F16);
}
