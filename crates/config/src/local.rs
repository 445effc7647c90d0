//! `type = "local"` providers: GGUF chat models Landfall runs itself, on the CPU.

use std::path::PathBuf;

use serde::Deserialize;

use crate::model::{ModelConfig, ProviderConfig, ProviderKind, TargetConfig};
use crate::{Config, HttpSettings};

/// The Hub repository the default local model comes from when nothing else is configured.
pub const DEFAULT_LOCAL_REPO: &str = "bartowski/SmolLM2-135M-Instruct-GGUF";
/// The file of [`DEFAULT_LOCAL_REPO`].
pub const DEFAULT_LOCAL_FILE: &str = "SmolLM2-135M-Instruct-Q8_0.gguf";
/// Name of the provider and the model alias `landfall serve` adds when no provider is
/// configured.
pub const DEFAULT_LOCAL_NAME: &str = "local";
/// Environment variable naming a GGUF file for the default local model.
pub const LOCAL_MODEL_VAR: &str = "LANDFALL_LOCAL_MODEL";

/// A GGUF chat model (llama, qwen2 or qwen3 architecture) from a file or from the Hub.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LocalModelConfig {
    /// A GGUF file on this machine.
    pub path: Option<PathBuf>,
    /// Or a Hugging Face Hub repository, `org/name` or `org/name@revision`, with `file`.
    pub hub_repo: Option<String>,
    /// The GGUF file in `hub_repo`.
    pub file: Option<String>,
    /// Hub cache folder; default as `huggingface_hub` (`HF_HUB_CACHE`, `HF_HOME`,
    /// `~/.cache/huggingface/hub`).
    pub cache_dir: Option<PathBuf>,
    /// A Hub mirror; default `HF_ENDPOINT`, else <https://huggingface.co>.
    pub hub_endpoint: Option<String>,
    /// A `tokenizer.json` to use instead of the tokenizer in the GGUF metadata.
    pub tokenizer: Option<PathBuf>,
    /// A Jinja chat template to use instead of the GGUF's `tokenizer.chat_template`.
    pub chat_template: Option<String>,
    /// Fewer positions (prompt + output) than the model supports.
    pub context_length: Option<u32>,
    /// Requests that may wait while one generates; more are refused as rate-limited, so the
    /// gateway falls back to the next target.
    pub queue_size: u32,
    /// `max_tokens` when the request gives none.
    pub default_max_tokens: u32,
    /// Run Q4_1, Q5_0 and Q5_1 weights as Q8_0 (candle has no SIMD kernels for those three on
    /// x86): about 4x faster generation for twice their memory; outputs differ slightly from
    /// llama.cpp's on the original weights. `false` runs the file's weights as they are.
    pub convert_slow_weights: bool,
    /// Load at start (and on reload) rather than on first use. A preload that fails stops
    /// the start with the reason.
    pub preload: bool,
}

impl Default for LocalModelConfig {
    fn default() -> Self {
        Self {
            path: None,
            hub_repo: None,
            file: None,
            cache_dir: None,
            hub_endpoint: None,
            tokenizer: None,
            chat_template: None,
            context_length: None,
            queue_size: 16,
            default_max_tokens: 1024,
            convert_slow_weights: true,
            preload: true,
        }
    }
}

impl LocalModelConfig {
    /// Where the model comes from, for listings and logs: the path, or `hub:org/name/file`.
    #[must_use]
    pub fn source(&self) -> String {
        match (&self.path, &self.hub_repo, &self.file) {
            (Some(path), _, _) => path.display().to_string(),
            (None, Some(repo), Some(file)) => format!("hub:{repo}/{file}"),
            (None, Some(repo), None) => format!("hub:{repo}"),
            (None, None, _) => String::new(),
        }
    }

    /// The problems of this model's settings, as (key, message) pairs.
    #[must_use]
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        match (&self.path, &self.hub_repo) {
            (Some(_), Some(_)) => problems.push((
                "path",
                "give either path or hub_repo (with file), not both".to_owned(),
            )),
            (None, None) => problems.push((
                "path",
                "missing: the GGUF file to run (path = \"/models/model.gguf\"), or hub_repo \
                 and file to fetch it from the Hugging Face Hub"
                    .to_owned(),
            )),
            (Some(path), None) if !path.is_file() => {
                problems.push(("path", format!("{} is not a file", path.display())))
            }
            _ => {}
        }
        if let Some(repo) = &self.hub_repo {
            let (id, revision) = repo.split_once('@').unwrap_or((repo, "main"));
            let valid = id.split('/').count() == 2
                && id.split('/').all(|part| !part.is_empty())
                && !revision.is_empty();
            if !valid {
                problems.push((
                    "hub_repo",
                    format!("`{repo}` is not `org/name` or `org/name@revision`"),
                ));
            }
            match &self.file {
                None => problems.push(("file", "missing: the GGUF file in hub_repo".to_owned())),
                Some(file) if !file.ends_with(".gguf") => {
                    problems.push(("file", format!("`{file}` is not a .gguf file")));
                }
                Some(_) => {}
            }
        } else if self.file.is_some() {
            problems.push(("file", "only used with hub_repo".to_owned()));
        }
        if let Some(tokenizer) = &self.tokenizer
            && !tokenizer.is_file()
        {
            problems.push((
                "tokenizer",
                format!("{} is not a file", tokenizer.display()),
            ));
        }
        if self.queue_size == 0 {
            problems.push(("queue_size", "must be at least 1".to_owned()));
        }
        if self.default_max_tokens == 0 {
            problems.push(("default_max_tokens", "must be at least 1".to_owned()));
        }
        if self.context_length == Some(0) {
            problems.push(("context_length", "must be at least 1".to_owned()));
        }
        problems
    }

    /// The default local model: `LANDFALL_LOCAL_MODEL` when set, else SmolLM2-135M-Instruct
    /// from the Hub, loaded on first use.
    #[must_use]
    pub fn default_model(local_model_path: Option<PathBuf>) -> Self {
        match local_model_path {
            Some(path) => Self {
                path: Some(path),
                ..Self::default()
            },
            None => Self {
                hub_repo: Some(DEFAULT_LOCAL_REPO.to_owned()),
                file: Some(DEFAULT_LOCAL_FILE.to_owned()),
                preload: false,
                ..Self::default()
            },
        }
    }
}

impl Config {
    /// Adds the local provider and model alias `local` running `model` (see
    /// [`LocalModelConfig::default_model`]) when no provider is configured, or, when
    /// `explicit` (the operator named a file), unless a provider is called `local` already.
    /// Returns whether it did.
    pub fn add_default_local_model(&mut self, model: LocalModelConfig, explicit: bool) -> bool {
        let wanted = self.providers.is_empty()
            || (explicit && !self.providers.contains_key(DEFAULT_LOCAL_NAME));
        if !wanted {
            return false;
        }
        self.providers.insert(
            DEFAULT_LOCAL_NAME.to_owned(),
            ProviderConfig {
                http: HttpSettings::default(),
                kind: ProviderKind::Local(model),
            },
        );
        self.models
            .entry(DEFAULT_LOCAL_NAME.to_owned())
            .or_insert_with(|| ModelConfig {
                targets: vec![TargetConfig::to(DEFAULT_LOCAL_NAME)],
                knowledge: None,
                tool_protocol: Default::default(),
                prompt: None,
            });
        true
    }
}
