//! The review queue: answers a `review` rule held, stored durably; the client fetches the
//! released answer by id (`GET /v1/reviews/{id}`, its own tenant only); reviewers list,
//! approve (optionally with an edited answer) and reject through `/admin/v1/reviews`. Every
//! reviewer action is an admin call, so it is in the audit log with the review id in its path.

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use landfall_accounting::RequestLog;
use landfall_governance::Principal;
use landfall_guardrails::Hit;
use landfall_storage::{GuardrailStore, ReviewDecision, ReviewRecord};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::routes::json_response;
use crate::{ApiError, AppState};
use axum::body::Bytes;

const PENDING: &str = "pending";
const APPROVED: &str = "approved";
const REJECTED: &str = "rejected";

fn store(state: &AppState) -> Result<&dyn GuardrailStore, ApiError> {
    state.guardrail_store().ok_or_else(|| {
        ApiError::from(landfall_storage::StoreError::Unavailable(
            "the review queue has no metadata store on this server".to_owned(),
        ))
    })
}

/// Holds `response` for review and returns the review's id.
///
/// # Errors
/// When the store cannot keep it (the answer is then not sent either).
pub(crate) async fn hold(
    state: &AppState,
    principal: &Principal,
    log: &RequestLog,
    model: &str,
    hits: &[Hit],
    response: Value,
) -> Result<String, ApiError> {
    let id = new_id();
    let record = ReviewRecord {
        id: id.clone(),
        tenant_id: principal.tenant.id.clone(),
        key_id: principal.key_id().to_owned(),
        request_id: log.request_id().to_owned(),
        model: model.to_owned(),
        status: PENDING.to_owned(),
        hits: serde_json::to_value(hits).unwrap_or(Value::Null),
        response,
        released: None,
        note: None,
        created_at: landfall_storage::now_millis(),
        decided_at: None,
    };
    store(state)?.create_review(&record).await?;
    Ok(id)
}

/// `rev_`, the time in milliseconds and 64 random bits in hex: ids sort by creation.
fn new_id() -> String {
    let millis = u64::try_from(landfall_storage::now_millis()).unwrap_or(0);
    let random: u64 = rand::random();
    format!("rev_{millis:012x}{random:016x}")
}

/// What the client sees of its review.
#[derive(Debug, Serialize)]
struct ClientView {
    id: String,
    object: &'static str,
    status: String,
    created_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    decided_at: Option<i64>,
    /// The released answer, once approved.
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<Value>,
    /// Why it was rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// `GET /v1/reviews/{id}`.
pub(crate) async fn client_get(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let review = store(&state)?
        .get_review(&id)
        .await?
        .filter(|review| review.tenant_id == principal.tenant.id)
        .ok_or(ApiError::ReviewNotFound { id })?;
    let rejected = review.status == REJECTED;
    Ok(json_response(&ClientView {
        object: "review",
        created_at: review.created_at,
        decided_at: review.decided_at,
        response: review.released,
        reason: if rejected { review.note } else { None },
        status: review.status,
        id: review.id,
    }))
}

/// What a reviewer sees.
#[derive(Debug, Serialize)]
struct AdminView {
    id: String,
    object: &'static str,
    status: String,
    tenant_id: String,
    key_id: String,
    request_id: String,
    model: String,
    hits: Value,
    response: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    released: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    created_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    decided_at: Option<i64>,
}

impl From<ReviewRecord> for AdminView {
    fn from(review: ReviewRecord) -> Self {
        Self {
            id: review.id,
            object: "review",
            status: review.status,
            tenant_id: review.tenant_id,
            key_id: review.key_id,
            request_id: review.request_id,
            model: review.model,
            hits: review.hits,
            response: review.response,
            released: review.released,
            note: review.note,
            created_at: review.created_at,
            decided_at: review.decided_at,
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    status: Option<String>,
    after: Option<String>,
    limit: Option<u32>,
}

/// `GET /admin/v1/reviews?status=pending&after=&limit=`.
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    if let Some(status) = &query.status
        && ![PENDING, APPROVED, REJECTED].contains(&status.as_str())
    {
        return Err(ApiError::InvalidValue {
            message: format!("`status` must be pending, approved or rejected, not `{status}`"),
            param: "status",
        });
    }
    let page = crate::admin::page(query.after, query.limit);
    let reviews = store(&state)?
        .list_reviews(query.status.as_deref(), &page)
        .await?;
    let data: Vec<AdminView> = reviews.into_iter().map(AdminView::from).collect();
    Ok(crate::admin::page_list(&page, data, |review| &review.id))
}

/// `GET /admin/v1/reviews/{id}`.
pub(crate) async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let review = store(&state)?
        .get_review(&id)
        .await?
        .ok_or(ApiError::ReviewNotFound { id })?;
    Ok(json_response(&AdminView::from(review)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Approval {
    /// Replaces the answer's text (the first choice's) before release.
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    note: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Rejection {
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /admin/v1/reviews/{id}/approve` with optional `{"content": "…", "note": "…"}`.
pub(crate) async fn approve(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let approval: Approval = optional_json(&body)?;
    let store = store(&state)?;
    let review = store
        .get_review(&id)
        .await?
        .ok_or_else(|| ApiError::ReviewNotFound { id: id.clone() })?;
    let mut released = review.response;
    if let Some(content) = &approval.content
        && let Some(message) = released.pointer_mut("/choices/0/message")
    {
        message["content"] = Value::String(content.clone());
    }
    decide(
        store,
        &id,
        APPROVED,
        Some(&released),
        approval.note.as_deref(),
    )
    .await
}

/// `POST /admin/v1/reviews/{id}/reject` with optional `{"reason": "…"}`.
pub(crate) async fn reject(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let rejection: Rejection = optional_json(&body)?;
    decide(
        store(&state)?,
        &id,
        REJECTED,
        None,
        rejection.reason.as_deref(),
    )
    .await
}

/// A body that may be empty (then the defaults), else JSON of `T`.
pub(crate) fn optional_json<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        ApiError::InvalidValue {
            message: format!("invalid body at `{path}`: {}", error.inner()),
            param: "body",
        }
    })
}

/// Decides a pending review; one that is not pending is a 409, a missing one a 404.
async fn decide(
    store: &dyn GuardrailStore,
    id: &str,
    status: &'static str,
    released: Option<&Value>,
    note: Option<&str>,
) -> Result<Response, ApiError> {
    let decision = ReviewDecision {
        status,
        released,
        note,
        decided_at: landfall_storage::now_millis(),
    };
    let decided = store.decide_review(id, &decision).await?;
    let review = store
        .get_review(id)
        .await?
        .ok_or_else(|| ApiError::ReviewNotFound { id: id.to_owned() })?;
    if !decided {
        return Err(ApiError::ReviewDecided {
            id: review.id,
            status: if review.status == APPROVED {
                APPROVED
            } else {
                REJECTED
            },
        });
    }
    Ok(json_response(&AdminView::from(review)))
}
