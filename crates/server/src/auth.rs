use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use landfall_accounting::RequestLog;

use crate::{ApiError, AppState};

/// Resolves the caller of a `/v1/…` request from its bearer key and hands the
/// [`Principal`](landfall_governance::Principal) to the handler as a request extension.
pub(crate) async fn require_key(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let authorization = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    let principal = state.governance().authenticate(authorization).await?;
    if let Some(log) = request.extensions().get::<RequestLog>() {
        log.principal(&principal.tenant.id, principal.key_id());
    }
    request.extensions_mut().insert(principal);
    Ok(next.run(request).await)
}

/// Requires `Authorization: Bearer <auth.admin_key>`.
pub(crate) async fn require_admin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or_default();
    match state.governance().check_admin_key(presented) {
        None => Err(ApiError::Unauthorized {
            reason: "the admin API is disabled: set auth.admin_key",
        }),
        Some(false) => Err(ApiError::Unauthorized {
            reason: "incorrect admin key provided",
        }),
        Some(true) => Ok(next.run(request).await),
    }
}
