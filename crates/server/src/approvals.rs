//! `/admin/v1/approvals`: tool calls waiting for a person (`require_approval`). Reviewers
//! list them, read the arguments, and approve or reject; the waiting response goes on (or
//! tells the model the call was refused) within a fraction of a second. Every decision is an
//! admin call, so it is in the audit log with the approval id in its path.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use landfall_storage::{ApprovalRecord, ResponseStore};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::responses::approval::{APPROVED, EXPIRED, PENDING, REJECTED};
use crate::routes::json_response;
use crate::{ApiError, AppState};

fn store(state: &AppState) -> Result<std::sync::Arc<dyn ResponseStore>, ApiError> {
    state.response_store().ok_or_else(|| {
        ApiError::from(landfall_storage::StoreError::Unavailable(
            "approvals need a metadata store, and this server has none".to_owned(),
        ))
    })
}

#[derive(Debug, Serialize)]
struct View {
    id: String,
    object: &'static str,
    status: String,
    tenant_id: String,
    key_id: String,
    request_id: String,
    tool: String,
    entry: String,
    arguments: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    created_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    decided_at: Option<i64>,
}

impl From<ApprovalRecord> for View {
    fn from(approval: ApprovalRecord) -> Self {
        Self {
            id: approval.id,
            object: "tool_approval",
            status: approval.status,
            tenant_id: approval.tenant_id,
            key_id: approval.key_id,
            request_id: approval.request_id,
            tool: approval.tool,
            entry: approval.entry,
            arguments: approval.arguments,
            reason: approval.reason,
            created_at: approval.created_at,
            decided_at: approval.decided_at,
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    status: Option<String>,
    after: Option<String>,
    limit: Option<u32>,
}

pub(crate) async fn list(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    if let Some(status) = &query.status
        && ![PENDING, APPROVED, REJECTED, EXPIRED].contains(&status.as_str())
    {
        return Err(ApiError::InvalidValue {
            message: format!(
                "`status` must be pending, approved, rejected or expired, not `{status}`"
            ),
            param: "status",
        });
    }
    let page = crate::admin::page(query.after, query.limit);
    let approvals = store(&state)?
        .list_approvals(query.status.as_deref(), &page)
        .await?;
    let data: Vec<View> = approvals.into_iter().map(View::from).collect();
    Ok(crate::admin::page_list(&page, data, |approval| {
        &approval.id
    }))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let approval = store(&state)?
        .get_approval(&id)
        .await?
        .ok_or(ApiError::ApprovalNotFound { id })?;
    Ok(json_response(&View::from(approval)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Decision {
    #[serde(default)]
    reason: Option<String>,
}

pub(crate) async fn approve(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    decide(&state, &id, APPROVED, &body).await
}

pub(crate) async fn reject(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    decide(&state, &id, REJECTED, &body).await
}

/// Decides a pending approval; one decided or expired already is a 409, a missing one a 404.
async fn decide(
    state: &AppState,
    id: &str,
    status: &'static str,
    body: &[u8],
) -> Result<Response, ApiError> {
    let decision: Decision = crate::reviews::optional_json(body)?;
    let store = store(state)?;
    let decided = store
        .decide_approval(
            id,
            status,
            decision.reason.as_deref(),
            landfall_storage::now_millis(),
        )
        .await?;
    let approval = store
        .get_approval(id)
        .await?
        .ok_or_else(|| ApiError::ApprovalNotFound { id: id.to_owned() })?;
    if !decided {
        return Err(ApiError::ApprovalDecided {
            id: approval.id,
            status: approval.status,
        });
    }
    Ok(json_response(&View::from(approval)))
}
