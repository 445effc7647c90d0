//! Opening the knowledge service from the configuration: the embedder it names (loaded from a
//! folder, or fetched from the Hugging Face Hub into a cache) and the metadata store.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::response::IntoResponse;
use landfall_accounting::{Failure, RecordKind, RequestLog, RequestStart};
use landfall_config::{Config, EmbedderConfig, RerankerConfig};
use landfall_documents::{SimpleTokenizer, TokenSpans};
use landfall_gateway::{Gateway, Operation, Served};
use landfall_governance::{
    Admission, Demand, GovernanceError, Principal, Usage, prompt_tokens, text_tokens,
};
use landfall_knowledge::{
    Caller, Embedder, Knowledge, KnowledgeError, LocalEmbedder, LocalReranker, Reranker, Rewriter,
};
use landfall_storage::Store;
use landfall_types::{
    ChatMessage, ChatRequest, EmbeddingInput, EmbeddingRequest, EmbeddingResponse, EmbeddingVector,
    Role,
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
        let request = ChatRequest {
            model: self.model.clone(),
            messages: vec![
                ChatMessage::text(Role::System, instructions),
                ChatMessage::text(Role::User, input),
            ],
            stream: None,
            stream_options: None,
            max_tokens: Some(512),
            max_completion_tokens: None,
            temperature: Some(0.0),
            top_p: None,
            stop: None,
            tools: None,
            tool_choice: None,
            extra: Default::default(),
        };
        let call = GovernedCall::begin(
            &self.state,
            caller,
            Operation::Chat,
            &self.model,
            REWRITE_ROUTE,
        )
        .await?;
        let price = call.inner.gateway.reservation_price(&self.model);
        let demand = call.inner.governance.chat_demand(&request, price);
        let admission = call.admit(&demand).await?;
        let served = match call.inner.gateway.chat(&request).await {
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
        texts: &[String],
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
        let estimate = texts.iter().map(|text| text_tokens(text)).sum();
        let demand = Demand {
            model: &request.model,
            prompt_tokens: estimate,
            completion_tokens: 0,
            price: call.inner.gateway.reservation_price(&request.model),
        };
        let admission = call.admit(&demand).await?;
        let served = match call.inner.gateway.embed(request).await {
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
            let mut data = self.gateway.embed(&request, batch, caller).await?.data;
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
    let embedder: Option<Arc<dyn Embedder>> = match &config.knowledge.embedder {
        EmbedderConfig::None => None,
        EmbedderConfig::Local {
            model,
            cache_dir,
            batch_size,
        } => {
            let batch_size = *batch_size;
            let embedder = load_model(model, cache_dir.as_ref(), move |dir| {
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
            let reranker = load_model(model, cache_dir.as_ref(), move |dir| {
                LocalReranker::load(dir, candidates, batch_size)
            })
            .await?;
            tracing::info!(model = reranker.model_id(), "reranking model loaded");
            Some(Arc::new(reranker))
        }
    };
    Knowledge::open(&config.knowledge, store, embedder, rewriter, reranker).await
}

/// Resolves `model` (a folder, or a Hub repository id fetched into `cache_dir`) and loads it
/// with `load`, on the blocking pool.
async fn load_model<T: Send + 'static>(
    model: &str,
    cache_dir: Option<&std::path::PathBuf>,
    load: impl FnOnce(&std::path::Path) -> Result<T, KnowledgeError> + Send + 'static,
) -> Result<T, KnowledgeError> {
    let model = model.to_owned();
    let cache_dir = cache_dir
        .cloned()
        .unwrap_or_else(landfall_models::default_cache_dir);
    tokio::task::spawn_blocking(move || {
        let dir = landfall_models::resolve_model(&model, &cache_dir, None)
            .map_err(|error| KnowledgeError::Embedding(error.to_string()))?;
        load(&dir)
    })
    .await
    .map_err(|error| KnowledgeError::Unavailable(error.to_string()))?
}
