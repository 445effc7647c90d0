//! Records the metadata store keeps: tenants, their API keys, and usage rows.

use serde::{Deserialize, Serialize};

/// Unix time in milliseconds.
pub type UnixMillis = i64;

/// Milliseconds since the Unix epoch, by this machine's clock.
#[must_use]
pub fn now_millis() -> UnixMillis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

/// A customer or team: owns API keys, and carries limits and budgets that apply to all of them
/// together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    /// `[a-z0-9][a-z0-9_-]{0,63}`, chosen by the operator or generated.
    pub id: String,
    pub name: String,
    pub limits: Limits,
    pub budgets: Vec<Budget>,
    /// Free-form JSON object for the operator's own use.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
    /// Set when revoked; every key of a revoked tenant is refused.
    pub revoked_at: Option<UnixMillis>,
}

/// An API key. The secret itself is never stored: only its SHA-256 digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    /// `key_` followed by 16 base62 characters; also embedded in the secret, which is how a
    /// presented secret finds its record without a lookup by digest.
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    /// SHA-256 of the whole secret.
    pub secret_sha256: Vec<u8>,
    /// The secret's last four characters, to help people tell keys apart.
    pub secret_hint: String,
    pub scopes: Scopes,
    pub limits: Limits,
    pub budgets: Vec<Budget>,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub expires_at: Option<UnixMillis>,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
    pub revoked_at: Option<UnixMillis>,
}

/// What a key may use. `None` means everything; an empty list means nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scopes {
    /// Model aliases the key may call.
    pub models: Option<Vec<String>>,
    /// Knowledge bases the key may read.
    pub knowledge_bases: Option<Vec<String>>,
    /// `[tools.NAME]` entries the key may have run in `/v1/responses` (the tenant's own
    /// allowlist applies too).
    pub tools: Option<Vec<String>>,
}

/// Rate limits of a tenant or a key. `None` means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub requests_per_second: Option<u64>,
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    pub max_concurrent_requests: Option<u64>,
}

/// A spending cap over a calendar period (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    pub period: BudgetPeriod,
    pub limit: BudgetLimit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetPeriod {
    Day,
    Month,
}

/// What a budget counts: tokens (input plus output), or cost in billionths of the currency
/// unit (integers, so sums are exact).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetLimit {
    Tokens(u64),
    CostNanos(u64),
}

/// Usage to add to the ledger: one row per tenant, key, model alias, target and hour, summed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    pub tenant_id: String,
    pub key_id: String,
    pub model: String,
    /// `provider/model` that served, or `cache` for a cache hit.
    pub target: String,
    /// Start of the hour, unix milliseconds.
    pub hour: UnixMillis,
    pub requests: u64,
    pub cache_hits: u64,
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    pub output_tokens: u64,
    pub cost_nanos: u64,
}

/// Whose usage to total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageScope<'a> {
    Tenant(&'a str),
    Key(&'a str),
}

/// Sums over the usage ledger.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageTotals {
    pub requests: u64,
    /// Input plus output tokens.
    pub tokens: u64,
    pub cost_nanos: u64,
}

/// Keyset pagination: items ordered by id, starting after `after`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    pub after: Option<String>,
    /// At most this many items (the store caps it at 1000).
    pub limit: u32,
}
