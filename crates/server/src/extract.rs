//! Request bodies: JSON only, within the size limit, with errors that say what is wrong and
//! where.

use axum::extract::{FromRequest, Request};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::{ApiError, AppState};

/// A JSON body parsed into `T`.
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        check_content_type(request.headers())?;
        let limit_bytes = state.inner.max_body_bytes;
        let declared_too_large = request
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<usize>().ok())
            .is_some_and(|length| length > limit_bytes);
        if declared_too_large {
            return Err(ApiError::PayloadTooLarge { limit_bytes });
        }
        let bytes = axum::body::to_bytes(request.into_body(), limit_bytes)
            .await
            .map_err(|error| {
                if is_length_limit(&error) {
                    ApiError::PayloadTooLarge { limit_bytes }
                } else {
                    ApiError::MalformedJson {
                        detail: format!("the body could not be read: {error}"),
                    }
                }
            })?;
        parse(&bytes).map(JsonBody)
    }
}

fn check_content_type(headers: &http::HeaderMap) -> Result<(), ApiError> {
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .map(|value| value.to_str().unwrap_or("(not text)"));
    let Some(content_type) = content_type else {
        return Err(ApiError::UnsupportedMediaType {
            content_type: "(none)".to_owned(),
        });
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let is_json = essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"));
    if is_json {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType {
            content_type: content_type.to_owned(),
        })
    }
}

fn is_length_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if cause.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// Parses on the fast path; on failure parses again tracking the path, for the message.
fn parse<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice::<T>(bytes).map_err(|error| describe::<T>(bytes, &error))
}

fn describe<T: DeserializeOwned>(bytes: &Bytes, error: &serde_json::Error) -> ApiError {
    if !matches!(error.classify(), serde_json::error::Category::Data) {
        return ApiError::MalformedJson {
            detail: error.to_string(),
        };
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let Err(tracked) = serde_path_to_error::deserialize::<_, T>(&mut deserializer) else {
        return ApiError::InvalidBody {
            detail: error.to_string(),
            param: None,
        };
    };
    let path = tracked.path().to_string();
    let param = (path != ".").then_some(path);
    let detail = match &param {
        Some(path) => format!("invalid value at `{path}`: {}", tracked.inner()),
        None => tracked.inner().to_string(),
    };
    ApiError::InvalidBody { detail, param }
}
