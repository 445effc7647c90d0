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
        let lookup = self
            .cache
            .try_get_with(key_id.clone(), self.load(&key_id))
            .await
            .map_err(|error: Arc<StoreError>| {
                GovernanceError::Store(StoreError::Unavailable(error.to_string()))
            })?;
        let Lookup::Found { key, tenant } = lookup else {
            return Err(incorrect);
        };
        if !secret::matches(secret, &key.secret_sha256) {
            return Err(incorrect);
        }
        if key.revoked_at.is_some() {
            return Err(GovernanceError::Unauthorized {
                reason: "this API key has been revoked",
            });
        }
        if key.expires_at.is_some_and(|expiry| expiry <= now_millis()) {
            return Err(GovernanceError::Unauthorized {
                reason: "this API key has expired",
            });
        }
        if tenant.revoked_at.is_some() {
            return Err(GovernanceError::Unauthorized {
                reason: "the tenant of this API key has been revoked",
            });
        }
        Ok(Principal {
            tenant,
            key: Some(key),
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
