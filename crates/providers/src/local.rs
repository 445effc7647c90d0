//! The `local` provider: a GGUF chat model run in process by `landfall-models`, loaded from a
//! file or fetched from the Hugging Face Hub, at start or on first use.

mod translate;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures::StreamExt;
use landfall_config::LocalModelConfig;
use landfall_models::{
    GenerateError, GenerationEvent, LocalChatModel, LocalChatOptions, LocalModelInfo,
};
use landfall_types::{ChatRequest, ChatResponse, ErrorClass};

use crate::hub::{FileProgress, HubClient, HubRepo, ProgressFn};
use crate::{ChatModel, ChatStream, ProviderError};

/// Where a local model is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalState {
    /// Not loaded yet; the first request loads it.
    Idle,
    Loading,
    Ready(LocalModelInfo),
    /// The last load failed; the next request tries again.
    Failed(String),
    /// Unloaded by an operator: requests are refused (and fall back) until it is loaded.
    Unloaded,
}

/// What an operator sees of one local model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalStatus {
    pub name: String,
    /// The file, or `hub:org/name/file`.
    pub source: String,
    pub state: LocalState,
    /// Requests waiting for the one generating.
    pub waiting: usize,
}

enum Slot {
    Idle,
    Ready(Arc<LocalChatModel>),
    Failed(String),
    Unloaded,
}

/// One configured local model, as a [`ChatModel`].
pub struct LocalModel {
    name: String,
    config: LocalModelConfig,
    slot: Mutex<Slot>,
    /// Held while loading, so concurrent first requests load once.
    loading: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for LocalModel {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("LocalModel")
            .field("name", &self.name)
            .field("source", &self.config.source())
            .finish_non_exhaustive()
    }
}

impl LocalModel {
    #[must_use]
    pub fn new(name: &str, config: LocalModelConfig) -> Self {
        Self {
            name: name.to_owned(),
            config,
            slot: Mutex::new(Slot::Idle),
            loading: tokio::sync::Mutex::new(()),
        }
    }

    #[must_use]
    pub fn config(&self) -> &LocalModelConfig {
        &self.config
    }

    #[must_use]
    pub fn status(&self) -> LocalStatus {
        let loading = self.loading.try_lock().is_err();
        let slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        let (state, waiting) = match &*slot {
            Slot::Ready(model) => (LocalState::Ready(model.info().clone()), model.waiting()),
            _ if loading => (LocalState::Loading, 0),
            Slot::Idle => (LocalState::Idle, 0),
            Slot::Failed(reason) => (LocalState::Failed(reason.clone()), 0),
            Slot::Unloaded => (LocalState::Unloaded, 0),
        };
        LocalStatus {
            name: self.name.clone(),
            source: self.config.source(),
            state,
            waiting,
        }
    }

    /// Loads the model unless it is loaded (fetching it from the Hub first when needed).
    ///
    /// # Errors
    /// Why the model could not be fetched or loaded, for an operator to read.
    pub async fn load(&self) -> Result<LocalModelInfo, String> {
        self.model(true).await.map(|model| model.info().clone())
    }

    /// Loads the model now unless it is loaded or an operator unloaded it (a preload).
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub async fn preload(&self) -> Result<(), String> {
        if matches!(
            *self.slot.lock().unwrap_or_else(PoisonError::into_inner),
            Slot::Unloaded
        ) {
            return Ok(());
        }
        self.model(false).await.map(drop)
    }

    /// Frees the weights once running generations end; requests are refused until
    /// [`load`](Self::load).
    pub fn unload(&self) {
        *self.slot.lock().unwrap_or_else(PoisonError::into_inner) = Slot::Unloaded;
    }

    /// The loaded model; loads it when idle or failed, or when `force` (an operator's load).
    async fn model(&self, force: bool) -> Result<Arc<LocalChatModel>, String> {
        if let Some(model) = self.ready(force)? {
            return Ok(model);
        }
        let _loading = self.loading.lock().await;
        if let Some(model) = self.ready(force)? {
            return Ok(model);
        }
        let outcome = self.fetch_and_load().await;
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        match outcome {
            Ok(model) => {
                let model = Arc::new(model);
                *slot = Slot::Ready(model.clone());
                Ok(model)
            }
            Err(reason) => {
                tracing::warn!(model = %self.name, %reason, "local model failed to load");
                *slot = Slot::Failed(reason.clone());
                Err(reason)
            }
        }
    }

    /// The model when loaded; `Err` when unloaded (unless `force`); `None` when a load is due.
    fn ready(&self, force: bool) -> Result<Option<Arc<LocalChatModel>>, String> {
        match &*self.slot.lock().unwrap_or_else(PoisonError::into_inner) {
            Slot::Ready(model) => Ok(Some(model.clone())),
            Slot::Unloaded if !force => Err(format!(
                "local model `{}` is unloaded; load it with POST /admin/v1/models/{}/load",
                self.name, self.name
            )),
            Slot::Idle | Slot::Failed(_) | Slot::Unloaded => Ok(None),
        }
    }

    async fn fetch_and_load(&self) -> Result<LocalChatModel, String> {
        let path = self.locate().await?;
        let options = LocalChatOptions {
            tokenizer: self.config.tokenizer.clone(),
            chat_template: self.config.chat_template.clone(),
            context_length: self
                .config
                .context_length
                .and_then(|length| usize::try_from(length).ok()),
            queue_size: usize::try_from(self.config.queue_size).unwrap_or(usize::MAX),
            convert_slow_weights: self.config.convert_slow_weights,
        };
        tracing::info!(model = %self.name, path = %path.display(), "loading local model");
        let started = std::time::Instant::now();
        let loaded = tokio::task::spawn_blocking(move || LocalChatModel::load(&path, &options))
            .await
            .map_err(|error| format!("the loader stopped: {error}"))?
            .map_err(|error| error.to_string())?;
        let info = loaded.info();
        tracing::info!(
            model = %self.name,
            architecture = %info.architecture,
            quantization = %info.quantization,
            context_length = info.context_length,
            elapsed_ms = started.elapsed().as_millis(),
            "local model loaded"
        );
        Ok(loaded)
    }

    /// The GGUF file: the configured path, the Hub cache, or a download into it.
    async fn locate(&self) -> Result<PathBuf, String> {
        if let Some(path) = &self.config.path {
            return Ok(path.clone());
        }
        let (Some(repo), Some(file)) = (&self.config.hub_repo, &self.config.file) else {
            return Err("neither path nor hub_repo and file are set".to_owned());
        };
        let (repo_id, revision) = repo.split_once('@').unwrap_or((repo, "main"));
        let cache_dir = self
            .config
            .cache_dir
            .clone()
            .unwrap_or_else(landfall_models::default_cache_dir);
        if let Some(path) = landfall_models::cached_file(&cache_dir, repo_id, revision, file) {
            return Ok(path);
        }
        let failed = |reason: String| {
            format!(
                "could not fetch {file} from `{repo_id}` on the Hugging Face Hub: {reason}. \
                 Download a GGUF chat model and point at it: `landfall serve --model \
                 /path/to/model.gguf`, LANDFALL_LOCAL_MODEL, or `path` in a \
                 [providers.NAME] table with type = \"local\""
            )
        };
        let hub = HubClient::from_env(self.config.hub_endpoint.as_deref())
            .map_err(|error| failed(error.to_string()))?;
        tracing::info!(model = %self.name, repo = repo_id, revision, file, endpoint = hub.endpoint(), "fetching local model from the Hugging Face Hub");
        let hub_repo = HubRepo {
            repo_id,
            revision,
            cache_dir: &cache_dir,
        };
        match hub
            .fetch_file(&hub_repo, file, Some(&progress_log(&self.name)))
            .await
        {
            Ok(Some(snapshot)) => Ok(snapshot.join(file)),
            Ok(None) => Err(failed("the repository has no such file".to_owned())),
            Err(error) => Err(failed(error.to_string())),
        }
    }
}

/// Logs a download's progress every tenth of the way.
fn progress_log(name: &str) -> ProgressFn {
    let name = name.to_owned();
    let last_tenth = Mutex::new(None::<u64>);
    Arc::new(move |progress: &FileProgress| {
        let Some(total) = progress.bytes_total.filter(|&total| total > 0) else {
            return;
        };
        let tenth = progress.bytes_done.saturating_mul(10) / total;
        let mut last = last_tenth.lock().unwrap_or_else(PoisonError::into_inner);
        if *last != Some(tenth) {
            *last = Some(tenth);
            tracing::info!(model = %name, file = %progress.file, done = progress.bytes_done, total, "downloading {}%", tenth * 10);
        }
    })
}

fn refused(error: &GenerateError) -> ProviderError {
    let class = match error {
        GenerateError::QueueFull { .. } | GenerateError::Unloaded => ErrorClass::RateLimited,
        GenerateError::ContextTooLong { .. } => ErrorClass::ContextTooLong,
        GenerateError::InvalidRequest(_) => ErrorClass::InvalidRequest,
        GenerateError::Inference(_) => ErrorClass::Transient,
    };
    ProviderError::Local {
        class,
        message: error.to_string(),
    }
}

fn unavailable(message: String) -> ProviderError {
    ProviderError::Local {
        class: ErrorClass::Permanent,
        message,
    }
}

#[async_trait]
impl ChatModel for LocalModel {
    async fn chat(
        &self,
        request: &ChatRequest,
        upstream_model: &str,
    ) -> Result<ChatResponse, ProviderError> {
        let model = self.model(false).await.map_err(unavailable)?;
        let (prompt, params) = translate::generation(request, &model, &self.config)?;
        let mut generation = model
            .generate(prompt, params)
            .map_err(|error| refused(&error))?;
        let mut text = String::new();
        while let Some(event) = generation.recv().await {
            match event.map_err(|error| refused(&error))? {
                GenerationEvent::Text(piece) => text.push_str(&piece),
                GenerationEvent::Finished {
                    reason,
                    prompt_tokens,
                    completion_tokens,
                } => {
                    return Ok(translate::response(
                        upstream_model,
                        text,
                        reason,
                        prompt_tokens,
                        completion_tokens,
                    ));
                }
            }
        }
        Err(refused(&GenerateError::Unloaded))
    }

    async fn chat_stream(
        &self,
        request: &ChatRequest,
        upstream_model: &str,
    ) -> Result<ChatStream, ProviderError> {
        let model = self.model(false).await.map_err(unavailable)?;
        let (prompt, params) = translate::generation(request, &model, &self.config)?;
        let generation = model
            .generate(prompt, params)
            .map_err(|error| refused(&error))?;
        let mut chunks = translate::Chunks::new(upstream_model);
        let opening = futures::stream::iter([Ok(chunks.opening())]);
        let events = tokio_stream(generation).flat_map(move |event| {
            let items: Vec<Result<_, ProviderError>> = match event {
                Ok(event) => chunks.of(event).into_iter().map(Ok).collect(),
                Err(error) => vec![Err(ProviderError::StreamError {
                    message: error.to_string(),
                })],
            };
            futures::stream::iter(items)
        });
        Ok(opening.chain(events).boxed())
    }
}

/// A Tokio receiver as a stream.
fn tokio_stream<T: Send + 'static>(
    mut receiver: tokio::sync::mpsc::Receiver<T>,
) -> futures::stream::BoxStream<'static, T> {
    futures::stream::poll_fn(move |context| receiver.poll_recv(context)).boxed()
}

/// Local models by provider name, kept across configuration reloads so that a model whose
/// settings did not change is not loaded again.
#[derive(Debug, Default)]
pub struct LocalModels {
    models: Mutex<BTreeMap<String, Arc<LocalModel>>>,
}

impl LocalModels {
    /// The model for provider `name` with `config`: the one already built when its settings
    /// are the same, else a new one (not loaded yet).
    #[must_use]
    pub fn get_or_create(&self, name: &str, config: &LocalModelConfig) -> Arc<LocalModel> {
        let mut models = self.models.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(existing) = models.get(name)
            && existing.config == *config
        {
            return existing.clone();
        }
        let model = Arc::new(LocalModel::new(name, config.clone()));
        models.insert(name.to_owned(), model.clone());
        model
    }

    /// A registry holding the same models, for building the next gateway without touching
    /// this one's.
    #[must_use]
    pub fn successor(&self) -> Self {
        Self {
            models: Mutex::new(
                self.models
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone(),
            ),
        }
    }

    /// Forgets models whose provider name is not in `names` (their weights are freed once
    /// the gateways and requests using them are gone).
    pub fn retain(&self, names: &[&str]) {
        self.models
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|name, _| names.contains(&name.as_str()));
    }

    #[must_use]
    pub fn get(&self, name: &str) -> Option<Arc<LocalModel>> {
        self.models
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// Every model, by name.
    #[must_use]
    pub fn all(&self) -> Vec<Arc<LocalModel>> {
        self.models
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }
}

/// Seconds since the Unix epoch.
fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
