//! `/admin/v1/models` and `/admin/v1/reload`: the local models an operator lists, loads,
//! unloads and switches at run time, and the configuration reload. Changes made here last
//! until the next reload or restart (put them in the configuration file to keep them).

use axum::extract::{Path, State};
use axum::response::Response;
use http::StatusCode;
use landfall_config::LocalModelConfig;
use landfall_providers::{LocalState, LocalStatus};
use serde::Serialize;

use crate::routes::json_response;
use crate::swap::SwapError;
use crate::{ApiError, AppState};

/// One local model as the admin API shows it.
#[derive(Debug, Serialize)]
struct LocalModelView {
    id: String,
    object: &'static str,
    source: String,
    /// `idle` (loads on first use), `loading`, `ready`, `failed` or `unloaded`.
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    architecture: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    quantization: Option<String>,
    /// The type the weights run as when converted at load (`Q8_0`).
    #[serde(skip_serializing_if = "Option::is_none")]
    converted_to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    context_length: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file_bytes: Option<u64>,
    /// Requests waiting while one generates.
    waiting: usize,
    /// Model aliases with a target on this model.
    aliases: Vec<String>,
}

#[derive(Debug, Serialize)]
struct List {
    object: &'static str,
    data: Vec<LocalModelView>,
}

fn view(state: &AppState, status: LocalStatus) -> LocalModelView {
    let aliases = state
        .routes()
        .config
        .models
        .iter()
        .filter(|(_, alias)| {
            alias
                .targets
                .iter()
                .any(|target| target.provider == status.name)
        })
        .map(|(alias, _)| alias.clone())
        .collect();
    let mut view = LocalModelView {
        id: status.name,
        object: "local_model",
        source: status.source,
        status: "idle",
        error: None,
        architecture: None,
        quantization: None,
        converted_to: None,
        context_length: None,
        parameters: None,
        file_bytes: None,
        waiting: status.waiting,
        aliases,
    };
    match status.state {
        LocalState::Idle => {}
        LocalState::Loading => view.status = "loading",
        LocalState::Ready(info) => {
            view.status = "ready";
            view.architecture = Some(info.architecture);
            view.quantization = Some(info.quantization);
            view.converted_to = info.converted_to;
            view.context_length = Some(info.context_length);
            view.parameters = Some(info.parameters);
            view.file_bytes = Some(info.file_bytes);
        }
        LocalState::Failed(reason) => {
            view.status = "failed";
            view.error = Some(reason);
        }
        LocalState::Unloaded => view.status = "unloaded",
    }
    view
}

fn model(
    state: &AppState,
    name: &str,
) -> Result<std::sync::Arc<landfall_providers::LocalModel>, ApiError> {
    state.routes().locals.get(name).ok_or_else(|| {
        SwapError::NotFound {
            name: name.to_owned(),
        }
        .into()
    })
}

pub(crate) async fn list(State(state): State<AppState>) -> Response {
    let data = state
        .routes()
        .locals
        .all()
        .into_iter()
        .map(|model| view(&state, model.status()))
        .collect();
    json_response(&List {
        object: "list",
        data,
    })
}

pub(crate) async fn retrieve(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let model = model(&state, &name)?;
    Ok(json_response(&view(&state, model.status())))
}

/// Loads the model now (fetching it first when it comes from the Hub); waits until it is
/// ready.
pub(crate) async fn load(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let model = model(&state, &name)?;
    model
        .load()
        .await
        .map_err(|reason| SwapError::Load { name, reason })?;
    Ok(json_response(&view(&state, model.status())))
}

/// Frees the model's memory once its running generations end; its aliases fall back to
/// their next targets until it is loaded again.
pub(crate) async fn unload(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let model = model(&state, &name)?;
    model.unload();
    Ok(json_response(&view(&state, model.status())))
}

/// Runs `name` with the model in the body (the keys of a `type = "local"` provider), loaded
/// before requests switch to it. A new name also becomes a model alias.
pub(crate) async fn put(
    State(state): State<AppState>,
    Path(name): Path<String>,
    crate::admin::AdminJson(config): crate::admin::AdminJson<LocalModelConfig>,
) -> Result<Response, ApiError> {
    let created = state.switch_local_model(&name, config).await?;
    let model = model(&state, &name)?;
    let mut response = json_response(&view(&state, model.status()));
    if created {
        *response.status_mut() = StatusCode::CREATED;
    }
    Ok(response)
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    state.remove_local_model(&name).await?;
    Ok(json_response(&serde_json::json!({
        "id": name,
        "object": "local_model",
        "deleted": true,
    })))
}

/// Reads the configuration file again and swaps providers and aliases atomically.
pub(crate) async fn reload(State(state): State<AppState>) -> Result<Response, ApiError> {
    state.reload().await?;
    Ok(json_response(&serde_json::json!({
        "object": "reload",
        "models": state.gateway().model_names(),
    })))
}
