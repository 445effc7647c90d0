//! Prompt templates: `/admin/v1/prompts` (create, new versions, read, list, delete, and a
//! render preview), and the lookup `/v1/responses` (`prompt`) and model aliases
//! (`[models.NAME] prompt`) render through.
//!
//! Versions are immutable: a change is a new version, so a response that names
//! `version: "2"` gets the same prompt tomorrow, and one that names none gets the latest.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use landfall_agents::{CompiledPrompt, PromptError, PromptTemplate, RenderedPrompt};
use landfall_governance::AdminError;
use landfall_storage::{PromptRecord, PromptStore, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::admin::AdminJson;
use crate::routes::json_response;
use crate::{ApiError, AppState};

fn store(state: &AppState) -> Result<Arc<dyn PromptStore>, ApiError> {
    state.prompt_store().ok_or_else(|| {
        ApiError::from(StoreError::Unavailable(
            "prompt templates need a metadata store, and this server has none".to_owned(),
        ))
    })
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ApiError {
    AdminError::Invalid {
        field: field.into(),
        message: message.into(),
    }
    .into()
}

/// A prompt a request or a model alias names: `{id, version, variables}` as OpenAI's
/// Responses API has it (`version` a string of digits, or a number).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PromptReference {
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) version: Option<Value>,
    #[serde(default)]
    pub(crate) variables: Map<String, Value>,
}

/// A rendered prompt with the version it came from.
pub(crate) struct Resolved {
    pub(crate) version: i64,
    pub(crate) rendered: RenderedPrompt,
}

/// Renders `reference` for a caller of `tenant_id` (`None`: an operator, who sees every
/// prompt); `param` names the request field errors are about.
///
/// # Errors
/// 404 when the prompt (or version) does not exist or is not the tenant's; 400 when the
/// version or variables are wrong.
pub(crate) async fn resolve(
    state: &AppState,
    tenant_id: Option<&str>,
    reference: &PromptReference,
    param: &'static str,
) -> Result<Resolved, ApiError> {
    let bad = |message: String| ApiError::InvalidValue { message, param };
    let version = match &reference.version {
        None | Some(Value::Null) => None,
        Some(Value::Number(number)) => Some(number.as_i64().ok_or_else(|| {
            bad(format!(
                "prompt version must be a whole number, not {number}"
            ))
        })?),
        Some(Value::String(text)) => Some(text.parse::<i64>().map_err(|_| {
            bad(format!(
                "prompt version must be a number like \"2\", not \"{text}\""
            ))
        })?),
        Some(other) => return Err(bad(format!("prompt version must be a string, not {other}"))),
    };
    let not_found = || ApiError::PromptNotFound {
        id: reference.id.clone(),
        version,
    };
    let record = store(state)?
        .get_prompt(&reference.id, version)
        .await?
        .ok_or_else(not_found)?;
    let compiled = compile(&record)?;
    let tenants = &compiled.template().tenants;
    if let Some(tenant_id) = tenant_id
        && !tenants.is_empty()
        && !tenants.iter().any(|tenant| tenant == tenant_id)
    {
        return Err(not_found());
    }
    let variables = variables(&reference.variables).map_err(bad)?;
    let rendered = compiled.render(&variables).map_err(|error| match error {
        PromptError::Variables { message } => bad(format!(
            "prompt `{}` version {}: {message}",
            record.id, record.version
        )),
        PromptError::Template { message } => ApiError::InvalidValue {
            message: format!(
                "prompt `{}` version {} cannot be rendered: {message}",
                record.id, record.version
            ),
            param,
        },
    })?;
    Ok(Resolved {
        version: record.version,
        rendered,
    })
}

/// The prompt of `model`'s alias (`[models.NAME] prompt`), if it has one.
pub(crate) fn of_alias(state: &AppState, model: &str) -> Option<PromptReference> {
    let routes = state.routes();
    let prompt = routes.config.models.get(model)?.prompt.as_ref()?;
    Some(PromptReference {
        id: prompt.id.clone(),
        version: prompt.version.map(Value::from),
        variables: prompt.variables.clone(),
    })
}

/// The messages `model`'s alias prompt puts before a chat completion's own; none when the
/// alias has no prompt.
pub(crate) async fn alias_messages(
    state: &AppState,
    tenant_id: &str,
    model: &str,
) -> Result<Vec<landfall_types::ChatMessage>, ApiError> {
    let Some(reference) = of_alias(state, model) else {
        return Ok(Vec::new());
    };
    let resolved = resolve(state, Some(tenant_id), &reference, "model").await?;
    Ok(resolved.rendered.messages())
}

/// Variables as OpenAI sends them: a plain value, or `{"type": "input_text", "text": …}`.
fn variables(given: &Map<String, Value>) -> Result<Map<String, Value>, String> {
    given
        .iter()
        .map(|(name, value)| {
            let value = match value.get("type").and_then(Value::as_str) {
                Some("input_text") => value.get("text").cloned().unwrap_or(Value::Null),
                Some(kind) if kind.starts_with("input_") => {
                    return Err(format!(
                        "prompt variable `{name}` is an {kind}; only text variables are \
                         supported"
                    ));
                }
                _ => value.clone(),
            };
            Ok((name.clone(), value))
        })
        .collect()
}

fn compile(record: &PromptRecord) -> Result<CompiledPrompt, ApiError> {
    let corrupt = |message: String| {
        ApiError::from(StoreError::Corrupt {
            entity: "prompt",
            id: format!("{}@{}", record.id, record.version),
            message,
        })
    };
    let template: PromptTemplate =
        serde_json::from_value(record.template.clone()).map_err(|e| corrupt(e.to_string()))?;
    template.compile().map_err(|e| corrupt(e.to_string()))
}

/// A template from an admin body, checked, as the document the store keeps.
fn parse(body: Value) -> Result<Value, ApiError> {
    let template: PromptTemplate =
        serde_json::from_value(body).map_err(|error| invalid("(body)", error.to_string()))?;
    let document =
        serde_json::to_value(&template).map_err(|error| invalid("(body)", error.to_string()))?;
    template
        .compile()
        .map_err(|error| invalid("(body)", error.to_string()))?;
    Ok(document)
}

fn check_id(id: &str) -> Result<(), ApiError> {
    let valid = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'.'));
    if valid {
        Ok(())
    } else {
        Err(invalid(
            "id",
            "a prompt id is 1 to 64 letters, digits, `_`, `-` or `.`",
        ))
    }
}

#[derive(Debug, Serialize)]
struct View {
    id: String,
    object: &'static str,
    version: i64,
    created_at: i64,
    #[serde(flatten)]
    template: Value,
}

impl From<PromptRecord> for View {
    fn from(record: PromptRecord) -> Self {
        Self {
            id: record.id,
            object: "prompt",
            version: record.version,
            created_at: record.created_at.div_euclid(1000),
            template: record.template,
        }
    }
}

fn created(view: View) -> Response {
    let mut response = json_response(&view);
    *response.status_mut() = http::StatusCode::CREATED;
    response
}

/// `POST /admin/v1/prompts`: a new prompt, `{"id": …, …template}`, as version 1.
pub(crate) async fn create(
    State(state): State<AppState>,
    AdminJson(mut body): AdminJson<Map<String, Value>>,
) -> Result<Response, ApiError> {
    let id = match body.remove("id") {
        Some(Value::String(id)) => id,
        _ => return Err(invalid("id", "a prompt needs a string `id`")),
    };
    check_id(&id)?;
    let template = parse(Value::Object(body))?;
    let record = PromptRecord {
        id,
        version: 1,
        template,
        created_at: landfall_storage::now_millis(),
    };
    store(&state)?.save_prompt(&record).await.map_err(|error| {
        ApiError::from(match error {
            StoreError::Conflict { .. } => AdminError::Conflict {
                entity: "prompt",
                id: record.id.clone(),
            },
            other => AdminError::Store(other),
        })
    })?;
    Ok(created(View::from(record)))
}

/// `POST /admin/v1/prompts/{id}`: the next version of a prompt.
pub(crate) async fn new_version(
    State(state): State<AppState>,
    Path(id): Path<String>,
    AdminJson(body): AdminJson<Value>,
) -> Result<Response, ApiError> {
    let store = store(&state)?;
    let latest = store
        .get_prompt(&id, None)
        .await?
        .ok_or(ApiError::PromptNotFound {
            id: id.clone(),
            version: None,
        })?;
    let template = parse(body)?;
    let record = PromptRecord {
        id,
        version: latest.version + 1,
        template,
        created_at: landfall_storage::now_millis(),
    };
    // Two saves of the next version at once: the store takes one, the other is a 409.
    store.save_prompt(&record).await.map_err(AdminError::from)?;
    Ok(created(View::from(record)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VersionQuery {
    version: Option<i64>,
}

/// `GET /admin/v1/prompts/{id}[?version=N]`.
pub(crate) async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<VersionQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let version = crate::admin::query(query)?.version;
    let record = store(&state)?
        .get_prompt(&id, version)
        .await?
        .ok_or(ApiError::PromptNotFound { id, version })?;
    Ok(json_response(&View::from(record)))
}

/// `GET /admin/v1/prompts/{id}/versions`.
pub(crate) async fn versions(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let records = store(&state)?.list_prompt_versions(&id).await?;
    if records.is_empty() {
        return Err(ApiError::PromptNotFound { id, version: None });
    }
    let data: Vec<View> = records.into_iter().map(View::from).collect();
    Ok(json_response(&json!({"object": "list", "data": data})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    after: Option<String>,
    limit: Option<u32>,
}

/// `GET /admin/v1/prompts`: the latest version of each prompt.
pub(crate) async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let query = crate::admin::query(query)?;
    let page = crate::admin::page(query.after, query.limit);
    let records = store(&state)?.list_prompts(&page).await?;
    let data: Vec<View> = records.into_iter().map(View::from).collect();
    Ok(crate::admin::page_list(&page, data, |prompt| &prompt.id))
}

/// `DELETE /admin/v1/prompts/{id}`: every version.
pub(crate) async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if !store(&state)?.delete_prompt(&id).await? {
        return Err(ApiError::PromptNotFound { id, version: None });
    }
    Ok(json_response(
        &json!({"id": id, "object": "prompt.deleted", "deleted": true}),
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Preview {
    #[serde(default)]
    version: Option<Value>,
    #[serde(default)]
    variables: Map<String, Value>,
    /// Render as a caller of this tenant would (a template limited to other tenants is 404).
    #[serde(default)]
    tenant_id: Option<String>,
}

/// `POST /admin/v1/prompts/{id}/render`: what a response with these variables would send.
pub(crate) async fn render(
    State(state): State<AppState>,
    Path(id): Path<String>,
    AdminJson(preview): AdminJson<Preview>,
) -> Result<Response, ApiError> {
    let reference = PromptReference {
        id: id.clone(),
        version: preview.version,
        variables: preview.variables,
    };
    let resolved = resolve(
        &state,
        preview.tenant_id.as_deref(),
        &reference,
        "variables",
    )
    .await?;
    Ok(json_response(&json!({
        "id": id,
        "object": "prompt.rendered",
        "version": resolved.version,
        "instructions": resolved.rendered.instructions,
        "messages": resolved.rendered.messages(),
    })))
}
