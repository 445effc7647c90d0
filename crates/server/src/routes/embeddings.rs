//! `POST /v1/embeddings`.

use axum::extract::State;
use axum::response::Response;
use landfall_types::{EmbeddingInput, EmbeddingRequest};

use crate::extract::JsonBody;
use crate::routes::{json_response, served_headers};
use crate::{ApiError, AppState};

pub(crate) async fn create(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<EmbeddingRequest>,
) -> Result<Response, ApiError> {
    if !state.gateway().has_model(&request.model) {
        return Err(ApiError::ModelNotFound {
            model: request.model,
        });
    }
    let empty = match &request.input {
        EmbeddingInput::Text(text) => text.is_empty(),
        EmbeddingInput::Texts(texts) => texts.is_empty() || texts.iter().any(String::is_empty),
        EmbeddingInput::Tokens(tokens) => tokens.is_empty(),
        EmbeddingInput::TokenBatches(batches) => {
            batches.is_empty() || batches.iter().any(Vec::is_empty)
        }
    };
    if empty {
        return Err(ApiError::InvalidValue {
            message: "`input` must not be empty or contain empty items".to_owned(),
            param: "input",
        });
    }
    let served = state.gateway().embed(&request).await?;
    let mut response = json_response(&served.value);
    served_headers(&mut response, &served.target, served.attempts);
    Ok(response)
}
