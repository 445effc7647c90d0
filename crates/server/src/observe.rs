//! Following each request: the `x-request-id` (accepted when well-formed, else generated, and
//! always returned), the `request` span every other span of the request nests in, and the
//! [`RequestLog`] that handlers fill in and that becomes the request's metrics and audit record.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, OriginalUri, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use landfall_accounting::{Failure, RecordKind, RequestLog, RequestStart};
use rand::Rng;
use tracing::Instrument;

use crate::AppState;

/// Continues a trace the caller started: makes the `request` span a child of the context its
/// headers carry (W3C `traceparent`, say). The binary plugs in its tracing backend here, so
/// the server knows no tracing protocol.
pub trait TraceContext: Send + Sync {
    fn continue_trace(&self, headers: &HeaderMap, span: &tracing::Span);
}

/// Request header a client may set to name its request; echoed on every response.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest accepted client-chosen request id.
const MAX_REQUEST_ID_LENGTH: usize = 128;
/// Largest admin request body kept in the audit record.
const MAX_ADMIN_BODY_BYTES: usize = 64 * 1024;

/// Follows a `/v1/…` request.
pub(crate) async fn api(State(state): State<AppState>, request: Request, next: Next) -> Response {
    follow(&state, RecordKind::Request, request, next).await
}

/// Follows an `/admin/v1/…` call, keeping its JSON body (if small) in the audit record.
pub(crate) async fn admin(State(state): State<AppState>, request: Request, next: Next) -> Response {
    follow(&state, RecordKind::Admin, request, next).await
}

async fn follow(state: &AppState, kind: RecordKind, mut request: Request, next: Next) -> Response {
    let request_id = request_id(request.headers());
    let route = route_name(request.extensions().get::<MatchedPath>());
    let start = RequestStart {
        kind,
        request_id: request_id.clone(),
        method: request.method().as_str().to_owned(),
        route,
        // Nested routers see the path without their prefix; the record keeps the whole path.
        path: request
            .extensions()
            .get::<OriginalUri>()
            .map_or_else(|| request.uri().path(), |OriginalUri(uri)| uri.path())
            .to_owned(),
        client_addr: request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| *addr),
        user_agent: request
            .headers()
            .get(http::header::USER_AGENT)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned),
    };
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %request.method(),
        route,
        status = tracing::field::Empty,
    );
    if let Some(context) = state.trace_context() {
        context.continue_trace(request.headers(), &span);
    }
    let log = state.accounting().begin(start);
    if kind == RecordKind::Admin {
        log.principal_admin();
        request = keep_admin_body(request, &log).await;
    }
    request.extensions_mut().insert(log.clone());
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.record("status", status);
    log.respond(status, response.extensions().get::<Failure>().copied());
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// The client's `x-request-id` when it is short and printable, else a new `req_<32 hex>`.
fn request_id(headers: &HeaderMap) -> String {
    let given = headers
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|id| {
            !id.is_empty()
                && id.len() <= MAX_REQUEST_ID_LENGTH
                && id
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || b"-_.:/+=".contains(&byte))
        });
    match given {
        Some(id) => id.to_owned(),
        None => format!("req_{:032x}", rand::rng().random::<u128>()),
    }
}

/// The route pattern as a static name (metrics labels must not grow with paths).
fn route_name(matched: Option<&MatchedPath>) -> &'static str {
    const ROUTES: &[&str] = &[
        "/v1/chat/completions",
        "/v1/embeddings",
        "/v1/models",
        "/v1/models/{*id}",
        "/v1/responses",
        "/v1/responses/{id}",
        "/admin/v1/tenants",
        "/admin/v1/tenants/{id}",
        "/admin/v1/keys",
        "/admin/v1/keys/{id}",
        "/admin/v1/stats",
        "/admin/v1/audit",
        "/admin/v1/usage",
    ];
    matched
        .and_then(|matched| ROUTES.iter().find(|route| **route == matched.as_str()))
        .copied()
        .unwrap_or("other")
}

/// Reads a small JSON body of a write into the record, and puts it back for the handler.
async fn keep_admin_body(request: Request, log: &RequestLog) -> Request {
    if !matches!(
        *request.method(),
        Method::POST | Method::PATCH | Method::PUT
    ) {
        return request;
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_ADMIN_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(_) => {
            // Too large or broken: the handler's extractor reports it; the record says so.
            log.request_body(&serde_json::json!({ "unreadable": true }));
            return Request::from_parts(parts, Body::empty());
        }
    };
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) {
        log.request_body(&value);
    }
    Request::from_parts(parts, Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_ids_are_kept_and_others_replaced() {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_static("abc-123_x.y:z"));
        assert_eq!(request_id(&headers), "abc-123_x.y:z");
        for bad in ["", "has space", "<script>"] {
            headers.insert(REQUEST_ID_HEADER, HeaderValue::from_str(bad).unwrap());
            let id = request_id(&headers);
            assert!(
                id.starts_with("req_") && id.len() == 36,
                "{bad:?} gave {id}"
            );
        }
        headers.insert(
            REQUEST_ID_HEADER,
            HeaderValue::from_str(&"a".repeat(129)).unwrap(),
        );
        assert!(request_id(&headers).starts_with("req_"));
        assert_ne!(request_id(&HeaderMap::new()), request_id(&HeaderMap::new()));
    }
}
