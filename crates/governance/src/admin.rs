//! Managing tenants and keys: the inputs the admin API and the CLI accept, their validation
//! (every problem named by its field), and the views they return. Secrets are generated here
//! and shown once, in [`CreatedKey`].

use std::sync::Arc;

use landfall_storage::{
    ApiKey, Budget, BudgetLimit, BudgetPeriod, Limits, MetadataStore, PageRequest, Scopes,
    StoreError, Tenant, UnixMillis,
};
use serde::{Deserialize, Serialize};

use crate::{now_millis, secret};

type Metadata = serde_json::Map<String, serde_json::Value>;

/// Why an admin operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The input is wrong; `field` is its path, e.g. `limits.requests_per_second`.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{entity} `{id}` does not exist")]
    NotFound { entity: &'static str, id: String },
    #[error("{entity} `{id}` already exists")]
    Conflict { entity: &'static str, id: String },
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for AdminError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound { entity, id } => Self::NotFound { entity, id },
            StoreError::Conflict { entity, id } => Self::Conflict { entity, id },
            other => Self::Store(other),
        }
    }
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> AdminError {
    AdminError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// A budget as written by people: a period and exactly one of `tokens` or `cost` (in the
/// accounting currency).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetSpec {
    pub period: BudgetPeriod,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
}

impl BudgetSpec {
    fn to_budget(&self, field: &str) -> Result<Budget, AdminError> {
        let limit = match (self.tokens, self.cost) {
            (Some(tokens), None) => BudgetLimit::Tokens(tokens),
            (None, Some(cost)) if (0.0..9.0e9).contains(&cost) => {
                BudgetLimit::CostNanos((cost * 1e9).round() as u64)
            }
            (None, Some(_)) => {
                return Err(invalid(
                    format!("{field}.cost"),
                    "must be a non-negative amount below 9e9",
                ));
            }
            _ => return Err(invalid(field, "give exactly one of `tokens` or `cost`")),
        };
        Ok(Budget {
            period: self.period,
            limit,
        })
    }

    fn from_budget(budget: &Budget) -> Self {
        let (tokens, cost) = match budget.limit {
            BudgetLimit::Tokens(tokens) => (Some(tokens), None),
            BudgetLimit::CostNanos(nanos) => (None, Some(nanos as f64 / 1e9)),
        };
        Self {
            period: budget.period,
            tokens,
            cost,
        }
    }
}

/// `POST /admin/v1/tenants`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    /// Generated when absent.
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub budgets: Vec<BudgetSpec>,
    #[serde(default)]
    pub metadata: Metadata,
}

/// `PATCH /admin/v1/tenants/{id}`: absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantPatch {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub limits: Option<Limits>,
    #[serde(default)]
    pub budgets: Option<Vec<BudgetSpec>>,
    #[serde(default)]
    pub metadata: Option<Metadata>,
}

/// `POST /admin/v1/keys`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    pub tenant_id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub scopes: Scopes,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub budgets: Vec<BudgetSpec>,
    #[serde(default)]
    pub metadata: Metadata,
    /// Unix seconds.
    #[serde(default)]
    pub expires_at: Option<i64>,
}

/// `PATCH /admin/v1/keys/{id}`. `expires_at: null` removes the expiry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyPatch {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub scopes: Option<Scopes>,
    #[serde(default)]
    pub limits: Option<Limits>,
    #[serde(default)]
    pub budgets: Option<Vec<BudgetSpec>>,
    #[serde(default)]
    pub metadata: Option<Metadata>,
    #[serde(default, deserialize_with = "present")]
    pub expires_at: Option<Option<i64>>,
}

/// Distinguishes `"expires_at": null` (remove) from an absent field (keep).
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(deserializer).map(Some)
}

/// A tenant as the API shows it (times in unix seconds).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TenantView {
    pub object: &'static str,
    pub id: String,
    pub name: String,
    pub limits: Limits,
    pub budgets: Vec<BudgetSpec>,
    pub metadata: Metadata,
    pub created_at: i64,
    pub updated_at: i64,
    pub revoked_at: Option<i64>,
}

impl From<&Tenant> for TenantView {
    fn from(tenant: &Tenant) -> Self {
        Self {
            object: "tenant",
            id: tenant.id.clone(),
            name: tenant.name.clone(),
            limits: tenant.limits,
            budgets: tenant.budgets.iter().map(BudgetSpec::from_budget).collect(),
            metadata: tenant.metadata.clone(),
            created_at: seconds(tenant.created_at),
            updated_at: seconds(tenant.updated_at),
            revoked_at: tenant.revoked_at.map(seconds),
        }
    }
}

/// A key as the API shows it: never its secret or digest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyView {
    pub object: &'static str,
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    /// `lf-…` and the secret's last four characters.
    pub redacted_secret: String,
    pub scopes: Scopes,
    pub limits: Limits,
    pub budgets: Vec<BudgetSpec>,
    pub metadata: Metadata,
    pub expires_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub revoked_at: Option<i64>,
}

impl From<&ApiKey> for KeyView {
    fn from(key: &ApiKey) -> Self {
        Self {
            object: "api_key",
            id: key.id.clone(),
            tenant_id: key.tenant_id.clone(),
            name: key.name.clone(),
            redacted_secret: format!("lf-…{}", key.secret_hint),
            scopes: key.scopes.clone(),
            limits: key.limits,
            budgets: key.budgets.iter().map(BudgetSpec::from_budget).collect(),
            metadata: key.metadata.clone(),
            expires_at: key.expires_at.map(seconds),
            created_at: seconds(key.created_at),
            updated_at: seconds(key.updated_at),
            revoked_at: key.revoked_at.map(seconds),
        }
    }
}

/// A new key with its secret, which is not stored and cannot be shown again.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub key: KeyView,
    pub secret: String,
}

/// One page of a list, OpenAI-style.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page<T> {
    pub object: &'static str,
    pub data: Vec<T>,
    pub has_more: bool,
    /// Pass as `after` for the next page.
    pub last_id: Option<String>,
}

impl<T> Page<T> {
    /// A page of `limit` views from `records`, fetched as `limit + 1`: the extra one only says
    /// that more follow.
    fn of<R>(
        records: &mut Vec<R>,
        limit: u32,
        view: impl Fn(&R) -> T,
        id: impl Fn(&T) -> &String,
    ) -> Self {
        let has_more = records.len() > limit as usize;
        records.truncate(limit as usize);
        let data: Vec<T> = records.iter().map(view).collect();
        Page {
            object: "list",
            last_id: data.last().map(|item| id(item).clone()),
            data,
            has_more,
        }
    }
}

fn seconds(millis: UnixMillis) -> i64 {
    millis.div_euclid(1_000)
}

/// Tenant and key management over a metadata store.
#[derive(Clone)]
pub struct Admin {
    store: Arc<dyn MetadataStore>,
    /// Model aliases a key's scope may name.
    models: Arc<[String]>,
    on_change: Option<ChangeHook>,
}

/// Called after every admin write, so caches can forget what changed.
pub(crate) type ChangeHook = Arc<dyn Fn(Change) + Send + Sync>;

/// What an admin write changed, for caches to forget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change<'a> {
    Tenant(&'a str),
    Key(&'a str),
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Admin").finish_non_exhaustive()
    }
}

impl Admin {
    /// `models` are the configured aliases, which key scopes are checked against.
    #[must_use]
    pub fn new(store: Arc<dyn MetadataStore>, models: Vec<String>) -> Self {
        Self {
            store,
            models: models.into(),
            on_change: None,
        }
    }

    pub(crate) fn on_change(mut self, hook: ChangeHook) -> Self {
        self.on_change = Some(hook);
        self
    }

    fn changed(&self, change: Change) {
        if let Some(hook) = &self.on_change {
            hook(change);
        }
    }

    /// # Errors
    /// Invalid input, an existing id, or a store failure.
    pub async fn create_tenant(&self, input: NewTenant) -> Result<TenantView, AdminError> {
        let id = match input.id {
            Some(id) => {
                check_tenant_id(&id)?;
                id
            }
            None => format!("ten_{}", random_id()),
        };
        let now = now_millis();
        let tenant = Tenant {
            name: input.name.unwrap_or_else(|| id.clone()),
            id,
            limits: checked_limits(input.limits, "limits")?,
            budgets: budgets(&input.budgets)?,
            metadata: input.metadata,
            created_at: now,
            updated_at: now,
            revoked_at: None,
        };
        self.store.create_tenant(&tenant).await?;
        Ok(TenantView::from(&tenant))
    }

    /// # Errors
    /// An unknown tenant or a store failure.
    pub async fn tenant(&self, id: &str) -> Result<TenantView, AdminError> {
        Ok(TenantView::from(&self.load_tenant(id).await?))
    }

    /// # Errors
    /// A store failure.
    pub async fn tenants(
        &self,
        after: Option<String>,
        limit: u32,
    ) -> Result<Page<TenantView>, AdminError> {
        let limit = page_limit(limit)?;
        let mut tenants = self
            .store
            .list_tenants(&PageRequest {
                after,
                limit: limit + 1,
            })
            .await?;
        Ok(Page::of(
            &mut tenants,
            limit,
            |tenant| TenantView::from(tenant),
            |view| &view.id,
        ))
    }

    /// # Errors
    /// Invalid input, an unknown tenant, or a store failure.
    pub async fn update_tenant(
        &self,
        id: &str,
        patch: TenantPatch,
    ) -> Result<TenantView, AdminError> {
        let mut tenant = self.load_tenant(id).await?;
        if let Some(name) = patch.name {
            tenant.name = name;
        }
        if let Some(limits) = patch.limits {
            tenant.limits = checked_limits(limits, "limits")?;
        }
        if let Some(specs) = patch.budgets {
            tenant.budgets = budgets(&specs)?;
        }
        if let Some(metadata) = patch.metadata {
            tenant.metadata = metadata;
        }
        self.save_tenant(tenant).await
    }

    /// Revokes a tenant: every one of its keys is refused from now on.
    ///
    /// # Errors
    /// An unknown tenant or a store failure.
    pub async fn revoke_tenant(&self, id: &str) -> Result<TenantView, AdminError> {
        let mut tenant = self.load_tenant(id).await?;
        tenant.revoked_at.get_or_insert(now_millis());
        self.save_tenant(tenant).await
    }

    /// # Errors
    /// Invalid input, an unknown tenant, or a store failure.
    pub async fn create_key(&self, input: NewKey) -> Result<CreatedKey, AdminError> {
        if input.tenant_id.is_empty() {
            return Err(invalid("tenant_id", "is required"));
        }
        let tenant = self.load_tenant(&input.tenant_id).await?;
        if tenant.revoked_at.is_some() {
            return Err(invalid(
                "tenant_id",
                format!("tenant `{}` is revoked", tenant.id),
            ));
        }
        let made = secret::generate();
        let now = now_millis();
        let key = ApiKey {
            id: made.id,
            tenant_id: input.tenant_id,
            name: input.name.unwrap_or_default(),
            secret_sha256: secret::digest(&made.secret),
            secret_hint: secret::hint(&made.secret),
            scopes: self.checked_scopes(input.scopes)?,
            limits: checked_limits(input.limits, "limits")?,
            budgets: budgets(&input.budgets)?,
            metadata: input.metadata,
            expires_at: expiry(input.expires_at, now)?,
            created_at: now,
            updated_at: now,
            revoked_at: None,
        };
        self.store.create_key(&key).await?;
        Ok(CreatedKey {
            key: KeyView::from(&key),
            secret: made.secret,
        })
    }

    /// # Errors
    /// An unknown key or a store failure.
    pub async fn key(&self, id: &str) -> Result<KeyView, AdminError> {
        Ok(KeyView::from(&self.load_key(id).await?))
    }

    /// # Errors
    /// A store failure.
    pub async fn keys(
        &self,
        tenant_id: Option<&str>,
        after: Option<String>,
        limit: u32,
    ) -> Result<Page<KeyView>, AdminError> {
        let limit = page_limit(limit)?;
        let mut keys = self
            .store
            .list_keys(
                tenant_id,
                &PageRequest {
                    after,
                    limit: limit + 1,
                },
            )
            .await?;
        Ok(Page::of(
            &mut keys,
            limit,
            |key| KeyView::from(key),
            |view| &view.id,
        ))
    }

    /// # Errors
    /// Invalid input, an unknown key, or a store failure.
    pub async fn update_key(&self, id: &str, patch: KeyPatch) -> Result<KeyView, AdminError> {
        let mut key = self.load_key(id).await?;
        if let Some(name) = patch.name {
            key.name = name;
        }
        if let Some(scopes) = patch.scopes {
            key.scopes = self.checked_scopes(scopes)?;
        }
        if let Some(limits) = patch.limits {
            key.limits = checked_limits(limits, "limits")?;
        }
        if let Some(specs) = patch.budgets {
            key.budgets = budgets(&specs)?;
        }
        if let Some(metadata) = patch.metadata {
            key.metadata = metadata;
        }
        if let Some(expires_at) = patch.expires_at {
            key.expires_at = expiry(expires_at, i64::MIN)?;
        }
        self.save_key(key).await
    }

    /// Revokes a key; it is refused on every replica within `auth.key_cache_ttl_ms`.
    ///
    /// # Errors
    /// An unknown key or a store failure.
    pub async fn revoke_key(&self, id: &str) -> Result<KeyView, AdminError> {
        let mut key = self.load_key(id).await?;
        key.revoked_at.get_or_insert(now_millis());
        self.save_key(key).await
    }

    async fn load_tenant(&self, id: &str) -> Result<Tenant, AdminError> {
        self.store
            .get_tenant(id)
            .await?
            .ok_or_else(|| AdminError::NotFound {
                entity: "tenant",
                id: id.to_owned(),
            })
    }

    async fn load_key(&self, id: &str) -> Result<ApiKey, AdminError> {
        self.store
            .get_key(id)
            .await?
            .ok_or_else(|| AdminError::NotFound {
                entity: "key",
                id: id.to_owned(),
            })
    }

    async fn save_tenant(&self, mut tenant: Tenant) -> Result<TenantView, AdminError> {
        tenant.updated_at = now_millis();
        if !self.store.update_tenant(&tenant).await? {
            return Err(AdminError::NotFound {
                entity: "tenant",
                id: tenant.id,
            });
        }
        self.changed(Change::Tenant(&tenant.id));
        Ok(TenantView::from(&tenant))
    }

    async fn save_key(&self, mut key: ApiKey) -> Result<KeyView, AdminError> {
        key.updated_at = now_millis();
        if !self.store.update_key(&key).await? {
            return Err(AdminError::NotFound {
                entity: "key",
                id: key.id,
            });
        }
        self.changed(Change::Key(&key.id));
        Ok(KeyView::from(&key))
    }

    fn checked_scopes(&self, scopes: Scopes) -> Result<Scopes, AdminError> {
        for (index, model) in scopes.models.iter().flatten().enumerate() {
            if !self.models.contains(model) {
                return Err(invalid(
                    format!("scopes.models[{index}]"),
                    format!(
                        "no model named `{model}` is configured (configured: {})",
                        self.models.join(", ")
                    ),
                ));
            }
        }
        for (index, name) in scopes.knowledge_bases.iter().flatten().enumerate() {
            if name.is_empty() {
                return Err(invalid(
                    format!("scopes.knowledge_bases[{index}]"),
                    "must not be empty",
                ));
            }
        }
        for (index, name) in scopes.tools.iter().flatten().enumerate() {
            if name.is_empty() {
                return Err(invalid(
                    format!("scopes.tools[{index}]"),
                    "must not be empty",
                ));
            }
        }
        Ok(scopes)
    }
}

fn check_tenant_id(id: &str) -> Result<(), AdminError> {
    let mut bytes = id.bytes();
    let valid = id.len() <= 64
        && bytes
            .next()
            .is_some_and(|first| first.is_ascii_lowercase() || first.is_ascii_digit())
        && bytes.all(|byte| {
            byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_' || byte == b'-'
        });
    if valid {
        Ok(())
    } else {
        Err(invalid(
            "id",
            "must be 1-64 characters of a-z, 0-9, `_` and `-`, starting with a letter or digit",
        ))
    }
}

fn checked_limits(limits: Limits, field: &str) -> Result<Limits, AdminError> {
    let named = [
        ("requests_per_second", limits.requests_per_second),
        ("requests_per_minute", limits.requests_per_minute),
        ("tokens_per_minute", limits.tokens_per_minute),
        ("max_concurrent_requests", limits.max_concurrent_requests),
    ];
    for (name, value) in named {
        if value == Some(0) {
            return Err(invalid(
                format!("{field}.{name}"),
                "must be at least 1 (omit it for no limit)",
            ));
        }
    }
    Ok(limits)
}

fn budgets(specs: &[BudgetSpec]) -> Result<Vec<Budget>, AdminError> {
    specs
        .iter()
        .enumerate()
        .map(|(index, spec)| spec.to_budget(&format!("budgets[{index}]")))
        .collect()
}

/// `seconds` as milliseconds, refusing a time before `not_before` (milliseconds).
fn expiry(seconds: Option<i64>, not_before: UnixMillis) -> Result<Option<UnixMillis>, AdminError> {
    let Some(seconds) = seconds else {
        return Ok(None);
    };
    let millis = seconds
        .checked_mul(1_000)
        .ok_or_else(|| invalid("expires_at", "out of range"))?;
    if millis <= not_before {
        return Err(invalid(
            "expires_at",
            "must be in the future (unix seconds)",
        ));
    }
    Ok(Some(millis))
}

fn page_limit(limit: u32) -> Result<u32, AdminError> {
    match limit {
        0 => Ok(100),
        1..=1000 => Ok(limit),
        _ => Err(invalid("limit", "must be between 1 and 1000")),
    }
}

fn random_id() -> String {
    use rand::Rng;
    (0..16)
        .map(|_| char::from(rand::rng().sample(rand::distr::Alphanumeric)).to_ascii_lowercase())
        .collect()
}
