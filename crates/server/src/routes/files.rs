//! OpenAI's Files API: `POST /v1/files` (multipart upload), `GET /v1/files[/{id}]`,
//! `GET /v1/files/{id}/content`, `DELETE /v1/files/{id}`. Files belong to the caller's tenant.

use std::collections::HashMap;

use axum::Extension;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::HeaderValue;
use landfall_governance::Principal;
use landfall_knowledge::Knowledge;
use landfall_storage::FileRecord;
use serde_json::{Value, json};

use crate::routes::json_response;
use crate::routes::knowledge::{knowledge, list_page, listed, seconds};
use crate::{ApiError, AppState};

pub(crate) fn file_json(file: &FileRecord) -> Value {
    json!({
        "id": file.id,
        "object": "file",
        "bytes": file.bytes,
        "created_at": seconds(file.created_at),
        "expires_at": file.expires_at.map(seconds),
        "filename": file.filename,
        "purpose": file.purpose,
        "status": "processed",
        "status_details": null,
    })
}

pub(crate) async fn upload(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let knowledge = knowledge(&state)?;
    let mut multipart = multipart.map_err(|rejection| ApiError::UnsupportedMediaType {
        content_type: format!("{rejection} (expected multipart/form-data)"),
    })?;
    let limit_bytes = usize::try_from(knowledge.max_file_bytes()).unwrap_or(usize::MAX);
    let mut purpose = None;
    let mut file: Option<(String, bytes::Bytes)> = None;
    let mut expiry = std::collections::HashMap::new();
    loop {
        let field = multipart
            .next_field()
            .await
            .map_err(|error| multipart_error(&error, limit_bytes))?;
        let Some(field) = field else { break };
        match field.name() {
            Some("purpose") => {
                let text = field
                    .text()
                    .await
                    .map_err(|error| multipart_error(&error, limit_bytes))?;
                purpose = Some(text);
            }
            Some("file") => {
                let name = field.file_name().unwrap_or_default().to_owned();
                let bytes = field
                    .bytes()
                    .await
                    .map_err(|error| multipart_error(&error, limit_bytes))?;
                file = Some((name, bytes));
            }
            Some(name @ ("expires_after[anchor]" | "expires_after[seconds]")) => {
                let name = name.to_owned();
                let text = field
                    .text()
                    .await
                    .map_err(|error| multipart_error(&error, limit_bytes))?;
                expiry.insert(name, text);
            }
            // Other fields are read and ignored.
            _ => {
                field
                    .bytes()
                    .await
                    .map_err(|error| multipart_error(&error, limit_bytes))?;
            }
        }
    }
    let Some((filename, content)) = file else {
        return Err(ApiError::InvalidValue {
            message: "the multipart body has no `file` field".to_owned(),
            param: "file",
        });
    };
    let Some(purpose) = purpose else {
        return Err(ApiError::InvalidValue {
            message: "the multipart body has no `purpose` field".to_owned(),
            param: "purpose",
        });
    };
    let expires_after_seconds = expires_after(&expiry)?;
    let record = knowledge
        .upload_file(
            &principal.tenant.id,
            &filename,
            &purpose,
            &content,
            expires_after_seconds,
        )
        .await?;
    Ok(json_response(&file_json(&record)))
}

/// OpenAI's `expires_after[anchor]=created_at` and `expires_after[seconds]=N` form fields.
fn expires_after(
    fields: &std::collections::HashMap<String, String>,
) -> Result<Option<u64>, ApiError> {
    let anchor = fields
        .get("expires_after[anchor]")
        .map(|anchor| anchor.trim());
    let seconds = fields
        .get("expires_after[seconds]")
        .map(|seconds| seconds.trim());
    match (anchor, seconds) {
        (None, None) => Ok(None),
        (Some("created_at") | None, Some(seconds)) => {
            seconds
                .parse()
                .map(Some)
                .map_err(|_| ApiError::InvalidValue {
                    message: format!(
                        "expires_after[seconds] must be a whole number, got `{seconds}`"
                    ),
                    param: "expires_after[seconds]",
                })
        }
        (Some("created_at"), None) => Err(ApiError::InvalidValue {
            message: "expires_after[seconds] is required with expires_after[anchor]".to_owned(),
            param: "expires_after[seconds]",
        }),
        (Some(other), _) => Err(ApiError::InvalidValue {
            message: format!("expires_after[anchor] must be `created_at`, got `{other}`"),
            param: "expires_after[anchor]",
        }),
    }
}

fn multipart_error(
    error: &axum::extract::multipart::MultipartError,
    limit_bytes: usize,
) -> ApiError {
    if error.status() == http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge { limit_bytes }
    } else {
        ApiError::MalformedJson {
            detail: format!(
                "the multipart body could not be read: {}",
                error.body_text()
            ),
        }
    }
}

pub(crate) async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let knowledge = knowledge(&state)?;
    let (page, descending) = list_page(&params)?;
    let purpose = params.get("purpose").map(String::as_str);
    let mut files = knowledge
        .list_files(&principal.tenant.id, purpose, &page.fetch(), descending)
        .await?;
    let has_more = page.trim(&mut files);
    Ok(json_response(&listed(
        files.iter().map(file_json).collect(),
        has_more,
    )))
}

pub(crate) async fn retrieve(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let file = knowledge(&state)?
        .get_file(&principal.tenant.id, &id)
        .await?;
    Ok(json_response(&file_json(&file)))
}

pub(crate) async fn content(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let knowledge: &Knowledge = knowledge(&state)?;
    let bytes = knowledge.file_content(&principal.tenant.id, &id).await?;
    let mut response = bytes.into_response();
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(response)
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    knowledge(&state)?
        .delete_file(&principal.tenant.id, &id)
        .await?;
    Ok(json_response(
        &json!({"id": id, "object": "file", "deleted": true}),
    ))
}
