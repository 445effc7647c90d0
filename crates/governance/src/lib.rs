//! Traffic governance: who may call (tenants, API keys, scopes), how much (rate, token and
//! concurrency limits, budgets priced from exact usage), what is answered from cache, and what
//! is shed when the machine is overloaded. Counters and cache live in `landfall-kv` (in process
//! or Redis), tenants, keys and the usage ledger in `landfall-storage` (SQLite or PostgreSQL).
//!
//! The server calls, per request: [`Governance::authenticate`], [`Governance::shed`],
//! [`Governance::admit`], the cache, then settles the [`Admission`] with the exact usage. This
//! crate knows no HTTP: refusals are [`GovernanceError`]s that the server maps to statuses.

mod admin;
mod admission;
mod auth;
mod cache;
mod error;
mod estimate;
mod ledger;
mod periods;
mod secret;
mod shed;
mod stream;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use landfall_config::{
    CacheConfig, Config, KvBackend, MetadataBackend, OnBackendError, SheddingConfig,
};
use landfall_kv::{
    Limiter, MemoryCache, MemoryLimiter, RedisCache, RedisLimiter, RedisSettings, ResponseCache,
};
use landfall_providers::ChatStream;
use landfall_storage::{MetadataStore, PostgresStore, SqliteStore, Store};
use landfall_types::{ChatRequest, TokenPrice};

pub use admin::{
    Admin, AdminError, BudgetSpec, Change, CreatedKey, KeyPatch, KeyView, NewKey, NewTenant, Page,
    TenantPatch, TenantView,
};
pub use admission::{Admission, Demand, RateLimitHeaders, duration_text};
pub use auth::Principal;
pub use cache::{CACHE_REQUEST_HEADER, CacheKey, CacheLookup, CachedReply};
pub use error::{GovernanceError, StartError};
pub use estimate::{prompt_tokens, text_tokens};
pub use ledger::Usage;
pub use secret::admin_key_matches;
pub use shed::{CpuLoad, Shed};
pub use stream::{ServedStream, StreamEnd, StreamOutcome};

pub(crate) use landfall_storage::now_millis;

/// Counts of failures that were absorbed rather than returned.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub limiter_errors: AtomicU64,
}

/// A snapshot of [`Governance`]'s counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct GovernanceStats {
    /// Calls to the limit backend that failed (each admitted or refused per `on_backend_error`).
    pub limiter_errors: u64,
    /// Cache reads and writes that failed (each served without the cache).
    pub cache_errors: u64,
    /// Usage rows dropped because the store was down too long.
    pub dropped_usage_rows: u64,
}

pub(crate) struct Inner {
    store: Arc<dyn MetadataStore>,
    limiter: Arc<dyn Limiter>,
    cache: Option<Arc<dyn CacheLookup>>,
    cache_config: CacheConfig,
    ledger: ledger::Ledger,
    auth: auth::Authenticator,
    admin_key: Option<String>,
    models: Vec<String>,
    shedding: SheddingConfig,
    cpu: Arc<CpuLoad>,
    on_backend_error: OnBackendError,
    default_completion_tokens: u64,
    stats: Stats,
}

/// The governance layer of one server process.
#[derive(Clone)]
pub struct Governance {
    inner: Arc<Inner>,
    tasks: Arc<Vec<tokio::task::AbortHandle>>,
}

impl std::fmt::Debug for Governance {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Governance").finish_non_exhaustive()
    }
}

/// Opens the configured metadata store (creating or migrating its schema).
///
/// # Errors
/// When the store cannot be opened or reached.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, StartError> {
    let store: Arc<dyn Store> = match &config.storage.metadata {
        MetadataBackend::Sqlite { path } => {
            Arc::new(SqliteStore::open(path).await.map_err(StartError::Store)?)
        }
        MetadataBackend::Postgres {
            url,
            max_connections,
        } => Arc::new(
            PostgresStore::connect(url.expose(), *max_connections)
                .await
                .map_err(StartError::Store)?,
        ),
    };
    Ok(store)
}

async fn open_kv(
    config: &Config,
) -> Result<(Arc<dyn Limiter>, Arc<dyn ResponseCache>), StartError> {
    match &config.storage.kv {
        KvBackend::Memory => Ok((
            Arc::new(MemoryLimiter::new()),
            Arc::new(MemoryCache::new(config.cache.max_bytes)),
        )),
        KvBackend::Redis {
            url,
            prefix,
            timeout_ms,
            lease_ms,
        } => {
            let settings = RedisSettings {
                url: url.expose().to_owned(),
                prefix: prefix.clone(),
                timeout_ms: *timeout_ms,
                lease_ms: *lease_ms,
            };
            let limiter = RedisLimiter::connect(&settings)
                .await
                .map_err(StartError::Kv)?;
            let cache = RedisCache::connect(&settings)
                .await
                .map_err(StartError::Kv)?;
            Ok((Arc::new(limiter), Arc::new(cache)))
        }
    }
}

impl Governance {
    /// Opens the configured backends and starts the ledger flusher and the CPU sampler.
    ///
    /// # Errors
    /// When a backend cannot be opened or reached.
    pub async fn start(config: &Config) -> Result<Self, StartError> {
        let store = open_store(config).await?;
        Self::start_with_store(config, store).await
    }

    /// Starts over an opened metadata store, connecting the configured counters and cache.
    ///
    /// # Errors
    /// When the counter or cache backend cannot be reached.
    pub async fn start_with_store(
        config: &Config,
        store: Arc<dyn MetadataStore>,
    ) -> Result<Self, StartError> {
        let (limiter, cache) = open_kv(config).await?;
        Ok(Self::with_backends(config, store, limiter, cache))
    }

    /// Governance over given backends (tests use this to share or fault them).
    #[must_use]
    pub fn with_backends(
        config: &Config,
        store: Arc<dyn MetadataStore>,
        limiter: Arc<dyn Limiter>,
        cache: Arc<dyn ResponseCache>,
    ) -> Self {
        let auth = auth::Authenticator::new(
            Arc::clone(&store),
            Duration::from_millis(config.auth.key_cache_ttl_ms),
            config.auth.allow_anonymous,
        );
        let inner = Arc::new(Inner {
            store,
            limiter,
            cache: config.cache.enabled.then(|| -> Arc<dyn CacheLookup> {
                Arc::new(cache::ExactCache::new(cache, &config.cache))
            }),
            cache_config: config.cache.clone(),
            ledger: ledger::Ledger::default(),
            auth,
            admin_key: config
                .auth
                .admin_key
                .as_ref()
                .map(|key| key.expose().to_owned()),
            models: config.models.keys().cloned().collect(),
            shedding: config.shedding.clone(),
            cpu: Arc::new(CpuLoad::default()),
            on_backend_error: config.limits.on_backend_error,
            default_completion_tokens: config.limits.default_completion_tokens,
            stats: Stats::default(),
        });
        let mut tasks = Vec::new();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let flusher = Arc::clone(&inner);
            let interval = Duration::from_millis(config.accounting.flush_interval_ms);
            tasks.push(
                runtime
                    .spawn(async move {
                        let mut ticker = tokio::time::interval(interval);
                        loop {
                            ticker.tick().await;
                            if let Err(error) = flusher.ledger.flush(flusher.store.as_ref()).await {
                                tracing::warn!(%error, "cannot write usage to the ledger; will retry");
                            }
                        }
                    })
                    .abort_handle(),
            );
            if config.shedding.enabled {
                let interval = Duration::from_millis(config.shedding.sample_interval_ms);
                let _guard = runtime.enter();
                match shed::spawn_sampler(Arc::clone(&inner.cpu), interval) {
                    Some(task) => tasks.push(task.abort_handle()),
                    None => {
                        tracing::warn!("CPU use cannot be read (/proc/stat); load shedding is off")
                    }
                }
            }
        }
        Self {
            inner,
            tasks: Arc::new(tasks),
        }
    }

    /// Tenant and key management; changes made here take effect on this replica at once.
    #[must_use]
    pub fn admin(&self) -> Admin {
        let inner = Arc::clone(&self.inner);
        Admin::new(Arc::clone(&self.inner.store), self.inner.models.clone()).on_change(Arc::new(
            move |change| match change {
                Change::Key(id) => {
                    let inner = Arc::clone(&inner);
                    let id = id.to_owned();
                    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                        runtime.spawn(async move { inner.auth.forget(&id).await });
                    }
                }
                Change::Tenant(_) => inner.auth.forget_all(),
            },
        ))
    }

    /// Whether `presented` is the admin key; `None` when no admin key is configured.
    #[must_use]
    pub fn check_admin_key(&self, presented: &str) -> Option<bool> {
        let configured = self.inner.admin_key.as_deref()?;
        Some(admin_key_matches(presented, configured))
    }

    /// The principal of a request from its `Authorization` header.
    ///
    /// # Errors
    /// `Unauthorized` for a missing, unknown, revoked or expired key; `Store` when the key
    /// cannot be read.
    #[tracing::instrument(name = "auth", skip_all)]
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
    ) -> Result<Principal, GovernanceError> {
        self.inner.auth.authenticate(authorization).await
    }

    /// The principal of work done for a tenant (and key) rather than sent with a secret: the
    /// model calls a search or an ingestion makes on the gateway.
    ///
    /// # Errors
    /// `Unauthorized` when the key or tenant is revoked, expired or gone; `Store` when they
    /// cannot be read.
    pub async fn principal_of(
        &self,
        tenant_id: &str,
        key_id: Option<&str>,
    ) -> Result<Principal, GovernanceError> {
        self.inner.auth.principal_of(tenant_id, key_id).await
    }

    /// # Errors
    /// `ModelNotAllowed` when the key's scopes exclude `model`.
    pub fn authorize_model(
        &self,
        principal: &Principal,
        model: &str,
    ) -> Result<(), GovernanceError> {
        if principal.may_use_model(model) {
            Ok(())
        } else {
            Err(GovernanceError::ModelNotAllowed {
                model: model.to_owned(),
            })
        }
    }

    /// Applies load shedding to a chat request.
    ///
    /// # Errors
    /// `Overloaded` when the policy refuses it.
    pub fn shed(&self, request: &mut ChatRequest) -> Result<Option<Shed>, GovernanceError> {
        shed::apply(&self.inner.shedding, &self.inner.cpu, request)
    }

    /// What a chat request reserves: its estimated prompt and its completion bound.
    #[must_use]
    pub fn chat_demand<'a>(
        &self,
        request: &'a ChatRequest,
        price: Option<TokenPrice>,
    ) -> Demand<'a> {
        Demand {
            model: &request.model,
            prompt_tokens: prompt_tokens(request),
            completion_tokens: request
                .max_output_tokens()
                .map_or(self.inner.default_completion_tokens, u64::from),
            price,
        }
    }

    /// Takes the principal's limits and reserves against its budgets, all or nothing.
    ///
    /// # Errors
    /// `RateLimited`, `QuotaExceeded`, or `LimiterUnavailable` when the backend is down and the
    /// configuration fails closed.
    #[tracing::instrument(name = "admission", skip_all)]
    pub async fn admit(
        &self,
        principal: &Principal,
        demand: &Demand<'_>,
    ) -> Result<Admission, GovernanceError> {
        admission::admit(&self.inner, principal, demand).await
    }

    /// The cache key of a chat request, when the cache policy covers it.
    #[must_use]
    pub fn cache_key(
        &self,
        principal: &Principal,
        request: &ChatRequest,
        header: Option<&str>,
    ) -> Option<CacheKey> {
        self.inner.cache.as_ref()?;
        cache::key_for(
            &self.inner.cache_config,
            &principal.tenant.id,
            request,
            header,
        )
    }

    /// An earlier answer to the request, if cached.
    #[tracing::instrument(name = "cache_lookup", skip_all)]
    pub async fn cached(&self, key: &CacheKey) -> Option<CachedReply> {
        self.inner.cache.as_ref()?.find(key).await
    }

    /// Keeps a whole completion for later identical requests (written in the background).
    pub fn remember(&self, key: CacheKey, reply: CachedReply) {
        let Some(cache) = self.inner.cache.clone() else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { cache.store(&key, &reply).await });
        }
    }

    /// Wraps a served stream so its admission is settled with the stream's usage when it ends
    /// (or is dropped), and a completed stream is cached under `cache_key`. `on_end` is called
    /// once, with the settled usage, when the stream ends or is dropped.
    #[must_use]
    pub fn govern_stream(
        &self,
        stream: ChatStream,
        admission: Admission,
        served: ServedStream,
        cache_key: Option<CacheKey>,
        on_end: impl FnOnce(StreamEnd) + Send + 'static,
    ) -> ChatStream {
        stream::govern(
            Arc::clone(&self.inner),
            stream,
            admission,
            served,
            cache_key,
            Box::new(on_end),
        )
    }

    /// The CPU gauge load shedding reads.
    #[must_use]
    pub fn cpu_load(&self) -> &CpuLoad {
        &self.inner.cpu
    }

    #[must_use]
    pub fn stats(&self) -> GovernanceStats {
        GovernanceStats {
            limiter_errors: self.inner.stats.limiter_errors.load(Ordering::Relaxed),
            cache_errors: self.inner.cache.as_ref().map_or(0, |cache| cache.errors()),
            dropped_usage_rows: self.inner.ledger.dropped_rows.load(Ordering::Relaxed),
        }
    }

    /// Writes pending usage to the ledger now.
    ///
    /// # Errors
    /// When the store refuses the write (the rows are kept for the next flush).
    pub async fn flush_usage(&self) -> Result<usize, landfall_storage::StoreError> {
        self.inner.ledger.flush(self.inner.store.as_ref()).await
    }

    /// Stops background work after a last ledger flush.
    pub async fn shutdown(&self) {
        // Waiting for the flush lock means the background flusher is not half-way through a
        // write; aborting it then cannot lose the rows it took.
        let ledger = &self.inner.ledger;
        let _flushing = ledger.flushing.lock().await;
        for task in self.tasks.iter() {
            task.abort();
        }
        if let Err(error) = ledger.flush_locked(self.inner.store.as_ref()).await {
            tracing::error!(%error, "usage not written to the ledger at shutdown");
        }
    }
}
