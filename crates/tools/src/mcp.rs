//! MCP servers' tools (rmcp's client), over streamable HTTP or a child process speaking
//! stdio: `type = "mcp"` entries, and the `mcp` tools a request names.
//!
//! A server is connected on first use, its tool list read then and kept; a transport that
//! closes (the server restarted, the child exited) is reconnected by the next use. HTTP
//! servers are reached through [`crate::net`], so the SSRF rule holds for them too.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use landfall_agents::{Tool, ToolContext, ToolError, ToolOutput, ToolSpec};
use landfall_config::McpToolConfig;
use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::Value;

use crate::net::Policy;

/// How long connecting and listing tools may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Bounds one HTTP exchange of the session (calls have their own, shorter deadline).
const HTTP_TIMEOUT: Duration = Duration::from_secs(600);
/// Characters of a result the model reads.
const MAX_TEXT_CHARS: usize = 64 * 1024;

enum Connect {
    Http {
        url: String,
        headers: HashMap<http::HeaderName, http::HeaderValue>,
        client: reqwest::Client,
    },
    Stdio {
        program: String,
        args: Vec<String>,
        env: BTreeMap<String, String>,
    },
}

type Session = RunningService<RoleClient, ()>;

/// One MCP server and the tools it offers.
pub struct McpServer {
    label: String,
    connect: Connect,
    /// The server's tools offered to the model; all when `None`.
    allowed: Option<BTreeSet<String>>,
    state: tokio::sync::Mutex<Option<Connected>>,
}

struct Connected {
    session: Arc<Session>,
    tools: Vec<Arc<dyn Tool>>,
}

impl McpServer {
    /// The server of a `type = "mcp"` entry.
    ///
    /// # Errors
    /// When a header or the allowlist is unusable.
    pub fn from_config(label: &str, config: &McpToolConfig) -> Result<Arc<Self>, String> {
        let connect = match (&config.url, &config.command) {
            (Some(url), _) => {
                let headers = config
                    .headers
                    .iter()
                    .map(|(name, value)| (name.clone(), value.expose().to_owned()))
                    .collect();
                Self::http(url, &headers, &config.allow_private)?
            }
            (None, Some(command)) => {
                let (program, args) = command
                    .split_first()
                    .ok_or_else(|| "`command` names no program".to_owned())?;
                Connect::Stdio {
                    program: program.clone(),
                    args: args.to_vec(),
                    env: config.env.clone(),
                }
            }
            (None, None) => return Err("give `url` or `command`".to_owned()),
        };
        Ok(Arc::new(Self {
            label: label.to_owned(),
            connect,
            allowed: config
                .allowed_tools
                .as_ref()
                .map(|tools| tools.iter().cloned().collect()),
            state: tokio::sync::Mutex::new(None),
        }))
    }

    /// A server a request names (`{"type": "mcp", "server_url": …}`).
    ///
    /// # Errors
    /// When the URL or a header is unusable, or the URL is not allowed.
    pub fn for_request(
        label: &str,
        url: &str,
        headers: &BTreeMap<String, String>,
        allowed_tools: Option<Vec<String>>,
        allow_private: &[String],
    ) -> Result<Arc<Self>, String> {
        let connect = Self::http(url, headers, allow_private)?;
        Ok(Arc::new(Self {
            label: label.to_owned(),
            connect,
            allowed: allowed_tools.map(|tools| tools.into_iter().collect()),
            state: tokio::sync::Mutex::new(None),
        }))
    }

    fn http(
        url: &str,
        headers: &BTreeMap<String, String>,
        allow_private: &[String],
    ) -> Result<Connect, String> {
        let policy = Arc::new(Policy::new(allow_private)?);
        let parsed = url::Url::parse(url).map_err(|error| format!("`{url}`: {error}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("`{url}` is not an http(s) URL"));
        }
        policy
            .check_url(&parsed)
            .map_err(|refused| refused.to_string())?;
        let headers = headers
            .iter()
            .map(|(name, value)| {
                let name = http::HeaderName::try_from(name.as_str())
                    .map_err(|_| format!("`{name}` is not a header name"))?;
                let value = http::HeaderValue::try_from(value.as_str())
                    .map_err(|_| format!("header `{name}` has an unusable value"))?;
                Ok((name, value))
            })
            .collect::<Result<_, String>>()?;
        Ok(Connect::Http {
            url: url.to_owned(),
            headers,
            client: crate::net::client(&policy, HTTP_TIMEOUT)?,
        })
    }

    #[must_use]
    pub fn label(&self) -> &str {
        &self.label
    }

    async fn open(&self) -> Result<Session, String> {
        let opened = match &self.connect {
            Connect::Http {
                url,
                headers,
                client,
            } => {
                let mut config = StreamableHttpClientTransportConfig::with_uri(url.as_str());
                config.custom_headers = headers.clone();
                let transport = StreamableHttpClientTransport::with_client(client.clone(), config);
                ().serve(transport).await
            }
            Connect::Stdio { program, args, env } => {
                let mut command = tokio::process::Command::new(program);
                command.args(args).env_clear().envs(env);
                if let Some(path) = std::env::var_os("PATH") {
                    command.env("PATH", path);
                }
                command.kill_on_drop(true);
                let transport = TokioChildProcess::new(command)
                    .map_err(|error| format!("`{program}` could not be started: {error}"))?;
                ().serve(transport).await
            }
        };
        opened.map_err(|error| format!("the MCP handshake failed: {error}"))
    }

    /// The session and tools, connecting when there is none or it closed.
    async fn connected(self: &Arc<Self>) -> Result<(Arc<Session>, Vec<Arc<dyn Tool>>), String> {
        let mut state = self.state.lock().await;
        if let Some(connected) = state.as_ref()
            && !connected.session.is_closed()
        {
            return Ok((connected.session.clone(), connected.tools.clone()));
        }
        let work = async {
            let session = self.open().await?;
            let listed = session
                .list_all_tools()
                .await
                .map_err(|error| format!("the tool list could not be read: {error}"))?;
            Ok::<_, String>((session, listed))
        };
        let (session, listed) =
            tokio::time::timeout(CONNECT_TIMEOUT, work)
                .await
                .map_err(|_| {
                    format!(
                        "the MCP server did not answer within {} s",
                        CONNECT_TIMEOUT.as_secs()
                    )
                })??;
        let mut tools: Vec<Arc<dyn Tool>> = Vec::new();
        for tool in listed {
            let name = tool.name.to_string();
            if self
                .allowed
                .as_ref()
                .is_some_and(|allowed| !allowed.contains(&name))
            {
                continue;
            }
            if name.is_empty()
                || name.len() > 64
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                tracing::warn!(server = %self.label, tool = %name, "MCP tool name unusable as a function name; skipped");
                continue;
            }
            tools.push(Arc::new(McpTool {
                spec: ToolSpec {
                    name: name.clone(),
                    description: tool
                        .description
                        .map(|description| description.to_string())
                        .unwrap_or_default(),
                    parameters: Value::Object((*tool.input_schema).clone()),
                    sensitive: false,
                },
                server: self.clone(),
            }));
        }
        let session = Arc::new(session);
        *state = Some(Connected {
            session: session.clone(),
            tools: tools.clone(),
        });
        Ok((session, tools))
    }

    /// The server's tools (those allowed), connecting first when needed.
    ///
    /// # Errors
    /// When the server cannot be reached or does not speak MCP.
    pub async fn tools(self: &Arc<Self>) -> Result<Vec<Arc<dyn Tool>>, String> {
        self.connected().await.map(|(_, tools)| tools)
    }

    /// Forgets a session that failed, so the next use connects again.
    async fn reset(&self, failed: &Arc<Session>) {
        let mut state = self.state.lock().await;
        if state
            .as_ref()
            .is_some_and(|connected| Arc::ptr_eq(&connected.session, failed))
        {
            *state = None;
        }
    }
}

struct McpTool {
    spec: ToolSpec,
    server: Arc<McpServer>,
}

#[async_trait]
impl Tool for McpTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, arguments: Value, context: &ToolContext) -> Result<ToolOutput, ToolError> {
        let (session, _) = self.server.connected().await.map_err(ToolError::failed)?;
        let mut request = CallToolRequestParams::new(self.spec.name.clone());
        if let Value::Object(arguments) = arguments {
            request = request.with_arguments(arguments);
        }
        let result = tokio::time::timeout_at(context.deadline.into(), session.call_tool(request))
            .await
            .map_err(|_| ToolError::failed("the MCP server did not answer in time"))?;
        let result = match result {
            Ok(result) => result,
            Err(error) => {
                if matches!(
                    error,
                    rmcp::ServiceError::TransportClosed | rmcp::ServiceError::TransportSend(_)
                ) {
                    self.server.reset(&session).await;
                }
                return Err(ToolError::failed(format!("the MCP call failed: {error}")));
            }
        };
        let mut text = result
            .content
            .iter()
            .map(|block| match block.as_text() {
                Some(text) => text.text.clone(),
                None => serde_json::to_string(block).unwrap_or_default(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        if text.is_empty()
            && let Some(structured) = &result.structured_content
        {
            text = structured.to_string();
        }
        if text.chars().count() > MAX_TEXT_CHARS {
            text = text.chars().take(MAX_TEXT_CHARS).collect::<String>() + "… (cut off)";
        }
        if result.is_error == Some(true) {
            return Err(ToolError::failed(format!(
                "the tool reported an error: {text}"
            )));
        }
        Ok(ToolOutput {
            text,
            data: result.structured_content,
        })
    }
}
