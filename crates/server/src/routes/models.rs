//! `GET /v1/models` and `GET /v1/models/{id}`: the model names clients may use.

use axum::Extension;
use axum::extract::{Path, State};
use axum::response::Response;
use landfall_governance::Principal;
use serde::Serialize;

use crate::routes::json_response;
use crate::{ApiError, AppState};

#[derive(Serialize)]
struct ModelList<'a> {
    object: &'static str,
    data: Vec<Model<'a>>,
}

#[derive(Serialize)]
struct Model<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
}

fn model(id: &str) -> Model<'_> {
    Model {
        id,
        object: "model",
        created: 0,
        owned_by: "landfall",
    }
}

/// The models the caller's key may use.
pub(crate) async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Response {
    let gateway = state.gateway();
    let data = gateway
        .model_names()
        .iter()
        .filter(|name| principal.may_use_model(name))
        .map(|name| model(name))
        .collect();
    json_response(&ModelList {
        object: "list",
        data,
    })
}

pub(crate) async fn retrieve(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if !state.gateway().has_model(&id) || !principal.may_use_model(&id) {
        return Err(ApiError::ModelNotFound { model: id });
    }
    Ok(json_response(&model(&id)))
}
