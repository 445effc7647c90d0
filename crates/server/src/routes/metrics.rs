//! `GET /metrics`: every metric in the OpenMetrics text format Prometheus scrapes.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::HeaderValue;

use crate::AppState;

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub(crate) async fn render(State(state): State<AppState>) -> Response {
    let breakers = state.gateway().breaker_states();
    let text = state.accounting().render_metrics(&breakers);
    let mut response = text.into_response();
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(CONTENT_TYPE),
    );
    response
}
