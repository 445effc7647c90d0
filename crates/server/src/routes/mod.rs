pub(crate) mod chat;
pub(crate) mod embeddings;
pub(crate) mod files;
pub(crate) mod grounding;
pub(crate) mod health;
pub(crate) mod knowledge;
pub(crate) mod metrics;
pub(crate) mod models;
pub(crate) mod vector_stores;

use axum::response::Response;
use http::{HeaderName, HeaderValue};
use landfall_governance::{RateLimitHeaders, duration_text};

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
    // Names built at compile time and numbers straight into values: this runs on every
    // governed response.
    const NAMES: [[HeaderName; 3]; 2] = [
        [
            HeaderName::from_static("x-ratelimit-limit-requests"),
            HeaderName::from_static("x-ratelimit-remaining-requests"),
            HeaderName::from_static("x-ratelimit-reset-requests"),
        ],
        [
            HeaderName::from_static("x-ratelimit-limit-tokens"),
            HeaderName::from_static("x-ratelimit-remaining-tokens"),
            HeaderName::from_static("x-ratelimit-reset-tokens"),
        ],
    ];
    let headers = response.headers_mut();
    for ([limit, remaining, reset], state) in
        NAMES.into_iter().zip([limits.requests, limits.tokens])
    {
        let Some(state) = state else { continue };
        headers.insert(limit, HeaderValue::from(state.limit));
        headers.insert(remaining, HeaderValue::from(state.remaining));
        if let Ok(value) = HeaderValue::from_str(&duration_text(state.reset_ms)) {
            headers.insert(reset, value);
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
