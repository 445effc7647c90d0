//! `/admin/v1/…`: tenants and API keys (local models and reloads in `model_admin`), behind
//! the admin key. `DELETE` revokes (records are
//! kept for the audit trail). Bodies that do not fit get 400 naming the field.

use axum::Router;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::response::Response;
use axum::routing::{get, post};
use http::StatusCode;
use landfall_governance::{AdminError, KeyPatch, NewKey, NewTenant, TenantPatch};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::extract::JsonBody;
use crate::routes::json_response;
use crate::{
    ApiError, AppState, approvals, audit, auth, guardrail_admin, model_admin, observe, prompts,
    reviews, tools,
};

pub(crate) fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/tenants", get(list_tenants).post(create_tenant))
        .route(
            "/tenants/{id}",
            get(get_tenant).patch(update_tenant).delete(revoke_tenant),
        )
        .route("/keys", get(list_keys).post(create_key))
        .route("/stats", get(stats))
        .route("/audit", get(audit::list))
        .route("/usage", get(audit::usage_report))
        .route(
            "/keys/{id}",
            get(get_key).patch(update_key).delete(revoke_key),
        )
        .route("/models", get(model_admin::list))
        .route(
            "/models/{name}",
            get(model_admin::retrieve)
                .put(model_admin::put)
                .delete(model_admin::delete),
        )
        .route("/models/{name}/load", post(model_admin::load))
        .route("/models/{name}/unload", post(model_admin::unload))
        .route("/reload", post(model_admin::reload))
        .route("/tools", get(tools::list))
        .route("/prompts", get(prompts::list).post(prompts::create))
        .route(
            "/prompts/{id}",
            get(prompts::get)
                .post(prompts::new_version)
                .delete(prompts::delete),
        )
        .route("/prompts/{id}/versions", get(prompts::versions))
        .route("/prompts/{id}/render", post(prompts::render))
        .route("/approvals", get(approvals::list))
        .route("/approvals/{id}", get(approvals::get))
        .route("/approvals/{id}/approve", post(approvals::approve))
        .route("/approvals/{id}/reject", post(approvals::reject))
        .route("/reviews", get(reviews::list))
        .route("/reviews/{id}", get(reviews::get))
        .route("/reviews/{id}/approve", post(reviews::approve))
        .route("/reviews/{id}/reject", post(reviews::reject))
        .route(
            "/guardrails",
            get(guardrail_admin::show).put(guardrail_admin::replace),
        )
        .route("/guardrails/versions", get(guardrail_admin::versions))
        .route("/guardrails/check", post(guardrail_admin::check))
        .route(
            "/guardrails/rules/{id}",
            get(guardrail_admin::get_rule)
                .put(guardrail_admin::put_rule)
                .delete(guardrail_admin::delete_rule),
        )
        .route(
            "/guardrails/policies/{id}",
            get(guardrail_admin::get_policy)
                .put(guardrail_admin::put_policy)
                .delete(guardrail_admin::delete_policy),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_admin,
        ))
        // Outermost, so refused admin calls are audited too.
        .route_layer(axum::middleware::from_fn_with_state(state, observe::admin))
}

/// A JSON body whose schema errors are 400s naming the field, as admin clients expect.
pub(crate) struct AdminJson<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<AppState> for AdminJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        match JsonBody::<T>::from_request(request, state).await {
            Ok(JsonBody(value)) => Ok(Self(value)),
            Err(ApiError::InvalidBody { detail, param }) => Err(AdminError::Invalid {
                field: param.unwrap_or_else(|| "(body)".to_owned()),
                message: detail,
            }
            .into()),
            Err(other) => Err(other),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: u32,
    #[serde(default)]
    tenant_id: Option<String>,
}

fn created(value: &impl serde::Serialize) -> Response {
    let mut response = json_response(value);
    *response.status_mut() = StatusCode::CREATED;
    response
}

/// The store page of an admin list of at most `limit` (default 20, at most 100) items after
/// `after`: one more than shown is asked for, to know whether there are more.
pub(crate) fn page(after: Option<String>, limit: Option<u32>) -> landfall_storage::PageRequest {
    landfall_storage::PageRequest {
        after,
        limit: limit.unwrap_or(20).clamp(1, 100) + 1,
    }
}

/// The list body of `items`, fetched with `page`.
pub(crate) fn page_list<T: serde::Serialize>(
    page: &landfall_storage::PageRequest,
    mut items: Vec<T>,
    id: impl Fn(&T) -> &str,
) -> Response {
    let shown = page.limit.saturating_sub(1) as usize;
    let has_more = items.len() > shown;
    items.truncate(shown);
    json_response(&serde_json::json!({
        "object": "list",
        "first_id": items.first().map(&id),
        "last_id": items.last().map(&id),
        "has_more": has_more,
        "data": items,
    }))
}

/// A query string, or 400 naming what is wrong with it.
pub(crate) fn query<T>(
    query: Result<Query<T>, axum::extract::rejection::QueryRejection>,
) -> Result<T, ApiError> {
    query.map(|Query(query)| query).map_err(|rejection| {
        AdminError::Invalid {
            field: "(query)".to_owned(),
            message: rejection.body_text(),
        }
        .into()
    })
}

async fn create_tenant(
    State(state): State<AppState>,
    AdminJson(input): AdminJson<NewTenant>,
) -> Result<Response, ApiError> {
    Ok(created(
        &state.governance().admin().create_tenant(input).await?,
    ))
}

async fn list_tenants(
    State(state): State<AppState>,
    list: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let list = query(list)?;
    Ok(json_response(
        &state
            .governance()
            .admin()
            .tenants(list.after, list.limit)
            .await?,
    ))
}

async fn get_tenant(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(json_response(
        &state.governance().admin().tenant(&id).await?,
    ))
}

async fn update_tenant(
    State(state): State<AppState>,
    Path(id): Path<String>,
    AdminJson(patch): AdminJson<TenantPatch>,
) -> Result<Response, ApiError> {
    Ok(json_response(
        &state.governance().admin().update_tenant(&id, patch).await?,
    ))
}

async fn revoke_tenant(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(json_response(
        &state.governance().admin().revoke_tenant(&id).await?,
    ))
}

async fn create_key(
    State(state): State<AppState>,
    AdminJson(input): AdminJson<NewKey>,
) -> Result<Response, ApiError> {
    Ok(created(
        &state.governance().admin().create_key(input).await?,
    ))
}

async fn list_keys(
    State(state): State<AppState>,
    list: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let list = query(list)?;
    let page = state
        .governance()
        .admin()
        .keys(list.tenant_id.as_deref(), list.after, list.limit)
        .await?;
    Ok(json_response(&page))
}

async fn get_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(json_response(&state.governance().admin().key(&id).await?))
}

async fn update_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
    AdminJson(patch): AdminJson<KeyPatch>,
) -> Result<Response, ApiError> {
    Ok(json_response(
        &state.governance().admin().update_key(&id, patch).await?,
    ))
}

async fn revoke_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(json_response(
        &state.governance().admin().revoke_key(&id).await?,
    ))
}

/// Failures governance absorbed (limit backend, cache, ledger).
async fn stats(State(state): State<AppState>) -> Response {
    json_response(&state.governance().stats())
}
