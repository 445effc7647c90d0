//! `POST /v1/embeddings`.

use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use landfall_accounting::RequestLog;
use landfall_gateway::{Operation, Served};
use landfall_governance::{Demand, Principal, RateLimitHeaders, Usage, text_tokens};
use landfall_guardrails::Stage;
use landfall_types::{EmbeddingInput, EmbeddingRequest, EmbeddingResponse};

use crate::extract::JsonBody;
use crate::routes::chat::token_usage;
use crate::routes::{json_response, rate_limit_headers, served_headers};
use crate::{ApiError, AppState};

pub(crate) async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(log): Extension<RequestLog>,
    JsonBody(request): JsonBody<EmbeddingRequest>,
) -> Response {
    let mut limits = RateLimitHeaders::default();
    log.model(Operation::Embeddings, &request.model, false);
    if log.keeps_bodies() {
        log.request_body(&request);
    }
    let mut response = match serve(&state, &principal, &log, request, &mut limits).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    rate_limit_headers(&mut response, &limits);
    response
}

async fn serve(
    state: &AppState,
    principal: &Principal,
    log: &RequestLog,
    mut request: EmbeddingRequest,
    limits: &mut RateLimitHeaders,
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
    let governance = state.governance();
    governance.authorize_model(principal, &request.model)?;
    let input_hits = match crate::guard::select(state, principal, &request.model) {
        Some(selection) => {
            let texts: Vec<&mut String> = match &mut request.input {
                EmbeddingInput::Text(text) => vec![text],
                EmbeddingInput::Texts(texts) => texts.iter_mut().collect(),
                // Token ids carry no text the rules could read.
                EmbeddingInput::Tokens(_) | EmbeddingInput::TokenBatches(_) => Vec::new(),
            };
            crate::guard::check_texts(&selection, Stage::Input, texts.into_iter(), log)?
        }
        None => Vec::new(),
    };
    let prompt_tokens = input_tokens(&request.input);
    let demand = Demand {
        model: &request.model,
        prompt_tokens,
        completion_tokens: 0,
        price: state.gateway().reservation_price(&request.model),
    };
    let admission = governance.admit(principal, &demand).await?;
    *limits = admission.headers();
    let served = state.gateway().embed(&request).await?;
    log.served(&served.target, served.attempts, served.upstream);
    let usage = settled_usage(&served, prompt_tokens);
    log.usage(token_usage(&usage, served.value.usage.is_some()));
    admission.settle(&served.target, usage).await;
    let mut response = json_response(&served.value);
    served_headers(&mut response, &served.target, served.attempts);
    crate::guard::header(&mut response, &input_hits);
    Ok(response)
}

/// What an embeddings call used: the upstream's count (else the estimate), priced.
pub(crate) fn settled_usage(served: &Served<EmbeddingResponse>, estimate: u64) -> Usage {
    let used = served
        .value
        .usage
        .as_ref()
        .map_or(estimate, |usage| usage.prompt_tokens);
    Usage {
        input_tokens: used,
        cost_nanos: served.price.map_or(0, |price| price.cost_of(used, 0, 0)),
        ..Usage::default()
    }
}

/// The tokens of an embeddings input: counted for token ids, estimated for text.
pub(crate) fn input_tokens(input: &EmbeddingInput) -> u64 {
    match input {
        EmbeddingInput::Text(text) => text_tokens(text),
        EmbeddingInput::Texts(texts) => texts.iter().map(|text| text_tokens(text)).sum(),
        EmbeddingInput::Tokens(tokens) => tokens.len() as u64,
        EmbeddingInput::TokenBatches(batches) => {
            batches.iter().map(|batch| batch.len() as u64).sum()
        }
    }
}
