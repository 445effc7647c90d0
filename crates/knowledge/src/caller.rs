//! On whose behalf a model call is made.

/// The tenant (and key) a model call made by the knowledge service runs for: query
/// embeddings and rewrites for a search, chunk embeddings for an ingestion. An embedder or
/// rewriter backed by the gateway charges the call to them, so their limits, budgets and
/// accounting apply; an in-process model ignores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub tenant_id: String,
    /// The API key, when the call is part of a request made with one.
    pub key_id: Option<String>,
    /// The API request the call is part of. A refusal (rate limit, budget) is returned to
    /// that request; background work (`None`) waits a rate limit out instead.
    pub request_id: Option<String>,
}

impl Caller {
    /// Work the service does by itself for `tenant_id`, such as ingesting its files.
    #[must_use]
    pub fn background(tenant_id: impl Into<String>) -> Self {
        Self {
            tenant_id: tenant_id.into(),
            key_id: None,
            request_id: None,
        }
    }

    /// A call made while serving `request_id` for `tenant_id` with `key_id`.
    #[must_use]
    pub fn request(
        tenant_id: impl Into<String>,
        key_id: Option<String>,
        request_id: impl Into<String>,
    ) -> Self {
        Self {
            tenant_id: tenant_id.into(),
            key_id,
            request_id: Some(request_id.into()),
        }
    }
}
