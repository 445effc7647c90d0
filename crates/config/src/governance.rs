//! Sections for traffic governance and storage: who may call (`auth`), where state lives
//! (`storage`), limits, the response cache, load shedding and prices (`accounting`).

use std::path::PathBuf;

use serde::Deserialize;

use crate::Secret;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Bearer key for `/admin/v1/…`. Unset: the admin API answers 401 to everyone (the CLI
    /// still manages tenants and keys directly in the store).
    pub admin_key: Option<Secret>,
    /// Serve `/v1/…` requests that carry no key, unlimited, as tenant `anonymous`. Off by
    /// default: every request needs a key created with `landfall keys create`.
    pub allow_anonymous: bool,
    /// How long a replica trusts a key it looked up before reading it again; revocation
    /// reaches every replica within this time (plus one store read).
    pub key_cache_ttl_ms: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            admin_key: None,
            allow_anonymous: false,
            key_cache_ttl_ms: 500,
        }
    }
}

/// Where state lives: durable metadata, and the counters and cache of the request path.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    pub metadata: MetadataBackend,
    pub kv: KvBackend,
}

/// Tenants, keys and the usage ledger, chosen by `type`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum MetadataBackend {
    /// One file on this machine (the embedded default).
    Sqlite {
        #[serde(default = "default_sqlite_path")]
        path: PathBuf,
    },
    /// Shared by every replica.
    Postgres {
        url: Secret,
        #[serde(default = "default_max_connections")]
        max_connections: u32,
    },
}

impl Default for MetadataBackend {
    fn default() -> Self {
        Self::Sqlite {
            path: default_sqlite_path(),
        }
    }
}

fn default_sqlite_path() -> PathBuf {
    PathBuf::from("landfall-data/landfall.db")
}

fn default_max_connections() -> u32 {
    16
}

/// Rate-limit, concurrency and budget counters and the response cache, chosen by `type`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum KvBackend {
    /// In this process (the embedded default; limits are per replica).
    #[default]
    Memory,
    /// Shared by every replica.
    Redis {
        url: Secret,
        /// Prepended to every key, so several deployments can share one Redis.
        #[serde(default = "default_redis_prefix")]
        prefix: String,
        /// Longest wait for one Redis call; a slower call counts as Redis being down.
        #[serde(default = "default_redis_timeout_ms")]
        timeout_ms: u64,
        /// A concurrency slot held by a replica that died is freed after this long.
        #[serde(default = "default_lease_ms")]
        lease_ms: u64,
    },
}

fn default_redis_prefix() -> String {
    "landfall:".to_owned()
}

fn default_redis_timeout_ms() -> u64 {
    250
}

fn default_lease_ms() -> u64 {
    900_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// What to do when the counter backend (Redis) cannot answer: let requests through
    /// unlimited (`fail_open`) or refuse them with 503 (`fail_closed`). Either way it is
    /// logged and counted.
    pub on_backend_error: OnBackendError,
    /// Completion tokens reserved against token limits and budgets when a request sets no
    /// `max_tokens`; the reservation is settled to the exact usage afterwards.
    pub default_completion_tokens: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            on_backend_error: OnBackendError::FailOpen,
            default_completion_tokens: 1024,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnBackendError {
    FailOpen,
    FailClosed,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    pub enabled: bool,
    /// Which requests are cached: `deterministic` (temperature 0, or a request with the header
    /// `x-landfall-cache: use`) or `opt_in` (only requests with that header).
    pub mode: CacheMode,
    pub ttl_ms: u64,
    /// Size bound of the in-process cache (the Redis cache is bounded by Redis's `maxmemory`).
    pub max_bytes: u64,
    /// Responses larger than this are not cached.
    pub max_entry_bytes: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            mode: CacheMode::Deterministic,
            ttl_ms: 3_600_000,
            max_bytes: 256 * 1024 * 1024,
            max_entry_bytes: 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheMode {
    Deterministic,
    OptIn,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SheddingConfig {
    pub enabled: bool,
    /// Machine CPU use, in percent, above which long generations are shed.
    pub cpu_threshold_percent: u8,
    /// How often CPU use is sampled.
    pub sample_interval_ms: u64,
    /// A request asking for more than this many completion tokens (or for no bound at all)
    /// is a long generation.
    pub long_generation_tokens: u64,
    /// `reject` long generations with 503 and `Retry-After`, or `cap` their `max_tokens` at
    /// `long_generation_tokens`.
    pub policy: ShedPolicy,
    pub retry_after_ms: u64,
}

impl Default for SheddingConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            cpu_threshold_percent: 80,
            sample_interval_ms: 1_000,
            long_generation_tokens: 2_048,
            policy: ShedPolicy::Reject,
            retry_after_ms: 5_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShedPolicy {
    Reject,
    Cap,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccountingConfig {
    /// Currency of every price and money budget (ISO 4217 code).
    pub currency: String,
    /// How often usage is written to the ledger (batched, off the request path).
    pub flush_interval_ms: u64,
}

impl Default for AccountingConfig {
    fn default() -> Self {
        Self {
            currency: "USD".to_owned(),
            flush_interval_ms: 500,
        }
    }
}

/// Price of a target per million tokens, in `accounting.currency`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    /// Input tokens the provider served from its prompt cache; defaults to `input`.
    #[serde(default)]
    pub cached_input: Option<f64>,
    pub output: f64,
    /// Must equal `accounting.currency` when given: catches a price copied from a provider
    /// that bills in another currency.
    #[serde(default)]
    pub currency: Option<String>,
}

impl Price {
    /// Billionths of the currency unit per million tokens: input, cached input, output.
    #[must_use]
    pub fn nanos_per_million(&self) -> [u64; 3] {
        let nanos = |price: f64| (price * 1e9).round() as u64;
        [
            nanos(self.input),
            nanos(self.cached_input.unwrap_or(self.input)),
            nanos(self.output),
        ]
    }
}
