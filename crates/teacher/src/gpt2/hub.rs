//! Downloading a model from the Hugging Face hub into its standard cache (feature `hub`),
//! through the `hf-hub` crate's blocking client.
//!
//! [`fetch_model`] returns a directory or cached model at once; otherwise it downloads
//! `config.json`, `tokenizer.json` when the family is not GPT-2 (whose tokenizer is built
//! in), and `model.safetensors` (or, where the hub has none, `model.safetensors.index.json`
//! and the shards it lists) into the first of [`hub_cache_roots`]
//! (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`: the layout Python's
//! `huggingface_hub` writes and reads) from `$HF_ENDPOINT` (default
//! `https://huggingface.co`), and checks each file's sha256 against the hub's ETag where the
//! hub gives one (it does for large files). With `HF_HUB_OFFLINE` set (`1`, `true`, `yes`,
//! `on`) nothing is downloaded and a missing model is an error that says how to provide
//! the weights. Gated repositories (meta-llama/...) take the token of `$HF_TOKEN`, else the
//! cache's `token` file (`huggingface-cli login`).

use std::path::{Path, PathBuf};

use hf_hub::api::Progress;
use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};
use sha2::{Digest, Sha256};

use super::resolve::{hub_cache_roots, resolve_model_dir_in};
use crate::error::TeacherError;
use crate::weights::{SHARD_INDEX_FILE, shard_names};

/// The files every model directory needs.
pub const MODEL_FILES: [&str; 2] = ["config.json", "model.safetensors"];

/// What a family other than GPT-2 needs besides [`MODEL_FILES`].
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// The hub's address unless `$HF_ENDPOINT` says otherwise.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Sees a download's progress.
pub trait DownloadObserver {
    /// A file of `bytes` bytes starts downloading from `url`.
    fn started(&mut self, file: &str, bytes: u64, url: &str);
    /// `bytes` more bytes arrived.
    fn advanced(&mut self, bytes: u64);
    /// The file is complete.
    fn finished(&mut self, file: &str);
}

impl DownloadObserver for () {
    fn started(&mut self, _: &str, _: u64, _: &str) {}
    fn advanced(&mut self, _: u64) {}
    fn finished(&mut self, _: &str) {}
}

/// Whether `$HF_HUB_OFFLINE` forbids downloads.
pub fn hub_offline() -> bool {
    std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

/// `$HF_ENDPOINT`, or the public hub.
pub fn hub_endpoint() -> String {
    std::env::var("HF_ENDPOINT")
        .ok()
        .map(|e| e.trim_end_matches('/').to_string())
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string())
}

/// The model directory of `spec`: a directory, a model id in the cache, or a model id
/// downloaded now (see the module docs).
pub fn fetch_model(
    spec: &str,
    observer: &mut dyn DownloadObserver,
) -> Result<PathBuf, TeacherError> {
    let roots = hub_cache_roots();
    let looked = match resolve_model_dir_in(spec, &roots) {
        Ok(dir) => return Ok(dir),
        Err(TeacherError::ModelNotFound { looked, .. }) => looked,
        Err(other) => return Err(other),
    };
    if hub_offline() {
        return Err(TeacherError::Offline {
            spec: spec.to_string(),
            looked,
        });
    }
    let Some(root) = roots.first() else {
        return Err(download_error(
            spec,
            "no cache directory: set HF_HOME".into(),
        ));
    };
    let endpoint = hub_endpoint();
    let mut builder = ApiBuilder::from_cache(Cache::new(root.clone()))
        .with_endpoint(endpoint.clone())
        .with_progress(false);
    if let Some(token) = std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty()) {
        builder = builder.with_token(Some(token));
    }
    let api = builder
        .build()
        .map_err(|e| download_error(spec, e.to_string()))?;
    let repo = api.repo(Repo::new(spec.to_string(), RepoType::Model));
    let mut download = |file: &str| -> Result<PathBuf, TeacherError> {
        let url = repo.url(file);
        let progress = Adapter {
            observer: &mut *observer,
            file,
            url: &url,
        };
        let path = repo
            .download_with_progress(file, progress)
            .map_err(|e| download_error(spec, format!("{url}: {e}")))?;
        verify(&path).map_err(|message| download_error(spec, message))?;
        Ok(path)
    };
    let [config, weights] = MODEL_FILES;
    let config = download(config)?;
    let snapshot = config.parent().unwrap_or(Path::new("."));
    if crate::families::model_type(snapshot)?.is_some_and(|t| t != "gpt2") {
        download(TOKENIZER_FILE)?;
    }
    // Larger checkpoints (Llama-3.2-3B) come as shards listed by an index instead.
    if let Err(single) = download(weights) {
        let Ok(index) = download(SHARD_INDEX_FILE) else {
            return Err(single);
        };
        let text = std::fs::read_to_string(&index).map_err(|source| TeacherError::Io {
            path: index.clone(),
            source,
        })?;
        let shards = shard_names(&text)
            .map_err(|reason| download_error(spec, format!("{SHARD_INDEX_FILE}: {reason}")))?;
        for shard in shards {
            download(&shard)?;
        }
    }
    resolve_model_dir_in(spec, std::slice::from_ref(root))
}

fn download_error(spec: &str, message: String) -> TeacherError {
    TeacherError::Download {
        spec: spec.to_string(),
        endpoint: hub_endpoint(),
        message,
    }
}

/// Checks a downloaded file against its blob's name when that is a sha256 (the hub's ETag
/// of large files); removes a file that does not match.
fn verify(pointer: &Path) -> Result<(), String> {
    let blob = std::fs::canonicalize(pointer).map_err(|e| format!("{}: {e}", pointer.display()))?;
    let etag = blob
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if etag.len() != 64 || !etag.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(());
    }
    let mut hasher = Sha256::new();
    let mut file = std::fs::File::open(&blob).map_err(|e| format!("{}: {e}", blob.display()))?;
    std::io::copy(&mut file, &mut hasher).map_err(|e| format!("{}: {e}", blob.display()))?;
    let actual = format!("{:x}", hasher.finalize());
    if actual == etag.to_ascii_lowercase() {
        return Ok(());
    }
    let _ = std::fs::remove_file(&blob);
    let _ = std::fs::remove_file(pointer);
    Err(format!(
        "{}: sha256 {actual} does not match the hub's {etag}; the file was removed, download again",
        pointer.display()
    ))
}

/// `hf-hub`'s progress callbacks, forwarded to a [`DownloadObserver`].
struct Adapter<'a> {
    observer: &'a mut dyn DownloadObserver,
    file: &'a str,
    url: &'a str,
}

impl Progress for Adapter<'_> {
    fn init(&mut self, size: usize, _filename: &str) {
        self.observer.started(self.file, size as u64, self.url);
    }
    fn update(&mut self, size: usize) {
        self.observer.advanced(size as u64);
    }
    fn finish(&mut self) {
        self.observer.finished(self.file);
    }
}
