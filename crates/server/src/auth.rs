use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::{ApiError, AppState};

/// Requires `Authorization: Bearer <key>` with a configured key. Installed only when keys are
/// configured.
pub(crate) async fn require_key(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let keys = &state.inner.api_keys;
    let presented = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(presented) = presented else {
        return Err(ApiError::Unauthorized {
            reason: "missing bearer API key in the Authorization header",
        });
    };
    if !keys
        .iter()
        .any(|key| constant_time_eq(key.as_bytes(), presented.as_bytes()))
    {
        return Err(ApiError::Unauthorized {
            reason: "incorrect API key provided",
        });
    }
    Ok(next.run(request).await)
}

/// Compares without an early exit, so response time does not reveal how much of a key matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter()
        .zip(b)
        .fold(0u8, |difference, (x, y)| difference | (x ^ y))
        == 0
}
