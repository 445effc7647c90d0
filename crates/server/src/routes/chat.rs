//! `POST /v1/chat/completions`.

use axum::extract::State;
use axum::response::Response;
use landfall_types::ChatRequest;

use crate::extract::JsonBody;
use crate::routes::{json_response, served_headers};
use crate::{ApiError, AppState, sse};

pub(crate) async fn completions(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<ChatRequest>,
) -> Result<Response, ApiError> {
    validate(&request, &state)?;
    let gateway = state.gateway();
    if request.is_stream() {
        let include_usage = request.wants_stream_usage();
        let served = gateway.chat_stream(&request).await?;
        let mut response = sse::response(served.value, include_usage);
        served_headers(&mut response, &served.target, served.attempts);
        return Ok(response);
    }
    let served = gateway.chat(&request).await?;
    let mut response = json_response(&served.value);
    served_headers(&mut response, &served.target, served.attempts);
    Ok(response)
}

fn validate(request: &ChatRequest, state: &AppState) -> Result<(), ApiError> {
    if request.model.is_empty() {
        return Err(ApiError::InvalidValue {
            message: "`model` must not be empty".to_owned(),
            param: "model",
        });
    }
    if !state.gateway().has_model(&request.model) {
        return Err(ApiError::ModelNotFound {
            model: request.model.clone(),
        });
    }
    if request.messages.is_empty() {
        return Err(ApiError::InvalidValue {
            message: "`messages` must contain at least one message".to_owned(),
            param: "messages",
        });
    }
    if request.stream_options.is_some() && !request.is_stream() {
        return Err(ApiError::InvalidValue {
            message: "`stream_options` is only allowed when `stream` is true".to_owned(),
            param: "stream_options",
        });
    }
    Ok(())
}
