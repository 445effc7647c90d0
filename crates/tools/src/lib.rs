//! The tools Landfall runs for the model in `/v1/responses`, built from `[tools.NAME]`
//! entries: `http` (a REST operation or an OpenAPI document's operations, with API key,
//! Bearer, Basic or OAuth2 client-credentials auth), `sql` (read-only queries and schema on
//! SQLite, PostgreSQL, MySQL/MariaDB), `email` (SMTP), `ticket` (a webhook such as
//! ServiceNow's table API), `weather`, and `mcp` (an MCP server's tools).
//!
//! Every tool implements [`landfall_agents::Tool`]; the loop validates arguments against the
//! tool's schema before calling it. Tools that reach URLs go through [`net`], which refuses
//! private, loopback and link-local destinations unless the entry allowlists them.

mod auth;
pub mod email;
pub mod http;
pub mod mcp;
pub mod net;
mod openapi;
pub mod sql;
pub mod ticket;
pub mod weather;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use landfall_agents::Tool;
use landfall_config::{AgentsConfig, ToolConfig, ToolKindConfig};

/// A `[tools.NAME]` entry that cannot be built.
#[derive(Debug, thiserror::Error)]
#[error("tools.{tool}: {message}")]
pub struct BuildError {
    pub tool: String,
    pub message: String,
}

impl BuildError {
    pub fn new(tool: &str, message: impl std::fmt::Display) -> Self {
        Self {
            tool: tool.to_owned(),
            message: message.to_string(),
        }
    }
}

/// What tools need from the server around them.
pub struct Services {
    /// `/v1/files`, for e-mail attachments.
    pub attachments: Arc<dyn email::Attachments>,
}

/// The tools of one `[tools.NAME]` entry.
pub struct Entry {
    pub name: String,
    /// The entry's `type`.
    pub kind: &'static str,
    /// The tools known when the entry is built (every type's but `mcp`).
    pub tools: Vec<Arc<dyn Tool>>,
    /// An `mcp` entry's server, whose tools are known once it is reached.
    pub mcp: Option<Arc<mcp::McpServer>>,
    /// Each call waits for a person's approval.
    pub require_approval: bool,
    tenants: Option<Vec<String>>,
}

impl Entry {
    /// Every tool of the entry, reaching its MCP server first when it has one.
    ///
    /// # Errors
    /// When the MCP server cannot be reached.
    pub async fn all_tools(&self) -> Result<Vec<Arc<dyn Tool>>, String> {
        let mut tools = self.tools.clone();
        if let Some(server) = &self.mcp {
            tools.extend(server.tools().await?);
        }
        Ok(tools)
    }

    /// The tenants the entry is offered to; every tenant when `None`.
    #[must_use]
    pub fn tenants(&self) -> Option<&[String]> {
        self.tenants.as_deref()
    }

    /// Whether the entry is offered to `tenant` (before the key's own allowlist).
    #[must_use]
    pub fn allows_tenant(&self, tenant: &str) -> bool {
        self.tenants
            .as_ref()
            .is_none_or(|tenants| tenants.iter().any(|allowed| allowed == tenant))
    }
}

/// Every configured entry, built.
#[derive(Default)]
pub struct Registry {
    entries: BTreeMap<String, Entry>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_list().entries(self.entries.keys()).finish()
    }
}

impl Registry {
    /// Builds every entry; connections are opened on first use, so a peer that is down does
    /// not stop the server.
    ///
    /// # Errors
    /// Every entry that cannot be built.
    pub fn build(
        tools: &BTreeMap<String, ToolConfig>,
        agents: &AgentsConfig,
        services: &Services,
    ) -> Result<Self, Vec<BuildError>> {
        let mut entries = BTreeMap::new();
        let mut errors = Vec::new();
        for (name, tool) in tools {
            let timeout = Duration::from_millis(
                tool.timeout_ms
                    .unwrap_or(agents.tool_timeout_ms)
                    .min(agents.tool_timeout_ms),
            );
            let mut server = None;
            let built = match &tool.kind {
                ToolKindConfig::Http(config) => http::build(name, tool, config, timeout),
                ToolKindConfig::Sql(config) => sql::build(name, tool, config),
                ToolKindConfig::Email(config) => {
                    email::build(name, tool, config, timeout, services.attachments.clone())
                        .map(|t| vec![t])
                }
                ToolKindConfig::Ticket(config) => {
                    ticket::build(name, tool, config, timeout).map(|t| vec![t])
                }
                ToolKindConfig::Weather(config) => {
                    weather::build(name, tool, config, timeout).map(|t| vec![t])
                }
                ToolKindConfig::Mcp(config) => mcp::McpServer::from_config(name, config)
                    .map(|built| {
                        server = Some(built);
                        Vec::new()
                    })
                    .map_err(|error| BuildError::new(name, error)),
            };
            match built {
                Ok(built) => {
                    entries.insert(
                        name.clone(),
                        Entry {
                            name: name.clone(),
                            kind: tool.kind.type_name(),
                            tools: built,
                            mcp: server,
                            require_approval: tool
                                .require_approval
                                .unwrap_or_else(|| tool.kind.sensitive_by_default()),
                            tenants: tool.tenants.clone(),
                        },
                    );
                }
                Err(error) => errors.push(error),
            }
        }
        if errors.is_empty() {
            Ok(Self { entries })
        } else {
            Err(errors)
        }
    }

    #[must_use]
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name)
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }
}
