//! `[tools.NAME]`: the tools Landfall runs for the model in `/v1/responses`. Each entry has
//! the common keys of [`ToolConfig`] and a `type` choosing [`ToolKindConfig`].
//!
//! An entry may become several tools (an OpenAPI document's operations, a SQL database's
//! query and schema tools, an MCP server's tools); allowlists (`tenants` here, a key's
//! `scopes.tools`) name the entry.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::Secret;

/// The keys every `[tools.NAME]` entry may have besides its `type` and the type's own keys.
pub(crate) const COMMON_TOOL_KEYS: &[&str] =
    &["description", "tenants", "require_approval", "timeout_ms"];

#[derive(Debug, Clone)]
pub struct ToolConfig {
    /// What the model is told the tool does; each type has a default.
    pub description: Option<String>,
    /// Tenants that may use the tool; `None` means every tenant.
    pub tenants: Option<Vec<String>>,
    /// Hold each call until a person approves it through the admin API. `None` means the
    /// type's default: on for tools that change something outside (`email`, `ticket`).
    pub require_approval: Option<bool>,
    /// This tool's call timeout, below `agents.tool_timeout_ms`.
    pub timeout_ms: Option<u64>,
    pub kind: ToolKindConfig,
}

/// The common keys, deserialized apart from the type's own.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CommonToolKeys {
    pub description: Option<String>,
    pub tenants: Option<Vec<String>>,
    pub require_approval: Option<bool>,
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ToolKindConfig {
    Http(HttpToolConfig),
    Sql(SqlToolConfig),
    Email(EmailToolConfig),
    Ticket(TicketToolConfig),
    Weather(WeatherToolConfig),
    Mcp(McpToolConfig),
}

impl ToolKindConfig {
    /// The `type` value, for messages.
    #[must_use]
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Http(_) => "http",
            Self::Sql(_) => "sql",
            Self::Email(_) => "email",
            Self::Ticket(_) => "ticket",
            Self::Weather(_) => "weather",
            Self::Mcp(_) => "mcp",
        }
    }

    /// Whether calls change something outside, so approval is on unless configured off.
    #[must_use]
    pub fn sensitive_by_default(&self) -> bool {
        matches!(self, Self::Email(_) | Self::Ticket(_))
    }

    /// Every secret of the entry, to resolve `env::NAME` references.
    pub(crate) fn secrets_mut(&mut self) -> Vec<&mut Secret> {
        let mut secrets = Vec::new();
        match self {
            Self::Http(http) => {
                secrets.extend(http.headers.values_mut());
                secrets.extend(http.auth.as_mut().map(HttpAuth::secret_mut));
            }
            Self::Sql(sql) => secrets.push(&mut sql.url),
            Self::Email(email) => secrets.extend(email.password.as_mut()),
            Self::Ticket(ticket) => {
                secrets.extend(ticket.headers.values_mut());
                secrets.extend(ticket.auth.as_mut().map(HttpAuth::secret_mut));
            }
            Self::Weather(weather) => secrets.extend(weather.api_key.as_mut()),
            Self::Mcp(mcp) => secrets.extend(mcp.headers.values_mut()),
        }
        secrets
    }
}

/// `type = "http"`: one described REST operation (`method` + `url`), or the operations of an
/// OpenAPI 3 document (`openapi`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpToolConfig {
    /// `GET` unless given.
    pub method: Option<String>,
    /// URL template: `{name}` is replaced by the URL-encoded argument `name`. Arguments not
    /// in the template go in the query (GET, DELETE) or the JSON body.
    pub url: Option<String>,
    /// JSON Schema of the arguments; derived from the URL template when absent.
    pub parameters: Option<serde_json::Value>,
    /// An OpenAPI 3 document (JSON or YAML file) whose operations become tools
    /// `NAME_<operationId>`.
    pub openapi: Option<PathBuf>,
    /// The operations to import (by `operationId`); all when absent.
    pub operations: Option<Vec<String>>,
    /// Overrides the document's first `servers` URL.
    pub base_url: Option<String>,
    /// Sent with every call.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    pub auth: Option<HttpAuth>,
    /// Longest response body read; longer ones are an error the model reads.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
    /// Private, loopback or link-local hosts (`erp.internal`), addresses (`127.0.0.1`) or
    /// networks (`10.0.0.0/8`) the tool may reach; public addresses are always allowed and
    /// every other one is refused (SSRF).
    #[serde(default)]
    pub allow_private: Vec<String>,
}

fn default_max_response_bytes() -> usize {
    256 * 1024
}

/// How an `http` or `ticket` tool authenticates.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum HttpAuth {
    /// A key in a header (`in = "header"`, the default) or the query string.
    ApiKey {
        name: String,
        value: Secret,
        #[serde(default, rename = "in")]
        location: ApiKeyLocation,
    },
    Bearer {
        token: Secret,
    },
    Basic {
        username: String,
        password: Secret,
    },
    /// OAuth 2.0 client credentials: a token from `token_url`, cached until shortly before it
    /// expires and fetched again when the API answers 401.
    Oauth2ClientCredentials {
        token_url: String,
        client_id: String,
        client_secret: Secret,
        scope: Option<String>,
        audience: Option<String>,
    },
}

impl HttpAuth {
    fn secret_mut(&mut self) -> &mut Secret {
        match self {
            Self::ApiKey { value, .. } => value,
            Self::Bearer { token } => token,
            Self::Basic { password, .. } => password,
            Self::Oauth2ClientCredentials { client_secret, .. } => client_secret,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ApiKeyLocation {
    #[default]
    Header,
    Query,
}

/// `type = "sql"`: read-only queries on one database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlToolConfig {
    /// `sqlite://PATH`, `postgres://…` or `mysql://…` (MySQL and MariaDB).
    pub url: Secret,
    /// Rows returned per query; more are cut off and the model is told.
    #[serde(default = "default_max_rows")]
    pub max_rows: usize,
    /// Tables shown to the model and queryable; all when absent.
    pub tables: Option<Vec<String>>,
}

fn default_max_rows() -> usize {
    100
}

/// `type = "email"`: sends mail through an SMTP server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailToolConfig {
    pub host: String,
    pub port: Option<u16>,
    #[serde(default)]
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// PEM file of a CA to trust besides the system's (a company's own SMTP relay).
    pub ca_file: Option<PathBuf>,
    /// The `From` address.
    pub from: String,
    /// Recipient domains allowed (`example.com`); every recipient must match one.
    pub allowed_domains: Vec<String>,
    /// Largest total size of attachments.
    #[serde(default = "default_max_attachment_bytes")]
    pub max_attachment_bytes: usize,
}

fn default_max_attachment_bytes() -> usize {
    10 * 1024 * 1024
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS (port 587 by default).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465 by default).
    Tls,
    /// No encryption (port 25 by default); only for a relay on the same machine.
    None,
}

/// `type = "ticket"`: opens a ticket through a webhook (ServiceNow's table API is the
/// model).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketToolConfig {
    /// Where the ticket is created, with `POST`.
    pub url: String,
    /// JSON body template (minijinja in every string): the arguments are its variables.
    pub body: serde_json::Value,
    /// JSON Schema of the arguments; `short_description`, `description` and `urgency` when
    /// absent.
    pub parameters: Option<serde_json::Value>,
    /// JSON Pointer of the ticket's id in the response (`/result/sys_id`).
    pub id_pointer: String,
    /// JSON Pointer of the ticket's human number (`/result/number`), when there is one.
    pub number_pointer: Option<String>,
    /// Link template for people: `{id}` and `{number}` are replaced.
    pub link: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    pub auth: Option<HttpAuth>,
    /// Private, loopback or link-local hosts (`erp.internal`), addresses (`127.0.0.1`) or
    /// networks (`10.0.0.0/8`) the tool may reach; public addresses are always allowed and
    /// every other one is refused (SSRF).
    #[serde(default)]
    pub allow_private: Vec<String>,
}

/// `type = "weather"`: current conditions and a forecast.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeatherToolConfig {
    #[serde(default)]
    pub provider: WeatherProvider,
    /// The provider's API root; the provider's public one when absent.
    pub base_url: Option<String>,
    /// The geocoding API root (place names to coordinates); the provider's when absent.
    pub geocoding_url: Option<String>,
    pub api_key: Option<Secret>,
    /// Private, loopback or link-local hosts (`erp.internal`), addresses (`127.0.0.1`) or
    /// networks (`10.0.0.0/8`) the tool may reach; public addresses are always allowed and
    /// every other one is refused (SSRF).
    #[serde(default)]
    pub allow_private: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WeatherProvider {
    /// <https://open-meteo.com>: no key needed.
    #[default]
    OpenMeteo,
}

/// `type = "mcp"`: the tools of an MCP server, over streamable HTTP (`url`) or a child
/// process speaking stdio (`command`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpToolConfig {
    pub url: Option<String>,
    /// Program and arguments of a stdio server.
    pub command: Option<Vec<String>>,
    /// Environment of the stdio server's process (nothing else is inherited but `PATH`).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Sent with every HTTP request.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// The server's tools offered to the model; all when absent.
    pub allowed_tools: Option<Vec<String>>,
    /// Private, loopback or link-local hosts (`erp.internal`), addresses (`127.0.0.1`) or
    /// networks (`10.0.0.0/8`) the tool may reach; public addresses are always allowed and
    /// every other one is refused (SSRF).
    #[serde(default)]
    pub allow_private: Vec<String>,
}

/// `(path, message)` for each problem of the entry `tools.NAME`, beyond what
/// deserializing checks.
pub(crate) fn problems(name: &str, tool: &ToolConfig) -> Vec<(String, String)> {
    let path = format!("tools.{name}");
    let mut problems = Vec::new();
    let mut push = |key: &str, message: &str| {
        problems.push((format!("{path}.{key}"), message.to_owned()));
    };
    if name.is_empty()
        || name.len() > 48
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        push("", "tool names are 1 to 48 of A-Z a-z 0-9 _ -");
    }
    if tool.timeout_ms == Some(0) {
        push("timeout_ms", "must be positive");
    }
    let allow_private = match &tool.kind {
        ToolKindConfig::Http(http) => http.allow_private.as_slice(),
        ToolKindConfig::Ticket(ticket) => ticket.allow_private.as_slice(),
        ToolKindConfig::Weather(weather) => weather.allow_private.as_slice(),
        ToolKindConfig::Mcp(mcp) => mcp.allow_private.as_slice(),
        ToolKindConfig::Sql(_) | ToolKindConfig::Email(_) => &[],
    };
    for (index, entry) in allow_private.iter().enumerate() {
        if !is_host_pattern(entry) {
            push(
                &format!("allow_private[{index}]"),
                "expected a host name, an IP address or a network such as 10.0.0.0/8",
            );
        }
    }
    match &tool.kind {
        ToolKindConfig::Http(http) => match (&http.url, &http.openapi) {
            (Some(_), Some(_)) => push("openapi", "give either `url` or `openapi`, not both"),
            (None, None) => push("url", "give `url` (one operation) or `openapi`"),
            (Some(url), None) => {
                if http.operations.is_some() {
                    push("operations", "only with `openapi`");
                }
                if let Err(message) = check_url(url) {
                    push("url", &message);
                }
            }
            (None, Some(_)) => {
                if http.parameters.is_some() || http.method.is_some() {
                    push(
                        "parameters",
                        "`method` and `parameters` come from the document",
                    );
                }
            }
        },
        ToolKindConfig::Sql(sql) => {
            let url = sql.url.expose();
            if !["sqlite:", "postgres:", "postgresql:", "mysql:", "mariadb:"]
                .iter()
                .any(|scheme| url.starts_with(scheme))
            {
                push(
                    "url",
                    "must start with sqlite:, postgres:, mysql: or mariadb:",
                );
            }
            if sql.max_rows == 0 {
                push("max_rows", "must be positive");
            }
        }
        ToolKindConfig::Email(email) => {
            if email.allowed_domains.is_empty() {
                push("allowed_domains", "list at least one recipient domain");
            }
            if !email.from.contains('@') {
                push("from", "must be an e-mail address");
            }
            if email.username.is_some() != email.password.is_some() {
                push("password", "`username` and `password` go together");
            }
        }
        ToolKindConfig::Ticket(ticket) => {
            if let Err(message) = check_url(&ticket.url) {
                push("url", &message);
            }
            if !ticket.id_pointer.starts_with('/') {
                push(
                    "id_pointer",
                    "must be a JSON Pointer such as /result/sys_id",
                );
            }
        }
        ToolKindConfig::Weather(_) => {}
        ToolKindConfig::Mcp(mcp) => match (&mcp.url, &mcp.command) {
            (Some(_), Some(_)) => push("command", "give either `url` or `command`, not both"),
            (None, None) => push("url", "give `url` (streamable HTTP) or `command` (stdio)"),
            (Some(url), None) => {
                if let Err(message) = check_url(url) {
                    push("url", &message);
                }
            }
            (None, Some(command)) => {
                if command.is_empty() {
                    push("command", "name the program to run");
                }
            }
        },
    }
    problems
}

/// A host name, an IP address, or `ADDRESS/PREFIX`.
fn is_host_pattern(entry: &str) -> bool {
    if let Some((address, prefix)) = entry.split_once('/') {
        return match (address.parse::<std::net::IpAddr>(), prefix.parse::<u8>()) {
            (Ok(std::net::IpAddr::V4(_)), Ok(bits)) => bits <= 32,
            (Ok(std::net::IpAddr::V6(_)), Ok(bits)) => bits <= 128,
            _ => false,
        };
    }
    entry.parse::<std::net::IpAddr>().is_ok() || url::Host::parse(entry).is_ok()
}

/// An `http(s)` URL, possibly with `{name}` placeholders.
fn check_url(template: &str) -> Result<(), String> {
    let filled = template.replace(['{', '}'], "");
    match url::Url::parse(&filled) {
        Ok(url) if url.scheme() == "http" || url.scheme() == "https" => Ok(()),
        Ok(_) => Err("must be an http or https URL".to_owned()),
        Err(error) => Err(format!("not a URL: {error}")),
    }
}
