//! Turns the raw table into a [`Config`], collecting every error instead of stopping at the
//! first: each section and each provider or model entry is deserialized on its own.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;

use crate::model::HTTP_KEYS;
use crate::tools::{COMMON_TOOL_KEYS, CommonToolKeys};
use crate::{
    AccountingConfig, AuditConfig, AuthConfig, CacheConfig, Config, ConfigError, ConfigErrors,
    Environment, HttpSettings, KvBackend, LimitsConfig, MetadataBackend, MetricsAccess,
    MetricsConfig, ModelConfig, ProviderConfig, ProviderKind, RoutingConfig, ServerConfig,
    SheddingConfig, StorageConfig, TelemetryConfig,
};
use crate::{
    AgentsConfig, EmbedderConfig, GuardrailsConfig, KnowledgeConfig, RerankerConfig,
    VectorIndexConfig,
};
use crate::{ToolConfig, ToolKindConfig};

const SECTIONS: &[&str] = &[
    "server",
    "auth",
    "routing",
    "providers",
    "models",
    "storage",
    "limits",
    "cache",
    "shedding",
    "accounting",
    "metrics",
    "audit",
    "telemetry",
    "knowledge",
    "guardrails",
    "agents",
    "tools",
];

#[derive(Default)]
struct Errors(Vec<ConfigError>);

impl Errors {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError {
            path: path.into(),
            message: message.into(),
        });
    }
}

pub(crate) fn validate(
    mut table: toml::Table,
    environment: &Environment,
) -> Result<Config, ConfigErrors> {
    let mut errors = Errors::default();
    for key in table.keys() {
        if !SECTIONS.contains(&key.as_str()) {
            errors.push(
                key.clone(),
                format!("unknown section (expected one of {})", SECTIONS.join(", ")),
            );
        }
    }
    let server: ServerConfig = section(&mut table, "server", &mut errors).unwrap_or_default();
    let mut auth: AuthConfig = section(&mut table, "auth", &mut errors).unwrap_or_default();
    let routing: RoutingConfig = section(&mut table, "routing", &mut errors).unwrap_or_default();
    let mut providers = providers(table.remove("providers"), &mut errors);
    let models = models(table.remove("models"), &mut errors);
    let mut storage: StorageConfig =
        section(&mut table, "storage", &mut errors).unwrap_or_default();
    let limits: LimitsConfig = section(&mut table, "limits", &mut errors).unwrap_or_default();
    let cache: CacheConfig = section(&mut table, "cache", &mut errors).unwrap_or_default();
    let shedding: SheddingConfig = section(&mut table, "shedding", &mut errors).unwrap_or_default();
    let accounting: AccountingConfig =
        section(&mut table, "accounting", &mut errors).unwrap_or_default();
    let metrics: MetricsConfig = section(&mut table, "metrics", &mut errors).unwrap_or_default();
    let audit: AuditConfig = section(&mut table, "audit", &mut errors).unwrap_or_default();
    let telemetry: TelemetryConfig =
        section(&mut table, "telemetry", &mut errors).unwrap_or_default();
    let mut knowledge: KnowledgeConfig =
        section(&mut table, "knowledge", &mut errors).unwrap_or_default();
    let guardrails: GuardrailsConfig =
        section(&mut table, "guardrails", &mut errors).unwrap_or_default();
    let agents: AgentsConfig = section(&mut table, "agents", &mut errors).unwrap_or_default();
    for (path, message) in agents.problems() {
        errors.push(path, message);
    }
    let tools = tools(table.remove("tools"), environment, &mut errors);

    check_auth(&mut auth, environment, &mut errors);
    check_storage(&mut storage, environment, &mut errors);
    check_governance(&cache, &shedding, &accounting, &mut errors);
    check_server(&server, &mut errors);
    check_observability(&metrics, &audit, &telemetry, &auth, &mut errors);
    check_routing(&routing, &mut errors);
    check_knowledge(&mut knowledge, &models, environment, &mut errors);
    check_guardrails(&guardrails, &models, &mut errors);
    for (name, provider) in &mut providers {
        check_provider(name, provider, environment, &mut errors);
    }
    for (name, model) in &models {
        check_model(name, model, &providers, &accounting, &mut errors);
    }

    if errors.0.is_empty() {
        Ok(Config {
            server,
            auth,
            routing,
            providers,
            models,
            storage,
            limits,
            cache,
            shedding,
            accounting,
            metrics,
            audit,
            telemetry,
            knowledge,
            guardrails,
            agents,
            tools,
        })
    } else {
        Err(ConfigErrors(errors.0))
    }
}

fn section<T: DeserializeOwned>(
    table: &mut toml::Table,
    name: &str,
    errors: &mut Errors,
) -> Option<T> {
    let value = table.remove(name)?;
    deserialize(value, name, errors)
}

fn deserialize<T: DeserializeOwned>(
    value: toml::Value,
    path: &str,
    errors: &mut Errors,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(parsed) => Some(parsed),
        Err(error) => {
            let inner = error.path().to_string();
            let full = if inner == "." || inner.is_empty() {
                path.to_owned()
            } else {
                format!("{path}.{inner}")
            };
            errors.push(full, error.into_inner().to_string());
            None
        }
    }
}

fn entries(value: Option<toml::Value>, section: &str, errors: &mut Errors) -> toml::Table {
    match value {
        None => toml::Table::new(),
        Some(toml::Value::Table(table)) => table,
        Some(other) => {
            errors.push(
                section,
                format!("expected a table, found {}", other.type_str()),
            );
            toml::Table::new()
        }
    }
}

/// A `[SECTION.NAME]` entry with a `type`, split into the `shared` keys every type has and
/// the type's own; `None` (with the error recorded) when it is not a table or has no type.
fn split_typed(
    value: toml::Value,
    path: &str,
    what: &str,
    types: &str,
    shared: &[&str],
    errors: &mut Errors,
) -> Option<(toml::Value, toml::Value)> {
    let toml::Value::Table(mut table) = value else {
        errors.push(path.to_owned(), "expected a table");
        return None;
    };
    if !table.contains_key("type") {
        errors.push(
            format!("{path}.type"),
            format!("missing {what} type ({types})"),
        );
        return None;
    }
    let common: toml::Table = shared
        .iter()
        .filter_map(|key| table.remove(*key).map(|value| ((*key).to_owned(), value)))
        .collect();
    Some((toml::Value::Table(common), toml::Value::Table(table)))
}

fn providers(value: Option<toml::Value>, errors: &mut Errors) -> BTreeMap<String, ProviderConfig> {
    let mut providers = BTreeMap::new();
    for (name, value) in entries(value, "providers", errors) {
        let path = format!("providers.{name}");
        let types = "\"openai\", \"anthropic\" or \"local\"";
        let Some((http, table)) = split_typed(value, &path, "provider", types, HTTP_KEYS, errors)
        else {
            continue;
        };
        let http: Option<HttpSettings> = deserialize(http, &path, errors);
        let kind: Option<ProviderKind> = deserialize(table, &path, errors);
        if let (Some(http), Some(kind)) = (http, kind) {
            providers.insert(name, ProviderConfig { http, kind });
        }
    }
    providers
}

/// `[tools.NAME]`: the common keys apart from the type's own, secrets resolved.
fn tools(
    value: Option<toml::Value>,
    environment: &Environment,
    errors: &mut Errors,
) -> BTreeMap<String, ToolConfig> {
    let mut tools = BTreeMap::new();
    for (name, value) in entries(value, "tools", errors) {
        let path = format!("tools.{name}");
        let types = "\"http\", \"sql\", \"email\", \"ticket\", \"weather\" or \"mcp\"";
        let Some((common, table)) =
            split_typed(value, &path, "tool", types, COMMON_TOOL_KEYS, errors)
        else {
            continue;
        };
        let common: Option<CommonToolKeys> = deserialize(common, &path, errors);
        let kind: Option<ToolKindConfig> = deserialize(table, &path, errors);
        let (Some(common), Some(mut kind)) = (common, kind) else {
            continue;
        };
        for secret in kind.secrets_mut() {
            if let Err(message) = secret.resolve(environment) {
                errors.push(path.clone(), message);
            }
        }
        let tool = ToolConfig {
            description: common.description,
            tenants: common.tenants,
            require_approval: common.require_approval,
            timeout_ms: common.timeout_ms,
            kind,
        };
        for (path, message) in crate::tools::problems(&name, &tool) {
            errors.push(path, message);
        }
        tools.insert(name, tool);
    }
    tools
}

fn models(value: Option<toml::Value>, errors: &mut Errors) -> BTreeMap<String, ModelConfig> {
    entries(value, "models", errors)
        .into_iter()
        .filter_map(|(name, value)| {
            let model = deserialize(value, &format!("models.{name}"), errors)?;
            Some((name, model))
        })
        .collect()
}

fn check_server(server: &ServerConfig, errors: &mut Errors) {
    if server.max_body_bytes == 0 {
        errors.push("server.max_body_bytes", "must be greater than 0");
    }
}

fn check_routing(routing: &RoutingConfig, errors: &mut Errors) {
    if routing.max_attempts == 0 {
        errors.push("routing.max_attempts", "must be at least 1");
    }
    if routing.backoff_max_ms < routing.backoff_initial_ms {
        errors.push(
            "routing.backoff_max_ms",
            "must not be less than routing.backoff_initial_ms",
        );
    }
    if routing.breaker_failure_threshold == 0 {
        errors.push("routing.breaker_failure_threshold", "must be at least 1");
    }
}

fn check_provider(
    name: &str,
    provider: &mut ProviderConfig,
    environment: &Environment,
    errors: &mut Errors,
) {
    let path = format!("providers.{name}");
    if let ProviderKind::Local(local) = &provider.kind {
        for (key, message) in local.problems() {
            errors.push(format!("{path}.{key}"), message);
        }
        let http = &provider.http;
        if !http.base_url.is_empty() || http.api_key.is_some() || http.proxy_url.is_some() {
            errors.push(
                format!("{path}.base_url"),
                "a local provider runs in process: base_url, api_key and proxy_url do not apply",
            );
        }
        return;
    }
    let http = &mut provider.http;
    if http.base_url.is_empty() {
        match provider.kind.default_base_url() {
            Some(default) => http.base_url = default.to_owned(),
            None => errors.push(
                format!("{path}.base_url"),
                "missing (e.g. \"https://api.openai.com/v1\")",
            ),
        }
    }
    if !http.base_url.is_empty() {
        match url::Url::parse(&http.base_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
            Ok(url) => errors.push(
                format!("{path}.base_url"),
                format!(
                    "`{}` must be an http or https URL with a host (scheme `{}`)",
                    http.base_url,
                    url.scheme()
                ),
            ),
            Err(error) => errors.push(
                format!("{path}.base_url"),
                format!("`{}` is not a URL: {error}", http.base_url),
            ),
        }
    }
    if let Some(key) = &mut http.api_key
        && let Err(message) = key.resolve(environment)
    {
        errors.push(format!("{path}.api_key"), message);
    }
    if let Some(proxy) = &mut http.proxy_url {
        match proxy.resolve(environment) {
            Err(message) => errors.push(format!("{path}.proxy_url"), message),
            Ok(()) => match url::Url::parse(proxy.expose()) {
                Ok(url) if url.scheme() == "http" && url.host().is_some() => {}
                Ok(_) => errors.push(
                    format!("{path}.proxy_url"),
                    "must be an http:// URL with a host",
                ),
                Err(error) => {
                    errors.push(format!("{path}.proxy_url"), format!("not a URL: {error}"))
                }
            },
        }
    }
    for (header, value) in &mut http.headers {
        if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
            errors.push(
                format!("{path}.headers.{header}"),
                "not a valid HTTP header name",
            );
        }
        if let Err(message) = value.resolve(environment) {
            errors.push(format!("{path}.headers.{header}"), message);
        }
    }
    for (key, value) in [
        ("connect_timeout_ms", http.connect_timeout_ms),
        ("first_byte_timeout_ms", http.first_byte_timeout_ms),
        ("timeout_ms", http.timeout_ms),
        ("stream_idle_timeout_ms", http.stream_idle_timeout_ms),
    ] {
        if value == 0 {
            errors.push(format!("{path}.{key}"), "must be greater than 0");
        }
    }
}

fn check_auth(auth: &mut AuthConfig, environment: &Environment, errors: &mut Errors) {
    if let Some(key) = &mut auth.admin_key {
        match key.resolve(environment) {
            Err(message) => errors.push("auth.admin_key", message),
            Ok(()) if key.expose().len() < 16 => errors.push(
                "auth.admin_key",
                "must be at least 16 characters (e.g. `openssl rand -hex 32`)",
            ),
            Ok(()) => {}
        }
    }
}

fn check_storage(storage: &mut StorageConfig, environment: &Environment, errors: &mut Errors) {
    match &mut storage.metadata {
        MetadataBackend::Sqlite { path } => {
            if path.as_os_str().is_empty() {
                errors.push("storage.metadata.path", "must not be empty");
            }
        }
        MetadataBackend::Postgres {
            url,
            max_connections,
        } => {
            check_url(
                url,
                environment,
                &["postgres", "postgresql"],
                "storage.metadata.url",
                errors,
            );
            if *max_connections == 0 {
                errors.push("storage.metadata.max_connections", "must be at least 1");
            }
        }
    }
    match &mut storage.kv {
        KvBackend::Memory => {}
        KvBackend::Redis {
            url,
            timeout_ms,
            lease_ms,
            ..
        } => {
            // TLS to Redis (`rediss://`) is not built in yet; the error lists what is.
            check_url(url, environment, &["redis"], "storage.kv.url", errors);
            if *timeout_ms == 0 {
                errors.push("storage.kv.timeout_ms", "must be greater than 0");
            }
            if *lease_ms == 0 {
                errors.push("storage.kv.lease_ms", "must be greater than 0");
            }
        }
    }
}

fn check_url(
    url: &mut crate::Secret,
    environment: &Environment,
    schemes: &[&str],
    path: &str,
    errors: &mut Errors,
) {
    if let Err(message) = url.resolve(environment) {
        errors.push(path, message);
        return;
    }
    match url::Url::parse(url.expose()) {
        Ok(parsed) if schemes.contains(&parsed.scheme()) => {}
        // The URL may hold a password: name only its scheme.
        Ok(parsed) => errors.push(
            path,
            format!(
                "scheme `{}` is not one of {}",
                parsed.scheme(),
                schemes.join(", ")
            ),
        ),
        Err(error) => errors.push(path, format!("not a URL: {error}")),
    }
}

fn check_knowledge(
    knowledge: &mut KnowledgeConfig,
    models: &BTreeMap<String, ModelConfig>,
    environment: &Environment,
    errors: &mut Errors,
) {
    let chunking = knowledge.chunking;
    if chunking.max_tokens < 16 || chunking.max_tokens > 4096 {
        errors.push(
            "knowledge.chunking.max_tokens",
            "must be between 16 and 4096",
        );
    }
    if chunking.overlap_tokens * 2 > chunking.max_tokens {
        errors.push(
            "knowledge.chunking.overlap_tokens",
            "must be at most half of max_tokens",
        );
    }
    if knowledge.ingest_workers == 0 {
        errors.push("knowledge.ingest_workers", "must be at least 1");
    }
    if knowledge.max_file_bytes == 0 {
        errors.push("knowledge.max_file_bytes", "must be greater than 0");
    }
    let search = &knowledge.search;
    if !(0.0..=1.0).contains(&search.vector_weight) {
        errors.push("knowledge.search.vector_weight", "must be between 0 and 1");
    }
    if search.max_num_results == 0 || search.max_num_results > 50 {
        errors.push(
            "knowledge.search.max_num_results",
            "must be between 1 and 50",
        );
    }
    if search
        .grounding_instructions
        .as_deref()
        .is_some_and(|text| text.trim().is_empty())
    {
        errors.push(
            "knowledge.search.grounding_instructions",
            "must not be empty (leave it out for the default)",
        );
    }
    let known_model = |name: &str| models.contains_key(name);
    if let Some(model) = &search.rewrite_model
        && !known_model(model)
    {
        errors.push(
            "knowledge.search.rewrite_model",
            format!("`{model}` is not a model in [models]"),
        );
    }
    match &knowledge.embedder {
        EmbedderConfig::None => {}
        EmbedderConfig::Local {
            model, batch_size, ..
        } => {
            if model.trim().is_empty() {
                errors.push("knowledge.embedder.model", "must not be empty");
            }
            if *batch_size == 0 {
                errors.push("knowledge.embedder.batch_size", "must be at least 1");
            }
        }
        EmbedderConfig::Gateway {
            model,
            dimensions,
            batch_size,
        } => {
            if !known_model(model) {
                errors.push(
                    "knowledge.embedder.model",
                    format!("`{model}` is not a model in [models]"),
                );
            }
            if *dimensions == 0 {
                errors.push("knowledge.embedder.dimensions", "must be at least 1");
            }
            if *batch_size == 0 || *batch_size > 2048 {
                errors.push(
                    "knowledge.embedder.batch_size",
                    "must be between 1 and 2048",
                );
            }
        }
    }
    if let RerankerConfig::Local {
        model,
        candidates,
        batch_size,
        ..
    } = &knowledge.reranker
    {
        if model.trim().is_empty() {
            errors.push("knowledge.reranker.model", "must not be empty");
        }
        if *candidates == 0 || *candidates > 200 {
            errors.push("knowledge.reranker.candidates", "must be between 1 and 200");
        }
        if *batch_size == 0 {
            errors.push("knowledge.reranker.batch_size", "must be at least 1");
        }
    }
    match &mut knowledge.vector_index {
        VectorIndexConfig::Embedded => {}
        VectorIndexConfig::Pgvector { url, .. } => check_url(
            url,
            environment,
            &["postgres", "postgresql"],
            "knowledge.vector_index.url",
            errors,
        ),
        VectorIndexConfig::Chroma { url, .. } | VectorIndexConfig::Qdrant { url, .. } => {
            if !matches!(url::Url::parse(url), Ok(parsed) if ["http", "https"].contains(&parsed.scheme()))
            {
                errors.push("knowledge.vector_index.url", "must be an http(s) URL");
            }
        }
    }
    if let VectorIndexConfig::Qdrant {
        api_key: Some(key), ..
    } = &mut knowledge.vector_index
        && let Err(message) = key.resolve(environment)
    {
        errors.push("knowledge.vector_index.api_key", message);
    }
}

fn check_guardrails(
    guardrails: &GuardrailsConfig,
    models: &BTreeMap<String, ModelConfig>,
    errors: &mut Errors,
) {
    for (path, message) in guardrails.problems() {
        errors.push(path, message);
    }
    for (index, policy) in guardrails.policies.iter().enumerate() {
        for (position, model) in policy.models.iter().enumerate() {
            if !models.contains_key(model) {
                errors.push(
                    format!("guardrails.policies[{index}].models[{position}]"),
                    format!("no model alias `{model}` in [models]"),
                );
            }
        }
    }
}

fn check_governance(
    cache: &CacheConfig,
    shedding: &SheddingConfig,
    accounting: &AccountingConfig,
    errors: &mut Errors,
) {
    if cache.enabled && cache.ttl_ms == 0 {
        errors.push("cache.ttl_ms", "must be greater than 0");
    }
    if cache.enabled && cache.max_entry_bytes > cache.max_bytes {
        errors.push("cache.max_entry_bytes", "must not exceed cache.max_bytes");
    }
    if shedding.cpu_threshold_percent == 0 || shedding.cpu_threshold_percent > 100 {
        errors.push(
            "shedding.cpu_threshold_percent",
            "must be between 1 and 100",
        );
    }
    if shedding.sample_interval_ms < 50 {
        errors.push("shedding.sample_interval_ms", "must be at least 50");
    }
    if shedding.long_generation_tokens == 0 {
        errors.push("shedding.long_generation_tokens", "must be greater than 0");
    }
    let currency = &accounting.currency;
    if currency.len() != 3 || !currency.bytes().all(|byte| byte.is_ascii_uppercase()) {
        errors.push(
            "accounting.currency",
            format!("`{currency}` is not an ISO 4217 code such as USD or CNY"),
        );
    }
    if accounting.flush_interval_ms == 0 {
        errors.push("accounting.flush_interval_ms", "must be greater than 0");
    }
}

fn check_observability(
    metrics: &MetricsConfig,
    audit: &AuditConfig,
    telemetry: &TelemetryConfig,
    auth: &AuthConfig,
    errors: &mut Errors,
) {
    if metrics.enabled && metrics.access == MetricsAccess::AdminKey && auth.admin_key.is_none() {
        errors.push(
            "metrics.access",
            "`admin_key` needs auth.admin_key to be set",
        );
    }
    if audit.queue_capacity == 0 {
        errors.push("audit.queue_capacity", "must be greater than 0");
    }
    if audit.batch_size == 0 || audit.batch_size > audit.queue_capacity.max(1) {
        errors.push(
            "audit.batch_size",
            "must be greater than 0 and at most audit.queue_capacity",
        );
    }
    if audit.flush_interval_ms == 0 {
        errors.push("audit.flush_interval_ms", "must be greater than 0");
    }
    for (index, pattern) in audit.bodies.redact.iter().enumerate() {
        if let Err(error) = regex::Regex::new(pattern) {
            errors.push(
                format!("audit.bodies.redact[{index}]"),
                format!("not a regular expression: {error}"),
            );
        }
    }
    if let Some(endpoint) = &telemetry.otlp_endpoint {
        match url::Url::parse(endpoint) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            Ok(_) => errors.push("telemetry.otlp_endpoint", "must be an http or https URL"),
            Err(error) => errors.push("telemetry.otlp_endpoint", format!("not a URL: {error}")),
        }
    }
    if !(0.0..=1.0).contains(&telemetry.sample_ratio) {
        errors.push("telemetry.sample_ratio", "must be between 0.0 and 1.0");
    }
}

fn check_price(price: &crate::Price, currency: &str, path: &str, errors: &mut Errors) {
    let components = [
        ("input", Some(price.input)),
        ("cached_input", price.cached_input),
        ("output", Some(price.output)),
    ];
    for (name, value) in components {
        if let Some(value) = value
            && !(value.is_finite() && (0.0..=1e6).contains(&value))
        {
            errors.push(
                format!("{path}.{name}"),
                "must be a price per million tokens between 0 and 1000000",
            );
        }
    }
    if let Some(stated) = &price.currency
        && stated != currency
    {
        errors.push(
            format!("{path}.currency"),
            format!("`{stated}` differs from accounting.currency `{currency}`; convert the price"),
        );
    }
}

fn check_model(
    name: &str,
    model: &ModelConfig,
    providers: &BTreeMap<String, ProviderConfig>,
    accounting: &AccountingConfig,
    errors: &mut Errors,
) {
    let path = format!("models.{name}");
    if model.targets.is_empty() {
        errors.push(format!("{path}.targets"), "needs at least one target");
    }
    if let Some(knowledge) = &model.knowledge {
        if knowledge.vector_store_ids.is_empty() {
            errors.push(
                format!("{path}.knowledge.vector_store_ids"),
                "must name at least one vector store",
            );
        }
        if knowledge.max_num_results.is_some_and(|n| n == 0 || n > 20) {
            errors.push(
                format!("{path}.knowledge.max_num_results"),
                "must be between 1 and 20",
            );
        }
    }
    for (index, target) in model.targets.iter().enumerate() {
        let target_path = format!("{path}.targets[{index}]");
        if !providers.contains_key(&target.provider) {
            let known: Vec<&str> = providers.keys().map(String::as_str).collect();
            errors.push(
                format!("{target_path}.provider"),
                format!(
                    "no provider named `{}` (defined: {})",
                    target.provider,
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
            );
        }
        if target.weight == 0 {
            errors.push(format!("{target_path}.weight"), "must be at least 1");
        }
        if target.model.as_deref() == Some("") {
            errors.push(format!("{target_path}.model"), "must not be empty");
        }
        if let Some(price) = &target.price {
            check_price(
                price,
                &accounting.currency,
                &format!("{target_path}.price"),
                errors,
            );
        }
        if target.max_concurrency == Some(0) {
            errors.push(
                format!("{target_path}.max_concurrency"),
                "must be at least 1",
            );
        }
    }
}

#[cfg(test)]
mod tests;
