//! Landfall's configuration: one TOML file, overridden key by key from `LANDFALL__…`
//! environment variables, with secrets given as `env::NAME` references. [`load`] parses first
//! and validates second, and a bad file fails with every problem listed by its path.
//!
//! This crate only reads and checks; it builds nothing and opens no connection.

mod agents;
mod environment;
mod governance;
mod guardrails;
mod knowledge;
mod local;
mod model;
mod observability;
mod secret;
mod tools;
mod validate;

use std::path::Path;

pub use agents::{AgentsConfig, ToolProtocol};
pub use environment::Environment;
pub use governance::{
    AccountingConfig, AuthConfig, CacheConfig, CacheMode, KvBackend, LimitsConfig, MetadataBackend,
    OnBackendError, Price, ShedPolicy, SheddingConfig, StorageConfig,
};
pub use guardrails::{
    Action, GuardrailsConfig, MatcherSpec, PiiKind, PolicySpec, RuleSpec, Severity, Stage,
};
pub use knowledge::{
    ChunkingConfig, EmbedderConfig, Fusion, KnowledgeConfig, RerankerConfig, SearchConfig,
    VectorIndexConfig,
};
pub use local::{
    DEFAULT_LOCAL_FILE, DEFAULT_LOCAL_NAME, DEFAULT_LOCAL_REPO, LOCAL_MODEL_VAR, LocalModelConfig,
};
pub use model::{
    Config, HttpSettings, ModelConfig, ModelKnowledge, ModelPrompt, ProviderConfig, ProviderKind,
    RoutingConfig, ServerConfig, TargetConfig,
};
pub use observability::{AuditBodies, AuditConfig, MetricsAccess, MetricsConfig, TelemetryConfig};
pub use secret::Secret;
pub use tools::{
    ApiKeyLocation, EmailToolConfig, HttpAuth, HttpToolConfig, McpToolConfig, SmtpSecurity,
    SqlToolConfig, TicketToolConfig, ToolConfig, ToolKindConfig, WeatherProvider,
    WeatherToolConfig,
};

/// One problem in a configuration, at a dotted path such as `providers.openai.base_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(formatter, "{}", self.message)
        } else {
            write!(formatter, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = self.0.len();
        writeln!(
            formatter,
            "{count} configuration error{}:",
            if count == 1 { "" } else { "s" }
        )?;
        for error in &self.0 {
            writeln!(formatter, "  - {error}")?;
        }
        Ok(())
    }
}

/// Reads, overrides and validates the configuration. With no file, the embedded defaults are
/// used (still overridable from the environment).
///
/// # Errors
/// Every problem found: unreadable file, TOML syntax, unknown keys, wrong types, bad URLs,
/// dangling references, unset secret variables.
pub fn load(path: Option<&Path>, environment: &Environment) -> Result<Config, ConfigErrors> {
    let text = match path {
        Some(path) => std::fs::read_to_string(path).map_err(|error| {
            ConfigErrors(vec![ConfigError {
                path: String::new(),
                message: format!("cannot read {}: {error}", path.display()),
            }])
        })?,
        None => String::new(),
    };
    from_toml(&text, environment)
}

/// Like [`load`], from TOML text.
///
/// # Errors
/// As [`load`].
pub fn from_toml(text: &str, environment: &Environment) -> Result<Config, ConfigErrors> {
    let mut table: toml::Table = text.parse().map_err(|error: toml::de::Error| {
        ConfigErrors(vec![ConfigError {
            path: String::new(),
            message: format!("invalid TOML: {}", error.message().trim()),
        }])
        .with_span(text, error.span())
    })?;
    environment.apply_overrides(&mut table)?;
    validate::validate(table, environment)
}

impl ConfigErrors {
    fn with_span(mut self, text: &str, span: Option<std::ops::Range<usize>>) -> Self {
        if let (Some(span), Some(first)) = (span, self.0.first_mut()) {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            first.message = format!("{} (line {line})", first.message);
        }
        self
    }
}
