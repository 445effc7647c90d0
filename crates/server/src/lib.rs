//! The HTTP face of Landfall: OpenAI-compatible routes over the gateway, health probes, and
//! the one place where errors become HTTP statuses and OpenAI-shaped error bodies.
//!
//! Handlers parse, validate and translate; routing, retries and provider calls live in
//! `landfall-gateway`. Nothing here knows a provider's wire format.

mod admin;
mod approvals;
mod audit;
mod auth;
mod conversations;
mod error;
mod extract;
mod guard;
mod guardrail_admin;
mod knowledge;
mod memories;
mod model_admin;
mod prompts;
mod responses;
mod reviews;

pub use knowledge::{fetch_model, open as open_knowledge};
mod observe;
mod routes;
mod sse;
mod swap;
mod tools;

pub use swap::{ConfigSource, SwapError};
pub use tools::ToolsError;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use std::net::SocketAddr;

use axum::Router;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use landfall_accounting::Accounting;
use landfall_config::{Config, MetricsAccess};
use landfall_gateway::Gateway;
use landfall_governance::Governance;
use landfall_knowledge::Knowledge;
use landfall_storage::AuditLog;

pub use error::ApiError;
pub use guard::{GUARDRAILS_HEADER, REVIEW_HEADER};
pub use observe::{REQUEST_ID_HEADER, TraceContext};

/// Response header naming the `provider/model` that served a request.
pub const TARGET_HEADER: &str = "x-landfall-target";
/// Response header counting the upstream calls a request took.
pub const ATTEMPTS_HEADER: &str = "x-landfall-attempts";
/// Response header saying whether the response cache answered: `hit` or `miss`.
pub const CACHE_HEADER: &str = "x-landfall-cache";
/// Response header present when load shedding capped `max_tokens`: the bound applied.
pub const SHED_HEADER: &str = "x-landfall-shed-max-tokens";

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    /// Swapped whole by reloads and model changes (see `swap`).
    routes: std::sync::RwLock<Arc<swap::Routes>>,
    swapping: tokio::sync::Mutex<()>,
    config_source: std::sync::OnceLock<ConfigSource>,
    governance: Governance,
    accounting: Accounting,
    /// Who may read `/metrics` on the main listener; `None` when it is not served there.
    metrics_access: Option<MetricsAccess>,
    max_body_bytes: usize,
    ready: AtomicBool,
    trace_context: std::sync::OnceLock<Arc<dyn TraceContext>>,
    /// Shared with the tools, which read e-mail attachments from its files.
    knowledge: Arc<std::sync::OnceLock<Arc<Knowledge>>>,
    knowledge_search: landfall_config::SearchConfig,
    /// Largest `/v1/files` body: the file limit plus room for the multipart envelope.
    upload_limit: usize,
    /// The compiled rule set, swapped whole when operators change it.
    guardrails: std::sync::RwLock<Arc<landfall_guardrails::Guardrails>>,
    /// The configuration file's rules; operators' rules are added to them.
    guardrail_base: landfall_config::GuardrailsConfig,
    /// The operators' rules and their version, changed one at a time.
    guardrail_operator: tokio::sync::Mutex<guardrail_admin::OperatorRules>,
    guardrail_store: std::sync::OnceLock<Arc<dyn landfall_storage::GuardrailStore>>,
    response_store: std::sync::OnceLock<Arc<dyn landfall_storage::ResponseStore>>,
    prompt_store: std::sync::OnceLock<Arc<dyn landfall_storage::PromptStore>>,
    memory_store: std::sync::OnceLock<Arc<dyn landfall_storage::MemoryStore>>,
}

/// Why the server's state could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Gateway(#[from] landfall_gateway::StartError),
    #[error(transparent)]
    Governance(#[from] landfall_governance::StartError),
    #[error(transparent)]
    Accounting(#[from] landfall_accounting::StartError),
    #[error("knowledge bases: {0}")]
    Knowledge(#[from] landfall_knowledge::KnowledgeError),
    #[error(transparent)]
    Models(#[from] SwapError),
    #[error("guardrails: {0}")]
    Guardrails(#[from] landfall_guardrails::GuardrailsError),
    #[error("tools: {0}")]
    Tools(#[from] tools::ToolsError),
    #[error("guardrails: cannot read the saved rule set: {0}")]
    GuardrailStore(#[from] landfall_storage::StoreError),
}

impl AppState {
    /// Builds the gateway and accounting over a started governance layer, writing the audit
    /// log to `audit`. Must run inside a Tokio runtime (the audit writer is spawned).
    ///
    /// # Errors
    /// When a provider cannot be built or a redaction pattern does not compile.
    pub fn new(
        config: &Config,
        governance: Governance,
        audit: Arc<dyn AuditLog>,
    ) -> Result<Self, StartError> {
        let accounting = Accounting::start(config, audit)?;
        let metrics_access = (config.metrics.enabled && config.metrics.listen.is_none())
            .then_some(config.metrics.access);
        let locals = landfall_providers::LocalModels::default();
        let gateway = Gateway::build(config, accounting.metrics(), &locals)?;
        let knowledge = Arc::new(std::sync::OnceLock::new());
        let tools = tools::build(config, &knowledge)?;
        let routes = swap::Routes::new(config.clone(), gateway, locals, tools);
        let guardrails = landfall_guardrails::Guardrails::compile(&config.guardrails, 0)?;
        Ok(Self {
            inner: Arc::new(Inner {
                routes: std::sync::RwLock::new(Arc::new(routes)),
                swapping: tokio::sync::Mutex::new(()),
                config_source: std::sync::OnceLock::new(),
                governance,
                accounting,
                metrics_access,
                max_body_bytes: config.server.max_body_bytes,
                ready: AtomicBool::new(true),
                trace_context: std::sync::OnceLock::new(),
                knowledge,
                knowledge_search: config.knowledge.search.clone(),
                upload_limit: usize::try_from(config.knowledge.max_file_bytes)
                    .unwrap_or(usize::MAX)
                    .saturating_add(1 << 20),
                guardrails: std::sync::RwLock::new(Arc::new(guardrails)),
                guardrail_base: config.guardrails.clone(),
                guardrail_operator: tokio::sync::Mutex::new(
                    guardrail_admin::OperatorRules::default(),
                ),
                guardrail_store: std::sync::OnceLock::new(),
                response_store: std::sync::OnceLock::new(),
                prompt_store: std::sync::OnceLock::new(),
                memory_store: std::sync::OnceLock::new(),
            }),
        })
    }

    /// Opens the configured stores and builds everything.
    ///
    /// # Errors
    /// When a store cannot be opened or a provider cannot be built.
    pub async fn start(config: &Config) -> Result<Self, StartError> {
        let store = landfall_governance::open_store(config).await?;
        let governance = Governance::start_with_store(config, store.clone()).await?;
        let state = Self::new(config, governance, store.clone())?;
        state
            .use_guardrail_store(store.clone() as Arc<dyn landfall_storage::GuardrailStore>)
            .await?;
        state.use_response_store(store.clone() as Arc<dyn landfall_storage::ResponseStore>);
        state.use_prompt_store(store.clone() as Arc<dyn landfall_storage::PromptStore>);
        state.use_memory_store(store.clone() as Arc<dyn landfall_storage::MemoryStore>);
        state.preload_local_models().await?;
        if config.knowledge.enabled {
            let rewriter = config.knowledge.search.rewrite_model.clone().map(|model| {
                Arc::new(knowledge::GatewayRewriter {
                    state: Arc::downgrade(&state.inner),
                    model,
                }) as Arc<dyn landfall_knowledge::Rewriter>
            });
            let knowledge =
                knowledge::open_with(config, store, Some(Arc::downgrade(&state.inner)), rewriter)
                    .await?;
            state.serve_knowledge(knowledge);
        }
        Ok(state)
    }

    /// Serves `/v1/files` and `/v1/vector_stores` from `knowledge` (set once; later calls
    /// are ignored).
    pub fn serve_knowledge(&self, knowledge: Arc<Knowledge>) {
        let _ = self.inner.knowledge.set(knowledge);
    }

    #[must_use]
    pub fn knowledge(&self) -> Option<&Knowledge> {
        self.inner.knowledge.get().map(Arc::as_ref)
    }

    pub(crate) fn model_knowledge(&self, model: &str) -> Option<landfall_config::ModelKnowledge> {
        self.routes().model_knowledge.get(model).cloned()
    }

    pub(crate) fn upload_limit(&self) -> usize {
        self.inner.upload_limit
    }

    pub(crate) fn knowledge_search_defaults(&self) -> &landfall_config::SearchConfig {
        &self.inner.knowledge_search
    }

    /// Writes what is still queued for the audit log and the usage ledger.
    pub async fn shutdown(&self) {
        if let Some(knowledge) = self.inner.knowledge.get() {
            knowledge.shutdown().await;
        }
        self.inner.accounting.shutdown().await;
        self.inner.governance.shutdown().await;
    }

    /// Continues callers' traces with `context` (set once, before serving; later calls are
    /// ignored).
    pub fn continue_traces_with(&self, context: Arc<dyn TraceContext>) {
        let _ = self.inner.trace_context.set(context);
    }

    pub(crate) fn trace_context(&self) -> Option<&Arc<dyn TraceContext>> {
        self.inner.trace_context.get()
    }

    /// Marks the server as not ready (during shutdown), so load balancers stop sending.
    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::Relaxed);
    }

    /// The gateway new requests are routed by (a reload replaces it; requests keep the one
    /// they started with).
    #[must_use]
    pub fn gateway(&self) -> Arc<Gateway> {
        self.routes().gateway.clone()
    }

    /// The rule set new requests are checked by.
    #[must_use]
    pub fn guardrails(&self) -> Arc<landfall_guardrails::Guardrails> {
        self.inner
            .guardrails
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn guardrail_store(&self) -> Option<&dyn landfall_storage::GuardrailStore> {
        self.inner.guardrail_store.get().map(Arc::as_ref)
    }

    /// Keeps the review queue and operators' rule versions in `store`, applies the newest
    /// saved rule set, and follows versions other replicas save (checked every 5 s).
    ///
    /// # Errors
    /// When the saved rule set cannot be read or no longer compiles.
    pub async fn use_guardrail_store(
        &self,
        store: Arc<dyn landfall_storage::GuardrailStore>,
    ) -> Result<(), StartError> {
        let _ = self.inner.guardrail_store.set(store);
        guardrail_admin::load_saved(self).await?;
        guardrail_admin::follow_replicas(self);
        Ok(())
    }

    /// Keeps `/v1/responses` results and conversations in `store` (set once; later calls
    /// are ignored). Without one, responses are not stored.
    pub fn use_response_store(&self, store: Arc<dyn landfall_storage::ResponseStore>) {
        let _ = self.inner.response_store.set(store);
    }

    pub(crate) fn response_store(&self) -> Option<Arc<dyn landfall_storage::ResponseStore>> {
        self.inner.response_store.get().cloned()
    }

    /// Keeps prompt templates in `store` (set once). Without one, there are no templates.
    pub fn use_prompt_store(&self, store: Arc<dyn landfall_storage::PromptStore>) {
        let _ = self.inner.prompt_store.set(store);
    }

    pub(crate) fn prompt_store(&self) -> Option<Arc<dyn landfall_storage::PromptStore>> {
        self.inner.prompt_store.get().cloned()
    }

    /// Keeps conversations and long-term memories in `store` (set once).
    pub fn use_memory_store(&self, store: Arc<dyn landfall_storage::MemoryStore>) {
        let _ = self.inner.memory_store.set(store);
    }

    pub(crate) fn memory_store(&self) -> Option<Arc<dyn landfall_storage::MemoryStore>> {
        self.inner.memory_store.get().cloned()
    }

    #[must_use]
    pub fn governance(&self) -> &Governance {
        &self.inner.governance
    }

    #[must_use]
    pub fn accounting(&self) -> &Accounting {
        &self.inner.accounting
    }
}

/// All routes.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/chat/completions", post(routes::chat::completions))
        .route("/embeddings", post(routes::embeddings::create))
        .route("/models", get(routes::models::list))
        .route("/models/{*id}", get(routes::models::retrieve))
        .route(
            "/files",
            post(routes::files::upload)
                .get(routes::files::list)
                .layer(axum::extract::DefaultBodyLimit::max(state.upload_limit())),
        )
        .route(
            "/files/{id}",
            get(routes::files::retrieve).delete(routes::files::delete),
        )
        .route("/files/{id}/content", get(routes::files::content))
        .route(
            "/vector_stores",
            post(routes::vector_stores::create).get(routes::vector_stores::list),
        )
        .route(
            "/vector_stores/{id}",
            get(routes::vector_stores::retrieve)
                .post(routes::vector_stores::modify)
                .delete(routes::vector_stores::delete),
        )
        .route(
            "/vector_stores/{id}/files",
            post(routes::vector_stores::attach).get(routes::vector_stores::list_files),
        )
        .route(
            "/vector_stores/{id}/files/{file_id}",
            get(routes::vector_stores::get_file)
                .post(routes::vector_stores::update_file)
                .delete(routes::vector_stores::detach),
        )
        .route(
            "/vector_stores/{id}/files/{file_id}/chunks",
            get(routes::vector_stores::file_chunks),
        )
        .route(
            "/vector_stores/{id}/file_batches",
            post(routes::vector_stores::create_batch),
        )
        .route(
            "/vector_stores/{id}/file_batches/{batch_id}",
            get(routes::vector_stores::get_batch),
        )
        .route(
            "/vector_stores/{id}/file_batches/{batch_id}/cancel",
            post(routes::vector_stores::cancel_batch),
        )
        .route(
            "/vector_stores/{id}/file_batches/{batch_id}/files",
            get(routes::vector_stores::batch_files),
        )
        .route(
            "/vector_stores/{id}/search",
            post(routes::vector_stores::search),
        )
        .route("/responses", post(responses::create))
        .route(
            "/responses/{id}",
            get(responses::retrieve).delete(responses::delete),
        )
        .route("/conversations", post(conversations::create))
        .route(
            "/conversations/{id}",
            get(conversations::retrieve)
                .post(conversations::update)
                .delete(conversations::delete),
        )
        .route(
            "/conversations/{id}/items",
            get(conversations::list_items).post(conversations::create_items),
        )
        .route(
            "/conversations/{id}/items/{item_id}",
            get(conversations::get_item).delete(conversations::delete_item),
        )
        .route(
            "/conversations/{id}/summarize",
            post(conversations::summarize),
        )
        .route("/memories", post(memories::create).get(memories::list))
        .route("/memories/search", post(memories::search_route))
        .route("/memories/{id}", axum::routing::delete(memories::delete))
        .route("/reviews/{id}", get(reviews::client_get))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_key,
        ))
        // Outermost, so refusals by the auth layer are recorded too.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            observe::api,
        ));
    let mut router = Router::new()
        .nest("/v1", api)
        .nest("/admin/v1", admin::router(state.clone()));
    if let Some(access) = state.inner.metrics_access {
        let metrics = get(routes::metrics::render);
        router = match access {
            MetricsAccess::Open => router.route("/metrics", metrics),
            MetricsAccess::AdminKey => router.route(
                "/metrics",
                metrics.route_layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    auth::require_admin,
                )),
            ),
        };
    }
    router
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz))
        .fallback(routes::health::not_found)
        .method_not_allowed_fallback(routes::health::method_not_allowed)
        .with_state(state)
}

/// Serves only `/metrics`, open, on a separate listener (`metrics.listen`).
///
/// # Errors
/// When accepting connections fails for good.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    state: AppState,
) -> std::io::Result<()> {
    let router = Router::new()
        .route("/metrics", get(routes::metrics::render))
        .fallback(routes::health::not_found)
        .with_state(state);
    axum::serve(listener, router).await
}

/// Serves `state` on `listener` until `shutdown` resolves, then lets in-flight requests finish.
///
/// # Errors
/// When accepting connections fails for good.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Without TCP_NODELAY the small writes of a stream's tail wait for the client's delayed
    // ACK (~40 ms on Linux) before they leave.
    let listener = listener.tap_io(|stream| {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
