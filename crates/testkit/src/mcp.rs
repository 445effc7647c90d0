//! A small MCP server (rmcp) for the MCP client's tests: in process over streamable HTTP
//! ([`McpPeer::start`]), or as the `landfall-mcp-peer` binary over stdio or HTTP.
//!
//! Tools: `lookup_order` (`{"order_id"}` → a text and structured result), `whoami` (the
//! `authorization` header over HTTP, `$PEER_SECRET` over stdio: what the client forwarded),
//! `fail` (a tool-level error), and `admin_reset` (for testing `allowed_tools`).

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, JsonObject,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde_json::json;

#[derive(Clone)]
pub struct Peer;

fn schema(value: serde_json::Value) -> Arc<JsonObject> {
    match value {
        serde_json::Value::Object(object) => Arc::new(object),
        _ => Arc::new(JsonObject::new()),
    }
}

impl ServerHandler for Peer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let empty = || schema(json!({"type": "object", "properties": {}}));
        Ok(ListToolsResult::with_all_items(vec![
            Tool::new(
                "lookup_order",
                "Looks up an order by its number.",
                schema(json!({"type": "object",
                              "properties": {"order_id": {"type": "string"}},
                              "required": ["order_id"]})),
            ),
            Tool::new(
                "whoami",
                "Says which credential reached the server.",
                empty(),
            ),
            Tool::new("fail", "Always fails.", empty()),
            Tool::new("admin_reset", "Resets everything. Not for models.", empty()),
        ]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let result = match request.name.as_ref() {
            "lookup_order" => {
                let order = request
                    .arguments
                    .as_ref()
                    .and_then(|arguments| arguments.get("order_id"))
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let mut result = CallToolResult::success(vec![ContentBlock::text(format!(
                    "Order {order} shipped on 2026-11-30."
                ))]);
                result.structured_content = Some(json!({"order_id": order, "status": "shipped"}));
                result
            }
            "whoami" => {
                let credential = context
                    .extensions
                    .get::<http::request::Parts>()
                    .and_then(|parts| parts.headers.get("authorization"))
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_owned)
                    .or_else(|| std::env::var("PEER_SECRET").ok())
                    .unwrap_or_else(|| "nobody".to_owned());
                let inherited = std::env::var("HOME").is_ok();
                CallToolResult::success(vec![ContentBlock::text(format!(
                    "credential={credential} home_inherited={inherited}"
                ))])
            }
            "fail" => CallToolResult::error(vec![ContentBlock::text("the warehouse is offline")]),
            "admin_reset" => CallToolResult::success(vec![ContentBlock::text("everything reset")]),
            other => {
                return Err(ErrorData::invalid_params(format!("no tool {other}"), None));
            }
        };
        Ok(result.into())
    }
}

/// The peer serving `/mcp` on 127.0.0.1 in this process, until dropped.
pub struct McpPeer {
    /// `http://127.0.0.1:PORT/mcp`.
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl McpPeer {
    /// Starts the peer on a free port.
    ///
    /// # Errors
    /// When no port can be bound.
    pub async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let service: StreamableHttpService<Peer, LocalSessionManager> = StreamableHttpService::new(
            || Ok(Peer),
            Arc::default(),
            StreamableHttpServerConfig::default(),
        );
        let router = axum::Router::new().nest_service("/mcp", service);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Self {
            url: format!("http://127.0.0.1:{port}/mcp"),
            task,
        })
    }
}

impl Drop for McpPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves the peer on stdin and stdout until the client closes them.
///
/// # Errors
/// When the handshake or the session fails.
pub async fn serve_stdio() -> Result<(), String> {
    let running = Peer
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|error| format!("the MCP handshake failed: {error}"))?;
    running
        .waiting()
        .await
        .map_err(|error| format!("the session failed: {error}"))?;
    Ok(())
}
