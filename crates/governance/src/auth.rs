//! Who is calling: a bearer secret becomes a [`Principal`] (tenant and key), read from the
//! metadata store and trusted for `auth.key_cache_ttl_ms`, so a revocation reaches every
//! replica within that time.

use std::sync::Arc;
use std::time::Duration;

use landfall_storage::{ApiKey, MetadataStore, StoreError, Tenant};

use crate::{GovernanceError, now_millis, secret};

/// The tenant and key a request runs as.
#[derive(Debug, Clone)]
pub struct Principal {
    pub tenant: Arc<Tenant>,
    /// `None` for anonymous requests (when `auth.allow_anonymous` is on).
    pub key: Option<Arc<ApiKey>>,
}

impl Principal {
    /// Id of the key, or `anonymous`.
    #[must_use]
    pub fn key_id(&self) -> &str {
        self.key.as_ref().map_or(ANONYMOUS, |key| key.id.as_str())
    }

    /// Whether the key's scopes allow the model alias.
    #[must_use]
    pub fn may_use_model(&self, model: &str) -> bool {
        let Some(key) = &self.key else { return true };
        key.scopes
            .models
            .as_ref()
            .is_none_or(|models| models.iter().any(|allowed| allowed == model))
    }

    /// Whether the key's scopes allow the knowledge base.
    #[must_use]
    pub fn may_use_knowledge_base(&self, knowledge_base: &str) -> bool {
        let Some(key) = &self.key else { return true };
        key.scopes
            .knowledge_bases
            .as_ref()
            .is_none_or(|allowed| allowed.iter().any(|name| name == knowledge_base))
    }

    /// Whether the key's scopes allow the `[tools.NAME]` entry.
    #[must_use]
    pub fn may_use_tool(&self, tool: &str) -> bool {
        let Some(key) = &self.key else { return true };
        key.scopes
            .tools
            .as_ref()
            .is_none_or(|allowed| allowed.iter().any(|name| name == tool))
    }
}

pub(crate) const ANONYMOUS: &str = "anonymous";

/// What the store said about a key id, as cached.
#[derive(Clone)]
enum Lookup {
    Found {
        key: Arc<ApiKey>,
        tenant: Arc<Tenant>,
    },
    Missing,
}

pub(crate) struct Authenticator {
    store: Arc<dyn MetadataStore>,
    cache: moka::future::Cache<String, Lookup>,
    anonymous: Option<Principal>,
}

impl Authenticator {
    pub(crate) fn new(
        store: Arc<dyn MetadataStore>,
        cache_ttl: Duration,
        allow_anonymous: bool,
    ) -> Self {
        let anonymous = allow_anonymous.then(|| Principal {
            tenant: Arc::new(Tenant {
                id: ANONYMOUS.to_owned(),
                name: "Anonymous requests".to_owned(),
                limits: landfall_storage::Limits::default(),
                budgets: Vec::new(),
                metadata: serde_json::Map::new(),
                created_at: 0,
                updated_at: 0,
                revoked_at: None,
            }),
            key: None,
        });
        Self {
            store,
            cache: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(cache_ttl)
                .build(),
            anonymous,
        }
    }

    /// The principal for an `Authorization` header value (or its absence).
    pub(crate) async fn authenticate(
        &self,
        authorization: Option<&str>,
    ) -> Result<Principal, GovernanceError> {
        let secret = authorization
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|secret| !secret.is_empty());
        let Some(secret) = secret else {
            return self.anonymous.clone().ok_or(GovernanceError::Unauthorized {
                reason: "missing API key: send `Authorization: Bearer <key>` (create keys with `landfall keys create`)",
            });
        };
        let incorrect = GovernanceError::Unauthorized {
            reason: "incorrect API key provided",
        };
        let Some(key_id) = secret::key_id(secret) else {
            return Err(incorrect);
        };
        let Lookup::Found { key, tenant } = self.lookup(&key_id).await? else {
            return Err(incorrect);
        };
        if !secret::matches(secret, &key.secret_sha256) {
            return Err(incorrect);
        }
        usable(&key, &tenant)?;
        Ok(Principal {
            tenant,
            key: Some(key),
        })
    }

    /// The principal of a call made for `tenant_id` (with `key_id`, when the call is part of
    /// a request made with that key) rather than with a secret: the model calls of a search
    /// or of a background ingestion. A revoked, expired or deleted key or tenant is refused
    /// as a request with it would be.
    pub(crate) async fn principal_of(
        &self,
        tenant_id: &str,
        key_id: Option<&str>,
    ) -> Result<Principal, GovernanceError> {
        let gone = GovernanceError::Unauthorized {
            reason: "the key or tenant this work runs for no longer exists",
        };
        if let Some(key_id) = key_id {
            let Lookup::Found { key, tenant } = self.lookup(key_id).await? else {
                return Err(gone);
            };
            if tenant.id != tenant_id {
                return Err(gone);
            }
            usable(&key, &tenant)?;
            return Ok(Principal {
                tenant,
                key: Some(key),
            });
        }
        if let Some(anonymous) = &self.anonymous
            && anonymous.tenant.id == tenant_id
        {
            return Ok(anonymous.clone());
        }
        let tenant = self.store.get_tenant(tenant_id).await?.ok_or(gone)?;
        if tenant.revoked_at.is_some() {
            return Err(GovernanceError::Unauthorized {
                reason: "the tenant has been revoked",
            });
        }
        Ok(Principal {
            tenant: Arc::new(tenant),
            key: None,
        })
    }

    /// The key `key_id` and its tenant, from the cache or the store.
    async fn lookup(&self, key_id: &str) -> Result<Lookup, GovernanceError> {
        self.cache
            .try_get_with(key_id.to_owned(), self.load(key_id))
            .await
            .map_err(|error: Arc<StoreError>| {
                GovernanceError::Store(StoreError::Unavailable(error.to_string()))
            })
    }

    async fn load(&self, key_id: &str) -> Result<Lookup, StoreError> {
        let Some(key) = self.store.get_key(key_id).await? else {
            return Ok(Lookup::Missing);
        };
        let Some(tenant) = self.store.get_tenant(&key.tenant_id).await? else {
            return Ok(Lookup::Missing);
        };
        Ok(Lookup::Found {
            key: Arc::new(key),
            tenant: Arc::new(tenant),
        })
    }

    /// Forgets a key at once on this replica (after an admin change made here).
    pub(crate) async fn forget(&self, key_id: &str) {
        self.cache.invalidate(key_id).await;
    }

    /// Forgets every key on this replica (after a tenant changed here).
    pub(crate) fn forget_all(&self) {
        self.cache.invalidate_all();
    }
}

/// Refuses a key that is revoked or expired, or whose tenant is revoked.
fn usable(key: &ApiKey, tenant: &Tenant) -> Result<(), GovernanceError> {
    let reason = if key.revoked_at.is_some() {
        "this API key has been revoked"
    } else if key.expires_at.is_some_and(|expiry| expiry <= now_millis()) {
        "this API key has expired"
    } else if tenant.revoked_at.is_some() {
        "the tenant of this API key has been revoked"
    } else {
        return Ok(());
    };
    Err(GovernanceError::Unauthorized { reason })
}
