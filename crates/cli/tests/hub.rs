//! Model downloads from a Hugging Face hub: a loopback HTTP server stands in for the hub
//! (through HF_ENDPOINT) and serves the repository's tiny GPT-2; `timekd extract --model
//! <id>` downloads it into HF_HOME's cache and extracts with it. Offline (HF_HUB_OFFLINE=1,
//! empty cache), a bad id and a corrupted download each give an error that says what to do.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// The files served: (name, bytes).
fn model_files() -> Vec<(&'static str, Vec<u8>)> {
    ["config.json", "model.safetensors"]
        .into_iter()
        .map(|name| {
            (
                name,
                std::fs::read(repo().join("models/tiny-gpt2").join(name)).unwrap(),
            )
        })
        .collect()
}

/// Serves `tiny-org/tiny-gpt2` (and `tiny-org/corrupt`, whose weights' ETag is wrong) the
/// way the hub's `resolve` endpoint does, on 127.0.0.1, for at most 60 s and 64 requests.
fn serve() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let files = model_files();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut served = 0;
        while Instant::now() < deadline && served < 64 {
            match listener.accept() {
                Ok((stream, _)) => {
                    served += 1;
                    respond(stream, &files);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    address
}

fn respond(mut stream: TcpStream, files: &[(&str, Vec<u8>)]) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
    let start: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("range: bytes=")
                .map(str::to_string)
        })
        .and_then(|r| r.split('-').next().and_then(|s| s.parse().ok()))
        .unwrap_or(0);
    let found = ["tiny-org/tiny-gpt2", "tiny-org/corrupt"]
        .iter()
        .find_map(|repo| {
            let file = path.strip_prefix(&format!("/{repo}/resolve/main/"))?;
            let bytes = &files.iter().find(|(name, _)| *name == file)?.1;
            Some((*repo, file, bytes))
        });
    let Some((repo, file, bytes)) = found else {
        let _ = stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    // Large files: the ETag is the content's sha256 (here: of other bytes for `corrupt`).
    let etag = match (file, repo) {
        ("model.safetensors", "tiny-org/corrupt") => sha256(b"something else"),
        ("model.safetensors", _) => sha256(bytes),
        _ => sha256(bytes)[..40].to_string(),
    };
    let body = &bytes[start.min(bytes.len())..];
    let body = if head.contains("bytes=0-0") {
        &body[..1]
    } else {
        body
    };
    let header = format!(
        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\n\
         ETag: \"{etag}\"\r\nX-Repo-Commit: {COMMIT}\r\nConnection: close\r\n\r\n",
        body.len(),
        start + body.len() - 1,
        bytes.len()
    );
    let _ = stream.write_all(header.as_bytes());
    let _ = stream.write_all(body);
}

/// `timekd extract` of two val windows with `model`, in an environment of its own.
fn extract(dir: &Path, model: &str, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_timekd"));
    command
        .current_dir(dir)
        .args([
            "extract",
            "--data",
            "ETTh1",
            "--output-len",
            "24",
            "--split",
            "val",
        ])
        .args(["--max-windows", "2", "--model", model]);
    for var in [
        "HF_HOME",
        "HF_HUB_CACHE",
        "HF_ENDPOINT",
        "HF_HUB_OFFLINE",
        "XDG_CACHE_HOME",
        "HOME",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        command.env_remove(var);
    }
    command.env("HOME", dir).envs(env.iter().copied());
    command.output().unwrap()
}

#[test]
fn a_model_id_downloads_into_the_hf_cache_from_hf_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("hf");
    let endpoint = serve();
    let env = [
        ("HF_HOME", home.to_str().unwrap()),
        ("HF_ENDPOINT", endpoint.as_str()),
    ];
    let out = extract(dir.path(), "tiny-org/tiny-gpt2", &env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("downloading http://127.0.0.1"), "{stderr}");
    let model = home.join("hub/models--tiny-org--tiny-gpt2");
    assert_eq!(
        std::fs::read_to_string(model.join("refs/main"))
            .unwrap()
            .trim(),
        COMMIT
    );
    for (name, bytes) in model_files() {
        let cached = std::fs::read(model.join("snapshots").join(COMMIT).join(name)).unwrap();
        assert_eq!(sha256(&cached), sha256(&bytes), "{name}");
    }
    assert!(dir.path().join("runs/embeddings/ETTh1/24/val.h5").is_file());

    // Cached now: a second run downloads nothing, even offline.
    let offline = [("HF_HOME", home.to_str().unwrap()), ("HF_HUB_OFFLINE", "1")];
    let again = extract(dir.path(), "tiny-org/tiny-gpt2", &offline);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        again.status.success() && !stderr.contains("downloading"),
        "{stderr}"
    );
}

#[test]
fn without_weights_the_errors_say_how_to_provide_them() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("empty-cache");
    let home = home.to_str().unwrap();
    let offline = extract(
        dir.path(),
        "gpt2",
        &[("HF_HOME", home), ("HF_HUB_OFFLINE", "1")],
    );
    let stderr = String::from_utf8_lossy(&offline.stderr);
    assert!(!offline.status.success());
    for part in [
        "HF_HUB_OFFLINE",
        "--model DIR",
        "config.json",
        "model.safetensors",
        "HF_HOME",
    ] {
        assert!(stderr.contains(part), "{part}: {stderr}");
    }

    let endpoint = serve();
    let online = [("HF_HOME", home), ("HF_ENDPOINT", endpoint.as_str())];
    let missing = extract(dir.path(), "tiny-org/missing", &online);
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success());
    assert!(
        stderr.contains("downloading model `tiny-org/missing` from http://127.0.0.1"),
        "{stderr}"
    );
    assert!(stderr.contains("--model DIR"), "{stderr}");

    let corrupt = extract(dir.path(), "tiny-org/corrupt", &online);
    let stderr = String::from_utf8_lossy(&corrupt.stderr);
    assert!(!corrupt.status.success());
    assert!(stderr.contains("does not match the hub's"), "{stderr}");
}
