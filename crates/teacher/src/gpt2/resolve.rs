//! Finding a model's directory: a local path, or a model id in the Hugging Face cache.
//!
//! Resolving never downloads: a model id must already be in the cache
//! (`$HF_HUB_CACHE`, `$HF_HOME/hub`, `$XDG_CACHE_HOME/huggingface/hub` or
//! `~/.cache/huggingface/hub`, each holding `models--<org>--<name>/snapshots/<rev>/`).
//! With the `hub` feature, `gpt2::hub::fetch_model` downloads a missing one.

use std::path::{Path, PathBuf};

use crate::error::TeacherError;

/// The Hugging Face hub cache directories to search, from the environment, most specific
/// first, without duplicates.
pub fn hub_cache_roots() -> Vec<PathBuf> {
    let env = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let mut roots = Vec::new();
    if let Some(p) = env("HF_HUB_CACHE") {
        roots.push(p);
    }
    if let Some(p) = env("HF_HOME") {
        roots.push(p.join("hub"));
    }
    if let Some(p) = env("XDG_CACHE_HOME") {
        roots.push(p.join("huggingface").join("hub"));
    }
    if let Some(p) = env("HOME") {
        roots.push(p.join(".cache").join("huggingface").join("hub"));
    }
    roots.dedup();
    roots
}

/// Resolves `spec` with the cache roots of the environment ([`hub_cache_roots`]).
pub fn resolve_model_dir(spec: &str) -> Result<PathBuf, TeacherError> {
    resolve_model_dir_in(spec, &hub_cache_roots())
}

/// Resolves `spec` to a model directory: `spec` itself when it is a directory, else the
/// snapshot of model id `spec` (`gpt2`, `openai-community/gpt2`) in one of `roots`. A
/// snapshot named by `refs/main` is preferred; otherwise any snapshot holding a
/// `config.json`. The error lists every place searched.
pub fn resolve_model_dir_in(spec: &str, roots: &[PathBuf]) -> Result<PathBuf, TeacherError> {
    let direct = Path::new(spec);
    if direct.is_dir() {
        return Ok(direct.to_path_buf());
    }
    let mut looked = vec![direct.to_path_buf()];
    let repo = format!("models--{}", spec.replace('/', "--"));
    for root in roots {
        let model = root.join(&repo);
        let snapshots = model.join("snapshots");
        looked.push(snapshots.clone());
        if let Some(dir) = pick_snapshot(&model, &snapshots) {
            return Ok(dir);
        }
    }
    Err(TeacherError::ModelNotFound {
        spec: spec.to_string(),
        looked,
    })
}

fn pick_snapshot(model: &Path, snapshots: &Path) -> Option<PathBuf> {
    if let Ok(rev) = std::fs::read_to_string(model.join("refs").join("main")) {
        let dir = snapshots.join(rev.trim());
        if dir.join("config.json").is_file() {
            return Some(dir);
        }
    }
    let mut candidates: Vec<PathBuf> = std::fs::read_dir(snapshots)
        .ok()?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|dir| dir.join("config.json").is_file())
        .collect();
    candidates.sort();
    candidates.into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_directory_is_used_as_is() {
        let tmp = tempfile::tempdir().unwrap();
        let spec = tmp.path().to_str().unwrap();
        assert_eq!(resolve_model_dir_in(spec, &[]).unwrap(), tmp.path());
    }

    #[test]
    fn model_id_is_found_in_a_hub_cache() {
        let tmp = tempfile::tempdir().unwrap();
        let model = tmp.path().join("models--openai-community--gpt2");
        let snap = model.join("snapshots").join("abc123");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::write(snap.join("config.json"), "{}").unwrap();
        let empty = tempfile::tempdir().unwrap();
        let roots = [empty.path().to_path_buf(), tmp.path().to_path_buf()];
        assert_eq!(
            resolve_model_dir_in("openai-community/gpt2", &roots).unwrap(),
            snap
        );
        // refs/main wins over other snapshots.
        let main = model.join("snapshots").join("def456");
        std::fs::create_dir_all(&main).unwrap();
        std::fs::write(main.join("config.json"), "{}").unwrap();
        std::fs::create_dir_all(model.join("refs")).unwrap();
        std::fs::write(model.join("refs").join("main"), "def456\n").unwrap();
        assert_eq!(
            resolve_model_dir_in("openai-community/gpt2", &roots).unwrap(),
            main
        );
    }

    #[test]
    fn missing_model_says_where_it_looked() {
        let tmp = tempfile::tempdir().unwrap();
        let err = resolve_model_dir_in("gpt2", &[tmp.path().to_path_buf()]).unwrap_err();
        assert!(matches!(err, TeacherError::ModelNotFound { .. }));
        let msg = err.to_string();
        let expected = tmp.path().join("models--gpt2").join("snapshots");
        assert!(msg.contains(&expected.display().to_string()), "{msg}");
        assert!(msg.contains("never downloads"), "{msg}");
    }
}
