//! The validated configuration. Field docs here are the reference; `landfall.example.toml`
//! mirrors them.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Deserialize;

use crate::Secret;
use crate::governance::{
    AccountingConfig, AuthConfig, CacheConfig, LimitsConfig, Price, SheddingConfig, StorageConfig,
};
use crate::observability::{AuditConfig, MetricsConfig, TelemetryConfig};

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub auth: AuthConfig,
    pub routing: RoutingConfig,
    /// Upstream model services, by the name targets refer to them with.
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Model names clients use, each mapped to ordered targets.
    pub models: BTreeMap<String, ModelConfig>,
    pub storage: StorageConfig,
    pub limits: LimitsConfig,
    pub cache: CacheConfig,
    pub shedding: SheddingConfig,
    pub accounting: AccountingConfig,
    pub metrics: MetricsConfig,
    pub audit: AuditConfig,
    pub telemetry: TelemetryConfig,
    pub knowledge: crate::KnowledgeConfig,
    pub guardrails: crate::GuardrailsConfig,
    pub agents: crate::AgentsConfig,
    /// Tools Landfall runs for the model, by the name requests and allowlists use.
    pub tools: BTreeMap<String, crate::ToolConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes; larger bodies get 413.
    pub max_body_bytes: usize,
    /// How long in-flight requests may take to finish after a shutdown signal.
    pub shutdown_grace_ms: u64,
    /// Threads serving requests; 0 means one per CPU.
    pub worker_threads: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 16 * 1024 * 1024,
            shutdown_grace_ms: 10_000,
            worker_threads: 0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingConfig {
    /// Upper bound on upstream calls for one request, retries and fallbacks included.
    pub max_attempts: u32,
    /// Extra tries of the same target after a transient error, before falling back.
    pub retries_per_target: u32,
    /// First backoff before a retry; doubles each retry, with jitter.
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// A `Retry-After` longer than this is not waited for: the target is skipped instead.
    pub max_retry_after_ms: u64,
    /// Consecutive failures after which a target is skipped for `breaker_cooldown_ms`.
    pub breaker_failure_threshold: u32,
    pub breaker_cooldown_ms: u64,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            retries_per_target: 1,
            backoff_initial_ms: 100,
            backoff_max_ms: 2_000,
            max_retry_after_ms: 10_000,
            breaker_failure_threshold: 5,
            breaker_cooldown_ms: 30_000,
        }
    }
}

/// One upstream service: how to reach it (`http`) and which API it speaks (`kind`).
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub http: HttpSettings,
    pub kind: ProviderKind,
}

/// The API a provider speaks, chosen by the `type` key. A new adapter adds one variant here.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ProviderKind {
    /// Any OpenAI-compatible API: OpenAI, DeepSeek, DashScope, Moonshot, vLLM, Ollama, llama.cpp.
    Openai {},
    /// Anthropic's Messages API.
    Anthropic {
        /// The `anthropic-version` header.
        #[serde(default = "default_anthropic_version")]
        anthropic_version: String,
        /// `max_tokens` sent when the client gives none (Anthropic requires one).
        #[serde(default = "default_anthropic_max_tokens")]
        default_max_tokens: u32,
    },
    /// A GGUF chat model Landfall runs itself, on the CPU.
    Local(crate::LocalModelConfig),
}

fn default_anthropic_version() -> String {
    "2023-06-01".to_owned()
}

fn default_anthropic_max_tokens() -> u32 {
    4096
}

impl ProviderKind {
    /// The base URL used when the provider sets none.
    #[must_use]
    pub fn default_base_url(&self) -> Option<&'static str> {
        match self {
            Self::Openai {} | Self::Local(_) => None,
            Self::Anthropic { .. } => Some("https://api.anthropic.com/v1"),
        }
    }
}

/// Keys common to every HTTP provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// API root, up to and including the version segment: `https://api.openai.com/v1`.
    pub base_url: String,
    pub api_key: Option<Secret>,
    /// Extra headers sent with every request (values may be `env::NAME`).
    pub headers: BTreeMap<String, Secret>,
    /// HTTP proxy every connection is tunnelled through with `CONNECT`, e.g.
    /// `http://user:password@proxy.internal:3128` (may be `env::NAME`).
    pub proxy_url: Option<Secret>,
    pub connect_timeout_ms: u64,
    /// Until the response headers (and, for streams, the first event) arrive.
    pub first_byte_timeout_ms: u64,
    /// Whole non-streamed request.
    pub timeout_ms: u64,
    /// Longest silence between two stream events.
    pub stream_idle_timeout_ms: u64,
}

/// Keys of [`HttpSettings`], which the loader splits off a provider table.
pub(crate) const HTTP_KEYS: &[&str] = &[
    "base_url",
    "api_key",
    "headers",
    "proxy_url",
    "connect_timeout_ms",
    "first_byte_timeout_ms",
    "timeout_ms",
    "stream_idle_timeout_ms",
];

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            base_url: String::new(),
            api_key: None,
            headers: BTreeMap::new(),
            proxy_url: None,
            connect_timeout_ms: 5_000,
            first_byte_timeout_ms: 60_000,
            timeout_ms: 600_000,
            stream_idle_timeout_ms: 60_000,
        }
    }
}

/// A model name clients use.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Tried by ascending `priority`; equal priorities share load by `weight`.
    pub targets: Vec<TargetConfig>,
    /// Ground every chat completion of this alias in these vector stores (ids or names of
    /// the caller's tenant), as the request's `knowledge` extension would.
    #[serde(default)]
    pub knowledge: Option<ModelKnowledge>,
    /// How `/v1/responses` asks this alias to call tools.
    #[serde(default)]
    pub tool_protocol: crate::ToolProtocol,
    /// A stored prompt template every request to this alias starts with (a `/v1/responses`
    /// request's own `prompt` takes its place).
    #[serde(default)]
    pub prompt: Option<ModelPrompt>,
}

/// The prompt template of a model alias.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrompt {
    /// Its id in `/admin/v1/prompts`.
    pub id: String,
    /// A fixed version; the latest when absent.
    #[serde(default)]
    pub version: Option<u32>,
    /// Variables it is rendered with.
    #[serde(default)]
    pub variables: serde_json::Map<String, serde_json::Value>,
}

/// Knowledge bases a model alias answers from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelKnowledge {
    pub vector_store_ids: Vec<String>,
    #[serde(default)]
    pub max_num_results: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// Name of a `[providers.…]` entry.
    pub provider: String,
    /// Model name sent upstream; defaults to the alias.
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub priority: u32,
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Context window in tokens; lets a context-length error fall back to a larger target.
    #[serde(default)]
    pub context_window: Option<u32>,
    /// Per million tokens; unpriced targets cost nothing in the ledger and budgets.
    #[serde(default)]
    pub price: Option<Price>,
    /// Upstream calls in flight to this target at once; more wait in a queue.
    #[serde(default)]
    pub max_concurrency: Option<u32>,
    /// Calls that may wait for a slot; beyond it, or after `queue_timeout_ms`, the target is
    /// skipped as if it were rate-limited (the next target is tried).
    #[serde(default = "default_queue_size")]
    pub queue_size: u32,
    #[serde(default = "default_queue_timeout_ms")]
    pub queue_timeout_ms: u64,
}

impl TargetConfig {
    /// A target of `provider` with every other setting at its default.
    #[must_use]
    pub fn to(provider: &str) -> Self {
        Self {
            provider: provider.to_owned(),
            model: None,
            priority: 0,
            weight: default_weight(),
            context_window: None,
            price: None,
            max_concurrency: None,
            queue_size: default_queue_size(),
            queue_timeout_ms: default_queue_timeout_ms(),
        }
    }
}

fn default_queue_size() -> u32 {
    64
}

fn default_queue_timeout_ms() -> u64 {
    10_000
}

fn default_weight() -> u32 {
    1
}
