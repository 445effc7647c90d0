//! The `[tools.NAME]` entries as the server runs them: built with the server's own services
//! (e-mail attachments come from `/v1/files`), rebuilt on reload.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use landfall_config::Config;
use landfall_knowledge::Knowledge;
use landfall_tools::email::{Attachment, Attachments};
use landfall_tools::{BuildError, Registry, Services};

/// The label built-in tools' `mcp_call` items carry.
pub(crate) const SERVER_LABEL: &str = "landfall";

/// Reads attachments from the knowledge store's files, once it is open.
struct FileAttachments {
    knowledge: Arc<OnceLock<Arc<Knowledge>>>,
}

#[async_trait]
impl Attachments for FileAttachments {
    async fn read(&self, tenant_id: &str, file_id: &str) -> Result<Attachment, String> {
        let knowledge = self
            .knowledge
            .get()
            .ok_or_else(|| "files are not enabled on this server".to_owned())?;
        let file = knowledge
            .get_file(tenant_id, file_id)
            .await
            .map_err(|error| error.to_string())?;
        let bytes = knowledge
            .file_content(tenant_id, file_id)
            .await
            .map_err(|error| error.to_string())?;
        Ok(Attachment {
            content_type: content_type(&file.filename).to_owned(),
            filename: file.filename,
            bytes: bytes.into(),
        })
    }
}

/// The MIME type of a file name's extension; unknown ones are plain bytes.
fn content_type(filename: &str) -> &'static str {
    let extension = filename
        .rsplit_once('.')
        .map(|(_, extension)| extension.to_ascii_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "pdf" => "application/pdf",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "csv" => "text/csv",
        "txt" | "log" => "text/plain",
        "md" | "markdown" => "text/markdown",
        "html" | "htm" => "text/html",
        "json" => "application/json",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "svg" => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

/// Builds every entry of `config`.
///
/// # Errors
/// The entries that cannot be built, one message each.
pub(crate) fn build(
    config: &Config,
    knowledge: &Arc<OnceLock<Arc<Knowledge>>>,
) -> Result<Registry, ToolsError> {
    let services = Services {
        attachments: Arc::new(FileAttachments {
            knowledge: knowledge.clone(),
        }),
    };
    Registry::build(&config.tools, &config.agents, &services).map_err(ToolsError)
}

/// Entries that could not be built.
#[derive(Debug)]
pub struct ToolsError(pub Vec<BuildError>);

impl std::fmt::Display for ToolsError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                formatter.write_str("; ")?;
            }
            write!(formatter, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ToolsError {}

/// `GET /admin/v1/tools`: every `[tools.NAME]` entry as the server built it, with the tools
/// (name, description, argument schema) the model sees.
pub(crate) async fn list(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
) -> axum::response::Response {
    let routes = state.routes();
    let mut data = Vec::new();
    for entry in routes.tools.entries() {
        let (tools, error) = match entry.all_tools().await {
            Ok(tools) => (tools, None),
            Err(error) => (entry.tools.clone(), Some(error)),
        };
        let tools: Vec<serde_json::Value> = tools
            .iter()
            .map(|tool| {
                let spec = tool.spec();
                serde_json::json!({
                    "name": spec.name,
                    "description": spec.description,
                    "parameters": spec.parameters,
                })
            })
            .collect();
        let mut view = serde_json::json!({
            "object": "tool_entry",
            "name": entry.name,
            "type": entry.kind,
            "require_approval": entry.require_approval,
            "tenants": entry.tenants(),
            "tools": tools,
        });
        if let Some(error) = error {
            view["error"] = serde_json::Value::String(error);
        }
        data.push(view);
    }
    crate::routes::json_response(&serde_json::json!({"object": "list", "data": data}))
}
