pub(crate) mod chat;
pub(crate) mod embeddings;
pub(crate) mod health;
pub(crate) mod models;

use axum::response::Response;
use http::HeaderValue;
use landfall_governance::RateLimitHeaders;

use crate::{ATTEMPTS_HEADER, TARGET_HEADER};

/// Says which target served the response and after how many upstream calls.
pub(crate) fn served_headers(response: &mut Response, target: &str, attempts: u32) {
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(target) {
        headers.insert(TARGET_HEADER, value);
    }
    headers.insert(ATTEMPTS_HEADER, HeaderValue::from(attempts));
}

/// OpenAI's `x-ratelimit-*` headers for the tightest limits the request passed.
pub(crate) fn rate_limit_headers(response: &mut Response, limits: &RateLimitHeaders) {
    let headers = response.headers_mut();
    for (name, value) in limits.pairs() {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
}

/// A JSON response from an already-serializable value.
pub(crate) fn json_response(value: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut response = Response::new(axum::body::Body::from(body));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(error) => {
            tracing::error!(%error, "cannot serialize a response");
            let mut response = Response::new(axum::body::Body::empty());
            *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
            response
        }
    }
}
