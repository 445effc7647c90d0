//! Finding a model: a local folder, a Hugging Face Hub repository already in the Hub's cache
//! layout (`models--org--name/snapshots/REV/`, shared with Python's `huggingface_hub`), or a
//! repository still to fetch. Fetching is done elsewhere (`landfall-providers`' `hub`, which
//! knows HTTP); this crate only reads folders.

use std::path::{Path, PathBuf};

use crate::error::ModelError;

/// The files a BERT-family embedder or cross-encoder may need; everything else in a
/// repository (ONNX exports, other frameworks' weights) is left on the Hub. The weights are
/// `model.safetensors`, or [`FALLBACK_WEIGHTS`] in repositories without it.
pub const MODEL_FILES: &[&str] = &[
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "1_Pooling/config.json",
    "model.safetensors",
];

/// Files of [`MODEL_FILES`] without which a model cannot load.
pub const REQUIRED_FILES: &[&str] = &["config.json", "tokenizer.json"];

/// The weights fetched when a repository has no `model.safetensors`.
pub const FALLBACK_WEIGHTS: &str = "pytorch_model.bin";

/// Where a model is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A folder to load as it is (given, or a complete snapshot in the cache).
    Folder(PathBuf),
    /// A Hub repository not (completely) in the cache yet.
    Hub { repo_id: String, revision: String },
}

/// The Hugging Face Hub cache folder: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
/// `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub` (as Python's
/// `huggingface_hub` does).
pub fn default_cache_dir() -> PathBuf {
    let var = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
    if let Some(cache) = var("HF_HUB_CACHE") {
        return PathBuf::from(cache);
    }
    if let Some(home) = var("HF_HOME") {
        return PathBuf::from(home).join("hub");
    }
    let cache_home = var("XDG_CACHE_HOME").map_or_else(
        || PathBuf::from(var("HOME").unwrap_or_else(|| ".".into())).join(".cache"),
        PathBuf::from,
    );
    cache_home.join("huggingface").join("hub")
}

/// Where `spec` is: an existing folder is used as it is; anything else that looks like a path
/// is an error; otherwise `spec` is a Hub repository id, optionally with a revision
/// (`org/name@rev`, default `main`), found in `cache_dir` when a complete snapshot of it is
/// there.
///
/// # Errors
/// [`ModelError::ModelDirNotFound`] for a path that is not a folder.
pub fn locate(spec: &str, cache_dir: &Path) -> Result<ModelSource, ModelError> {
    let path = Path::new(spec);
    if path.is_dir() {
        return Ok(ModelSource::Folder(path.to_path_buf()));
    }
    let looks_like_path = spec.starts_with(['/', '.', '~'])
        || spec.contains('\\')
        || spec.matches('/').count() > 1
        || path.exists();
    let (repo_id, revision) = spec.split_once('@').unwrap_or((spec, "main"));
    let (owner, name) = repo_id.split_once('/').unwrap_or(("", repo_id));
    if looks_like_path || name.is_empty() || owner.contains('/') || revision.is_empty() {
        return Err(ModelError::ModelDirNotFound {
            path: path.to_path_buf(),
        });
    }
    if let Some(dir) = cached_snapshot(cache_dir, repo_id, revision) {
        return Ok(ModelSource::Folder(dir));
    }
    Ok(ModelSource::Hub {
        repo_id: repo_id.to_owned(),
        revision: revision.to_owned(),
    })
}

/// The cached snapshot of `repo_id` at `revision` (a branch or tag named in `refs/`, or a
/// commit), when it holds a loadable model.
#[must_use]
pub fn cached_snapshot(cache_dir: &Path, repo_id: &str, revision: &str) -> Option<PathBuf> {
    let folder = cache_dir.join(format!("models--{}", repo_id.replace('/', "--")));
    let commit = std::fs::read_to_string(folder.join("refs").join(revision))
        .map_or_else(|_| revision.to_owned(), |commit| commit.trim().to_owned());
    let dir = folder.join("snapshots").join(commit);
    is_complete(&dir).then_some(dir)
}

/// Whether `dir` holds what a model needs to load: its configuration, tokenizer and weights.
#[must_use]
pub fn is_complete(dir: &Path) -> bool {
    REQUIRED_FILES.iter().all(|file| dir.join(file).is_file())
        && (dir.join("model.safetensors").is_file() || dir.join(FALLBACK_WEIGHTS).is_file())
}

/// A single file of `repo_id` at `revision` in the Hub cache (a GGUF chat model, say), found
/// with no network.
#[must_use]
pub fn cached_file(cache_dir: &Path, repo_id: &str, revision: &str, file: &str) -> Option<PathBuf> {
    let folder = cache_dir.join(format!("models--{}", repo_id.replace('/', "--")));
    let commit = std::fs::read_to_string(folder.join("refs").join(revision))
        .map_or_else(|_| revision.to_owned(), |commit| commit.trim().to_owned());
    let path = folder.join("snapshots").join(commit).join(file);
    path.is_file().then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn existing_folders_are_used_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let spec = dir.path().to_str().unwrap();
        assert_eq!(
            locate(spec, dir.path()).unwrap(),
            ModelSource::Folder(dir.path().to_path_buf())
        );
    }

    #[test]
    fn missing_paths_are_not_sent_to_the_hub() {
        let cache = tempfile::tempdir().unwrap();
        for spec in [
            "/no/such/model",
            "./model",
            "models/a/b",
            "",
            "org/",
            "org/name@",
        ] {
            let error = locate(spec, cache.path()).unwrap_err();
            assert!(
                matches!(error, ModelError::ModelDirNotFound { .. }),
                "{spec}: {error}"
            );
        }
    }

    #[test]
    fn repository_ids_are_found_in_the_cache_by_reference() {
        let cache = tempfile::tempdir().unwrap();
        assert_eq!(
            locate("BAAI/bge-small-zh-v1.5@v2", cache.path()).unwrap(),
            ModelSource::Hub {
                repo_id: "BAAI/bge-small-zh-v1.5".to_owned(),
                revision: "v2".to_owned()
            }
        );
        let folder = cache.path().join("models--BAAI--bge-small-zh-v1.5");
        let snapshot = folder.join("snapshots").join("abc123");
        std::fs::create_dir_all(&snapshot).unwrap();
        for file in ["config.json", "tokenizer.json", "model.safetensors"] {
            std::fs::write(snapshot.join(file), b"{}").unwrap();
        }
        std::fs::create_dir_all(folder.join("refs")).unwrap();
        std::fs::write(folder.join("refs").join("main"), "abc123").unwrap();
        assert_eq!(
            locate("BAAI/bge-small-zh-v1.5", cache.path()).unwrap(),
            ModelSource::Folder(snapshot.clone())
        );
        // A snapshot without weights is not a model yet.
        std::fs::remove_file(snapshot.join("model.safetensors")).unwrap();
        assert!(matches!(
            locate("BAAI/bge-small-zh-v1.5", cache.path()).unwrap(),
            ModelSource::Hub { .. }
        ));
    }

    #[test]
    fn default_cache_dir_ends_in_hub() {
        assert!(default_cache_dir().ends_with("hub"));
    }
}
