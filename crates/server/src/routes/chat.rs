//! `POST /v1/chat/completions`: scope, shedding, limits and budgets, the response cache, then
//! the gateway; the admission is settled with the exact usage (for a stream, when it ends).

use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue};
use landfall_governance::{
    CACHE_REQUEST_HEADER, CachedReply, Principal, RateLimitHeaders, Shed, Usage,
};
use landfall_types::ChatRequest;

use crate::extract::JsonBody;
use crate::routes::{json_response, rate_limit_headers, served_headers};
use crate::{ApiError, AppState, CACHE_HEADER, SHED_HEADER, sse};

pub(crate) async fn completions(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<ChatRequest>,
) -> Response {
    let mut limits = RateLimitHeaders::default();
    let mut response = match serve(&state, &principal, &headers, request, &mut limits).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    rate_limit_headers(&mut response, &limits);
    response
}

async fn serve(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    mut request: ChatRequest,
    limits: &mut RateLimitHeaders,
) -> Result<Response, ApiError> {
    validate(&request, state)?;
    let governance = state.governance();
    let gateway = state.gateway();
    governance.authorize_model(principal, &request.model)?;
    let shed = governance.shed(&mut request)?;
    let demand = governance.chat_demand(&request, gateway.reservation_price(&request.model));
    let prompt_estimate = demand.prompt_tokens;
    let admission = governance.admit(principal, &demand).await?;
    *limits = admission.headers();

    let cache_choice = headers
        .get(CACHE_REQUEST_HEADER)
        .and_then(|value| value.to_str().ok());
    let cache_key = governance.cache_key(principal, &request, cache_choice);
    let include_usage = request.wants_stream_usage();
    if let Some(key) = &cache_key
        && let Some(reply) = governance.cached(key).await
    {
        let cached = Usage {
            cache_hit: true,
            ..Usage::default()
        };
        admission.settle("cache", cached).await;
        let mut response = match reply {
            CachedReply::Completion { response } => json_response(&response),
            CachedReply::Stream { chunks } => sse::response(
                Box::pin(futures::stream::iter(chunks.into_iter().map(Ok))),
                include_usage,
            ),
        };
        response
            .headers_mut()
            .insert(CACHE_HEADER, HeaderValue::from_static("hit"));
        return Ok(response);
    }

    let cache_status = cache_key.is_some().then_some("miss");
    let mut response = if request.is_stream() {
        let served = gateway.chat_stream(&request).await?;
        let stream = governance.govern_stream(
            served.value,
            admission,
            served.target.clone(),
            served.price,
            prompt_estimate,
            cache_key,
        );
        let mut response = sse::response(stream, include_usage);
        served_headers(&mut response, &served.target, served.attempts);
        response
    } else {
        let served = gateway.chat(&request).await?;
        let usage = served.value.usage.as_ref().map_or_else(
            || {
                tracing::warn!(target = %served.target, "response without usage; settling the prompt estimate");
                Usage {
                    input_tokens: prompt_estimate,
                    ..Usage::default()
                }
            },
            |usage| Usage::priced(usage, served.price),
        );
        admission.settle(&served.target, usage).await;
        let mut response = json_response(&served.value);
        served_headers(&mut response, &served.target, served.attempts);
        if let Some(key) = cache_key {
            governance.remember(
                key,
                CachedReply::Completion {
                    response: served.value,
                },
            );
        }
        response
    };
    if let Some(status) = cache_status {
        response
            .headers_mut()
            .insert(CACHE_HEADER, HeaderValue::from_static(status));
    }
    if let Some(Shed::Capped(bound)) = shed {
        response
            .headers_mut()
            .insert(SHED_HEADER, HeaderValue::from(bound));
    }
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
