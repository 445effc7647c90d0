//! Finding a model: a local folder, or a Hugging Face Hub repository fetched into the Hub's
//! cache layout (`models--org--name/snapshots/REV/`), so a cache filled by Python's
//! `huggingface_hub` is reused and vice versa.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::ModelError;

/// Download progress, summed over the files of one fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HubProgress {
    /// Bytes received so far.
    pub bytes_done: u64,
    /// Bytes to receive in all (0 until the Hub has said).
    pub bytes_total: u64,
}

/// Receives [`HubProgress`] updates (e.g. to drive a progress bar); called from the download's
/// threads.
pub type ProgressFn = Arc<dyn Fn(HubProgress) + Send + Sync>;

/// The files a sentence embedder needs; everything else in a repository (ONNX exports, other
/// frameworks' weights) is left on the Hub.
#[cfg_attr(
    not(feature = "hub"),
    expect(dead_code, reason = "used by the `hub` feature")
)]
const EMBEDDER_FILES: &[&str] = &[
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

/// An existing folder is used as it is; anything else that looks like a path is an error;
/// otherwise `spec` is a Hub repository id, optionally with a revision (`org/name@rev`),
/// fetched with [`fetch_from_hub`].
///
/// Blocking (network I/O); do not call it on an async reactor thread.
///
/// # Errors
/// [`ModelError::ModelDirNotFound`] for a path that is not a folder, else what
/// [`fetch_from_hub`] returns.
pub fn resolve_model(
    spec: &str,
    cache_dir: &Path,
    progress: Option<ProgressFn>,
) -> Result<PathBuf, ModelError> {
    let path = Path::new(spec);
    if path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let looks_like_path = spec.starts_with(['/', '.', '~'])
        || spec.contains('\\')
        || spec.matches('/').count() > 1
        || path.exists();
    if looks_like_path || spec.is_empty() {
        return Err(ModelError::ModelDirNotFound {
            path: path.to_path_buf(),
        });
    }
    let (repo_id, revision) = match spec.split_once('@') {
        Some((repo_id, revision)) => (repo_id, Some(revision)),
        None => (spec, None),
    };
    fetch_from_hub(repo_id, revision, cache_dir, progress)
}

/// Fetches the files a sentence embedder needs from the Hugging Face Hub repository
/// `repo_id` (`org/name`) at `revision` (default `main`) into `cache_dir` (see
/// [`default_cache_dir`]) and returns the snapshot folder, ready for
/// [`BertEmbedder::load`](crate::BertEmbedder::load). A complete cached snapshot is used
/// without touching the network. `pytorch_model.bin` is fetched only when the repository has
/// no `model.safetensors`. `HF_ENDPOINT` and `HF_TOKEN` are honoured.
///
/// Blocking (it runs its own small runtime); do not call it on an async reactor thread.
///
/// # Errors
/// [`ModelError::Hub`] naming the repository when the Hub cannot be reached or the download
/// fails, or when this build lacks the `hub` feature.
pub fn fetch_from_hub(
    repo_id: &str,
    revision: Option<&str>,
    cache_dir: &Path,
    progress: Option<ProgressFn>,
) -> Result<PathBuf, ModelError> {
    fetch_from_endpoint(None, repo_id, revision, cache_dir, progress)
}

#[cfg(not(feature = "hub"))]
fn fetch_from_endpoint(
    _endpoint: Option<&str>,
    repo_id: &str,
    _revision: Option<&str>,
    _cache_dir: &Path,
    _progress: Option<ProgressFn>,
) -> Result<PathBuf, ModelError> {
    Err(ModelError::Hub {
        repo_id: repo_id.to_owned(),
        reason: "this build has no Hugging Face Hub support (cargo feature `hub` of \
                 landfall-models)"
            .to_owned(),
    })
}

#[cfg(feature = "hub")]
fn fetch_from_endpoint(
    endpoint: Option<&str>,
    repo_id: &str,
    revision: Option<&str>,
    cache_dir: &Path,
    progress: Option<ProgressFn>,
) -> Result<PathBuf, ModelError> {
    remote::fetch(endpoint, repo_id, revision, cache_dir, progress).map_err(|reason| {
        ModelError::Hub {
            repo_id: repo_id.to_owned(),
            reason,
        }
    })
}

#[cfg(feature = "hub")]
mod remote {
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    use hf_hub::progress::{DownloadEvent, Progress, ProgressEvent, ProgressHandler};
    use hf_hub::{HFClientBuilder, HFRepositorySync, RepoTypeModel};

    use super::{EMBEDDER_FILES, HubProgress, ProgressFn};

    /// Sums hf-hub's per-file deltas into one running total for the caller.
    struct Summing {
        callback: ProgressFn,
        state: Mutex<(u64, HashMap<String, u64>)>,
    }

    impl ProgressHandler for Summing {
        fn on_progress(&self, event: &ProgressEvent) {
            let ProgressEvent::Download(event) = event else {
                return;
            };
            let Ok(mut state) = self.state.lock() else {
                return;
            };
            let (total, files) = &mut *state;
            let done = match event {
                DownloadEvent::Start { total_bytes, .. } => {
                    *total = *total_bytes;
                    0
                }
                DownloadEvent::Progress { files: changed } => {
                    for file in changed {
                        files.insert(file.filename.clone(), file.bytes_completed);
                    }
                    files.values().sum()
                }
                DownloadEvent::AggregateProgress {
                    bytes_completed, ..
                } => *bytes_completed,
                DownloadEvent::Complete => *total,
            };
            (self.callback)(HubProgress {
                bytes_done: done,
                bytes_total: *total,
            });
        }
    }

    pub(super) fn fetch(
        endpoint: Option<&str>,
        repo_id: &str,
        revision: Option<&str>,
        cache_dir: &Path,
        progress: Option<ProgressFn>,
    ) -> Result<PathBuf, String> {
        let (owner, name) = hf_hub::split_id(repo_id);
        if name.is_empty() {
            return Err("a repository id is `org/name`".to_owned());
        }
        let mut builder = HFClientBuilder::new()
            .cache_dir(cache_dir)
            .retry_max_attempts(2);
        if let Some(endpoint) = endpoint {
            builder = builder.endpoint(endpoint);
        }
        let client = builder.build_sync().map_err(|error| error.to_string())?;
        let repo = client.model(owner, name);
        let progress = progress.map(|callback| {
            Progress::new(Summing {
                callback,
                state: Mutex::new((0, HashMap::new())),
            })
        });
        // A complete cached snapshot needs no network at all.
        if let Ok(dir) = snapshot(&repo, revision, true, None)
            && is_complete(&dir)
        {
            return Ok(dir);
        }
        let dir = snapshot(&repo, revision, false, progress.clone())?;
        if dir.join("model.safetensors").is_file() {
            return Ok(dir);
        }
        repo.download_file()
            .filename("pytorch_model.bin")
            .maybe_revision(revision.map(str::to_owned))
            .maybe_progress(progress)
            .send()
            .map_err(|error| format!("no model.safetensors, and pytorch_model.bin: {error}"))?;
        Ok(dir)
    }

    fn snapshot(
        repo: &HFRepositorySync<RepoTypeModel>,
        revision: Option<&str>,
        local_files_only: bool,
        progress: Option<Progress>,
    ) -> Result<PathBuf, String> {
        repo.snapshot_download()
            .maybe_revision(revision.map(str::to_owned))
            .allow_patterns(EMBEDDER_FILES.iter().map(|&file| file.to_owned()).collect())
            .local_files_only(local_files_only)
            .maybe_progress(progress)
            .send()
            .map_err(|error| error.to_string())
    }

    fn is_complete(dir: &Path) -> bool {
        dir.join("config.json").is_file()
            && dir.join("tokenizer.json").is_file()
            && (dir.join("model.safetensors").is_file() || dir.join("pytorch_model.bin").is_file())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn existing_folders_are_used_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let spec = dir.path().to_str().unwrap();
        assert_eq!(resolve_model(spec, dir.path(), None).unwrap(), dir.path());
    }

    #[test]
    fn missing_paths_are_not_sent_to_the_hub() {
        let cache = tempfile::tempdir().unwrap();
        for spec in ["/no/such/model", "./model", "models/a/b", ""] {
            let error = resolve_model(spec, cache.path(), None).unwrap_err();
            assert!(
                matches!(error, ModelError::ModelDirNotFound { .. }),
                "{spec}: {error}"
            );
        }
    }

    /// The Hub is unreachable (a closed local port stands in for it): the error names the
    /// repository and says to pass a local folder.
    #[test]
    fn unreachable_hub_says_to_pass_a_folder() {
        let cache = tempfile::tempdir().unwrap();
        let error = fetch_from_endpoint(
            Some("http://127.0.0.1:9"),
            "sentence-transformers/all-MiniLM-L6-v2",
            None,
            cache.path(),
            None,
        )
        .unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, ModelError::Hub { .. }), "{message}");
        assert!(
            message.contains("sentence-transformers/all-MiniLM-L6-v2")
                && message.contains("local model folder"),
            "{message}"
        );
    }

    #[test]
    fn default_cache_dir_ends_in_hub() {
        assert!(default_cache_dir().ends_with("hub"));
    }
}
