//! Opening the knowledge service from the configuration: the embedder it names (loaded from a
//! folder, or fetched from the Hugging Face Hub into a cache) and the metadata store.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::response::IntoResponse;
use landfall_accounting::{Failure, RecordKind, RequestLog, RequestStart};
use landfall_config::{Config, EmbedderConfig, RerankerConfig};
use landfall_documents::{SimpleTokenizer, TokenSpans};
use landfall_gateway::{Gateway, Operation, Served};
use landfall_governance::{Admission, Demand, GovernanceError, Principal, Usage, prompt_tokens};
use landfall_knowledge::{
    Caller, Embedder, Knowledge, KnowledgeError, LocalEmbedder, LocalReranker, Reranker, Rewriter,
};
use landfall_models::ModelSource;
use landfall_providers::hub::{FileProgress, HubClient, HubRepo, ProgressFn};
use landfall_storage::Store;
use landfall_types::{
    ChatRequest, EmbeddingInput, EmbeddingRequest, EmbeddingResponse, EmbeddingVector,
};
use rand::Rng;

use crate::routes::chat::token_usage;
use crate::{ApiError, Inner};

/// How the audit log and metrics name the model calls the knowledge service makes.
const EMBED_ROUTE: &str = "knowledge:embeddings";
const REWRITE_ROUTE: &str = "knowledge:chat/completions";

/// Longest background work (an ingestion) waits out its tenant's rate limits for one call
/// before the file fails.
const MAX_BACKGROUND_WAIT: Duration = Duration::from_secs(600);

/// The caller of the model calls a search makes while serving `principal`'s request.
pub(crate) fn caller(principal: &Principal, log: &RequestLog) -> Caller {
    Caller::request(
        principal.tenant.id.as_str(),
        principal.key.as_ref().map(|key| key.id.clone()),
        log.request_id(),
    )
}

/// One model call the knowledge service makes on the server's gateway for a caller. It is
/// governed and recorded like an API request of its own: admitted against the caller's
/// limits and budgets, settled with the exact usage, counted in metrics and written to the
/// audit log (under the caller's request id, so a search's calls sit next to it).
struct GovernedCall {
    inner: Arc<Inner>,
    principal: Principal,
    background: bool,
    log: RequestLog,
}

impl GovernedCall {
    async fn begin(
        state: &Weak<Inner>,
        caller: &Caller,
        operation: Operation,
        model: &str,
        route: &'static str,
    ) -> Result<Self, KnowledgeError> {
        let Some(inner) = state.upgrade() else {
            return Err(KnowledgeError::Unavailable(
                "the server is stopping".to_owned(),
            ));
        };
        let log = inner.accounting.begin(RequestStart {
            kind: RecordKind::Request,
            request_id: caller
                .request_id
                .clone()
                .unwrap_or_else(|| format!("job_{:032x}", rand::rng().random::<u128>())),
            method: "INTERNAL".to_owned(),
            route,
            path: route.to_owned(),
            client_addr: None,
            user_agent: None,
        });
        log.model(operation, model, false);
        let principal = match inner
            .governance
            .principal_of(&caller.tenant_id, caller.key_id.as_deref())
            .await
        {
            Ok(principal) => principal,
            Err(error) => return Err(refused(&log, error)),
        };
        log.principal(&principal.tenant.id, principal.key_id());
        Ok(Self {
            inner,
            principal,
            background: caller.request_id.is_none(),
            log,
        })
    }

    /// Admits the call; background work waits a rate limit out (up to
    /// [`MAX_BACKGROUND_WAIT`]), a request's call is refused at once.
    async fn admit(&self, demand: &Demand<'_>) -> Result<Admission, KnowledgeError> {
        let deadline = Instant::now() + MAX_BACKGROUND_WAIT;
        loop {
            match self.inner.governance.admit(&self.principal, demand).await {
                Ok(admission) => return Ok(admission),
                Err(GovernanceError::RateLimited {
                    retry_after: Some(wait),
                    ..
                }) if self.background && Instant::now() + wait <= deadline => {
                    tokio::time::sleep(wait.max(Duration::from_millis(10))).await;
                }
                Err(error) => return Err(refused(&self.log, error)),
            }
        }
    }

    /// Settles a served call with its usage and finishes its record.
    async fn served<T>(
        &self,
        served: &Served<T>,
        admission: Admission,
        usage: Usage,
        reported: bool,
    ) {
        self.log
            .served(&served.target, served.attempts, served.upstream);
        self.log.usage(token_usage(&usage, reported));
        admission.settle(&served.target, usage).await;
        self.log.respond(200, None);
    }

    /// Finishes the record of a call that failed with `error`, as its direct call would.
    fn failed(&self, error: impl Into<ApiError>) {
        respond(&self.log, error.into());
    }
}

/// Records a governance refusal and turns it into the knowledge service's error.
fn refused(log: &RequestLog, error: GovernanceError) -> KnowledgeError {
    respond(log, ApiError::from(error.clone()));
    KnowledgeError::Refused(Box::new(error))
}

/// Finishes `log` with the status and failure the API would answer `error` with.
fn respond(log: &RequestLog, error: ApiError) {
    let response = error.into_response();
    log.respond(
        response.status().as_u16(),
        response.extensions().get::<Failure>().copied(),
    );
}

/// Query rewrites and HyDE passages written by `knowledge.search.rewrite_model` through the
/// gateway (its routing, retries, fallback and metrics apply), charged to the caller.
pub(crate) struct GatewayRewriter {
    pub(crate) state: Weak<Inner>,
    pub(crate) model: String,
}

#[async_trait]
impl Rewriter for GatewayRewriter {
    async fn generate(
        &self,
        instructions: &str,
        input: &str,
        caller: &Caller,
    ) -> Result<String, KnowledgeError> {
        let request = ChatRequest::instructed(&self.model, instructions, input.to_owned(), 512);
        let call = GovernedCall::begin(
            &self.state,
            caller,
            Operation::Chat,
            &self.model,
            REWRITE_ROUTE,
        )
        .await?;
        let price = call.inner.gateway().reservation_price(&self.model);
        let demand = call.inner.governance.chat_demand(&request, price);
        let admission = call.admit(&demand).await?;
        let served = match call.inner.gateway().chat(&request).await {
            Ok(served) => served,
            Err(error) => {
                let message = error.to_string();
                call.failed(error);
                return Err(KnowledgeError::Generation(message));
            }
        };
        let usage = served.value.usage.as_ref().map_or(
            Usage {
                input_tokens: prompt_tokens(&request),
                ..Usage::default()
            },
            |usage| Usage::priced(usage, served.price),
        );
        let reported = served.value.usage.is_some();
        call.served(&served, admission, usage, reported).await;
        Ok(served
            .value
            .choices
            .first()
            .map(|choice| choice.message.text_content())
            .unwrap_or_default())
    }
}

/// The server's gateway (calls governed for their caller), or, for CLI commands that run
/// without a server, one of its own (the operator's calls, not charged to anyone).
enum GatewaySource {
    Server(Weak<Inner>),
    Own(Box<Gateway>),
}

impl GatewaySource {
    async fn embed(
        &self,
        request: &EmbeddingRequest,
        caller: &Caller,
    ) -> Result<EmbeddingResponse, KnowledgeError> {
        let state = match self {
            Self::Own(gateway) => {
                return gateway
                    .embed(request)
                    .await
                    .map(|served| served.value)
                    .map_err(|error| KnowledgeError::Embedding(error.to_string()));
            }
            Self::Server(state) => state,
        };
        let call = GovernedCall::begin(
            state,
            caller,
            Operation::Embeddings,
            &request.model,
            EMBED_ROUTE,
        )
        .await?;
        let estimate = crate::routes::embeddings::input_tokens(&request.input);
        let demand = Demand {
            model: &request.model,
            prompt_tokens: estimate,
            completion_tokens: 0,
            price: call.inner.gateway().reservation_price(&request.model),
        };
        let admission = call.admit(&demand).await?;
        let served = match call.inner.gateway().embed(request).await {
            Ok(served) => served,
            Err(error) => {
                let message = error.to_string();
                call.failed(error);
                return Err(KnowledgeError::Embedding(message));
            }
        };
        let usage = crate::routes::embeddings::settled_usage(&served, estimate);
        let reported = served.value.usage.is_some();
        call.served(&served, admission, usage, reported).await;
        Ok(served.value)
    }
}

/// Chunk and query embeddings from an embeddings model alias, through the gateway.
pub(crate) struct GatewayEmbedder {
    gateway: GatewaySource,
    model: String,
    dimensions: usize,
    batch_size: usize,
}

#[async_trait]
impl Embedder for GatewayEmbedder {
    fn model_id(&self) -> &str {
        &self.model
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    fn tokenizer(&self) -> Arc<dyn TokenSpans> {
        Arc::new(SimpleTokenizer)
    }

    async fn embed(
        &self,
        texts: Vec<String>,
        caller: &Caller,
    ) -> Result<Vec<Vec<f32>>, KnowledgeError> {
        let mut vectors = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.batch_size) {
            let request = EmbeddingRequest {
                model: self.model.clone(),
                input: EmbeddingInput::Texts(batch.to_vec()),
                encoding_format: None,
                dimensions: None,
                extra: Default::default(),
            };
            let mut data = self.gateway.embed(&request, caller).await?.data;
            if data.len() != batch.len() {
                return Err(KnowledgeError::Embedding(format!(
                    "`{}` returned {} embeddings for {} inputs",
                    self.model,
                    data.len(),
                    batch.len()
                )));
            }
            data.sort_by_key(|embedding| embedding.index);
            for embedding in data {
                let EmbeddingVector::Float(values) = embedding.embedding else {
                    return Err(KnowledgeError::Embedding(format!(
                        "`{}` returned base64 embeddings to a float request",
                        self.model
                    )));
                };
                if values.len() != self.dimensions {
                    return Err(KnowledgeError::Embedding(format!(
                        "`{}` returned {} dimensions, knowledge.embedder.dimensions is {}",
                        self.model,
                        values.len(),
                        self.dimensions
                    )));
                }
                vectors.push(unit_length(values));
            }
        }
        Ok(vectors)
    }
}

/// The vector scaled to length 1: indexes compare by cosine, and not every provider
/// normalizes.
fn unit_length(values: Vec<f64>) -> Vec<f32> {
    let norm = values.iter().map(|value| value * value).sum::<f64>().sqrt();
    let scale = if norm > 0.0 { 1.0 / norm } else { 1.0 };
    values
        .into_iter()
        .map(|value| (value * scale) as f32)
        .collect()
}

/// Opens the knowledge service `config` describes over `store`, for commands that run
/// without a server (a gateway embedder gets a gateway of its own).
///
/// # Errors
/// When the embedding model cannot be loaded or the indexes cannot be opened.
pub async fn open(
    config: &Config,
    store: Arc<dyn Store>,
    rewriter: Option<Arc<dyn Rewriter>>,
) -> Result<Arc<Knowledge>, KnowledgeError> {
    open_with(config, store, None, rewriter).await
}

/// Opens the knowledge service `config` describes over `store`. `state` is the server's, so
/// a gateway embedder shares its gateway; without it one is built.
///
/// # Errors
/// When the embedding model cannot be loaded or the indexes cannot be opened.
pub(crate) async fn open_with(
    config: &Config,
    store: Arc<dyn Store>,
    state: Option<Weak<Inner>>,
    rewriter: Option<Arc<dyn Rewriter>>,
) -> Result<Arc<Knowledge>, KnowledgeError> {
    let hub_endpoint = config.knowledge.hub_endpoint.as_deref();
    let embedder: Option<Arc<dyn Embedder>> = match &config.knowledge.embedder {
        EmbedderConfig::None => None,
        EmbedderConfig::Local {
            model,
            cache_dir,
            batch_size,
        } => {
            let batch_size = *batch_size;
            let embedder = load_model(model, cache_dir.as_ref(), hub_endpoint, move |dir| {
                LocalEmbedder::load(dir, batch_size)
            })
            .await?;
            tracing::info!(
                model = embedder.model_id(),
                dimensions = embedder.dimensions(),
                "embedding model loaded"
            );
            Some(Arc::new(embedder))
        }
        EmbedderConfig::Gateway {
            model,
            dimensions,
            batch_size,
        } => Some(Arc::new(GatewayEmbedder {
            gateway: match state {
                Some(state) => GatewaySource::Server(state),
                None => GatewaySource::Own(Box::new(
                    Gateway::new(config)
                        .map_err(|error| KnowledgeError::Embedding(error.to_string()))?,
                )),
            },
            model: model.clone(),
            dimensions: *dimensions,
            batch_size: *batch_size,
        })),
    };
    let reranker: Option<Arc<dyn Reranker>> = match &config.knowledge.reranker {
        RerankerConfig::None => None,
        RerankerConfig::Local {
            model,
            cache_dir,
            candidates,
            batch_size,
        } => {
            let (candidates, batch_size) = (*candidates, *batch_size);
            let reranker = load_model(model, cache_dir.as_ref(), hub_endpoint, move |dir| {
                LocalReranker::load(dir, candidates, batch_size)
            })
            .await?;
            tracing::info!(model = reranker.model_id(), "reranking model loaded");
            Some(Arc::new(reranker))
        }
    };
    Knowledge::open(&config.knowledge, store, embedder, rewriter, reranker).await
}

/// Finds `model` (a folder, a Hub repository id already in `cache_dir`, or one fetched into
/// it from `hub_endpoint`) and loads it with `load`, on the blocking pool.
async fn load_model<T: Send + 'static>(
    model: &str,
    cache_dir: Option<&PathBuf>,
    hub_endpoint: Option<&str>,
    load: impl FnOnce(&Path) -> Result<T, KnowledgeError> + Send + 'static,
) -> Result<T, KnowledgeError> {
    let cache_dir = cache_dir
        .cloned()
        .unwrap_or_else(landfall_models::default_cache_dir);
    let dir = match landfall_models::locate(model, &cache_dir)
        .map_err(|error| KnowledgeError::Embedding(error.to_string()))?
    {
        ModelSource::Folder(dir) => dir,
        ModelSource::Hub { repo_id, revision } => {
            let repo = HubRepo {
                repo_id: &repo_id,
                revision: &revision,
                cache_dir: &cache_dir,
            };
            fetch_model(&repo, hub_endpoint, &progress_log(&repo_id)).await?
        }
    };
    tokio::task::spawn_blocking(move || load(&dir))
        .await
        .map_err(|error| KnowledgeError::Unavailable(error.to_string()))?
}

/// Fetches the files of a BERT-family model (an embedder or a cross-encoder) from the Hub at
/// `endpoint` (else `HF_ENDPOINT`, else the public Hub) into its cache, reporting to
/// `progress`; returns the snapshot folder.
///
/// # Errors
/// [`KnowledgeError::Embedding`] naming the repository, the endpoint and what went wrong.
pub async fn fetch_model(
    repo: &HubRepo<'_>,
    endpoint: Option<&str>,
    progress: &ProgressFn,
) -> Result<PathBuf, KnowledgeError> {
    let failed = |endpoint: &str, reason: String| {
        KnowledgeError::Embedding(format!(
            "could not fetch model `{}` from the Hugging Face Hub at {endpoint}: {reason}; \
             pass a local model folder (config.json, tokenizer.json, model.safetensors) instead",
            repo.repo_id
        ))
    };
    let hub = HubClient::from_env(endpoint)
        .map_err(|error| failed(endpoint.unwrap_or("HF_ENDPOINT"), error.to_string()))?;
    let endpoint = hub.endpoint().to_owned();
    tracing::info!(repo = repo.repo_id, revision = repo.revision, %endpoint, cache = %repo.cache_dir.display(), "fetching model from the Hugging Face Hub");
    let mut snapshot = None;
    for &file in landfall_models::MODEL_FILES {
        match hub.fetch_file(repo, file, Some(progress)).await {
            Ok(Some(dir)) => snapshot = Some(dir),
            Ok(None) if landfall_models::REQUIRED_FILES.contains(&file) => {
                return Err(failed(&endpoint, format!("the repository has no {file}")));
            }
            Ok(None) => {}
            Err(error) => return Err(failed(&endpoint, error.to_string())),
        }
    }
    let snapshot = snapshot.ok_or_else(|| failed(&endpoint, "no files".to_owned()))?;
    if !snapshot.join("model.safetensors").is_file() {
        let weights = landfall_models::FALLBACK_WEIGHTS;
        match hub.fetch_file(repo, weights, Some(progress)).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(failed(
                    &endpoint,
                    format!("the repository has neither model.safetensors nor {weights}"),
                ));
            }
            Err(error) => return Err(failed(&endpoint, error.to_string())),
        }
    }
    tracing::info!(repo = repo.repo_id, dir = %snapshot.display(), "model fetched");
    Ok(snapshot)
}

/// Logs a download's progress: when a file starts, then every tenth of a large file.
fn progress_log(repo_id: &str) -> ProgressFn {
    const LARGE_BYTES: u64 = 8 << 20;
    let repo_id = repo_id.to_owned();
    let reported = std::sync::Mutex::new((String::new(), 0_u64));
    Arc::new(move |progress: &FileProgress| {
        let Ok(mut reported) = reported.lock() else {
            return;
        };
        let total = progress.bytes_total.unwrap_or(0);
        let tenth = if total >= LARGE_BYTES {
            progress.bytes_done * 10 / total
        } else {
            0
        };
        if reported.0 == progress.file && reported.1 >= tenth {
            return;
        }
        *reported = (progress.file.clone(), tenth);
        tracing::info!(
            repo = %repo_id,
            file = %progress.file,
            done_mb = progress.bytes_done as f64 / 1e6,
            total_mb = total as f64 / 1e6,
            percent = (progress.bytes_done * 100).checked_div(total).unwrap_or(0),
            "downloading"
        );
    })
}
