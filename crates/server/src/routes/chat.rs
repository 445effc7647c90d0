//! `POST /v1/chat/completions`: scope, shedding, limits and budgets, the response cache, then
//! the gateway; the admission is settled with the exact usage (for a stream, when it ends).

use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use http::{HeaderMap, HeaderValue};
use landfall_accounting::{RequestLog, TokenUsage};
use landfall_gateway::Operation;
use landfall_governance::{
    CACHE_REQUEST_HEADER, CachedReply, Principal, RateLimitHeaders, ServedStream, Shed,
    StreamOutcome, Usage,
};
use landfall_providers::ChatStream;
use landfall_types::ChatRequest;

use crate::extract::JsonBody;
use crate::routes::grounding;
use crate::routes::{json_response, rate_limit_headers, served_headers};
use crate::{ApiError, AppState, CACHE_HEADER, SHED_HEADER, guard, prompts, sse};

pub(crate) async fn completions(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(log): Extension<RequestLog>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<ChatRequest>,
) -> Response {
    let mut limits = RateLimitHeaders::default();
    log.model(Operation::Chat, &request.model, request.is_stream());
    if log.keeps_bodies() {
        log.request_body(&request);
    }
    let served = serve(&state, &principal, &log, &headers, request, &mut limits).await;
    let mut response = match served {
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
    headers: &HeaderMap,
    mut request: ChatRequest,
    limits: &mut RateLimitHeaders,
) -> Result<Response, ApiError> {
    validate(&request, state)?;
    let governance = state.governance();
    let gateway = state.gateway();
    governance.authorize_model(principal, &request.model)?;
    let guardrails = guard::select(state, principal, &request.model);
    let input_hits = match &guardrails {
        Some(selection) => guard::check_messages(selection, &mut request.messages, log)?,
        None => Vec::new(),
    };
    // The alias's prompt is the operator's text: it goes in after the input check.
    let preamble = prompts::alias_messages(state, &principal.tenant.id, &request.model).await?;
    if !preamble.is_empty() {
        request.messages.splice(0..0, preamble);
    }
    let sources =
        grounding::ground(state, principal, log, &mut request, guardrails.as_ref()).await?;
    let shed = governance.shed(&mut request)?;
    if let Some(Shed::Capped(bound)) = shed {
        log.shed_capped(bound);
    }
    let demand = governance.chat_demand(&request, gateway.reservation_price(&request.model));
    let prompt_estimate = demand.prompt_tokens;
    let admission = governance.admit(principal, &demand).await?;
    *limits = admission.headers();

    let cache_choice = headers
        .get(CACHE_REQUEST_HEADER)
        .and_then(|value| value.to_str().ok());
    let cache_key = governance
        .cache_key(principal, &request, cache_choice)
        .filter(|_| {
            !guardrails
                .as_ref()
                .is_some_and(landfall_guardrails::Selection::may_review)
        });
    let include_usage = request.wants_stream_usage();
    if let Some(key) = &cache_key
        && let Some(reply) = governance.cached(key).await
    {
        let cached = Usage {
            cache_hit: true,
            ..Usage::default()
        };
        log.cache(true);
        admission.settle("cache", cached).await;
        // Cached answers pass the caller's own rules too: policies differ between keys.
        let mut response = match reply {
            CachedReply::Completion { mut response } => {
                let held = match &guardrails {
                    Some(selection) => Some(
                        guard::check_answer(
                            state,
                            principal,
                            selection,
                            &mut response,
                            &input_hits,
                            log,
                        )
                        .await?,
                    ),
                    None => None,
                };
                let mut reply = json_response(&response);
                review_header(&mut reply, held);
                reply
            }
            CachedReply::Stream { chunks } => {
                let replay: ChatStream =
                    Box::pin(futures::stream::iter(chunks.into_iter().map(Ok)));
                let replay = guard::guard_stream_if(
                    state,
                    principal,
                    guardrails.as_ref(),
                    replay,
                    &input_hits,
                    log,
                );
                sse::response(replay, include_usage)
            }
        };
        guard::header(&mut response, &input_hits);
        response
            .headers_mut()
            .insert(CACHE_HEADER, HeaderValue::from_static("hit"));
        return Ok(response);
    }

    let cache_status = cache_key.is_some().then_some("miss");
    if cache_status.is_some() {
        log.cache(false);
    }
    let mut response = if request.is_stream() {
        let served = gateway.chat_stream(&request).await?;
        log.served(&served.target, served.attempts, served.upstream);
        let ended = log.clone();
        let upstream = match sources {
            Some(sources) => grounding::annotate_stream(served.value, sources),
            None => served.value,
        };
        let upstream = guard::guard_stream_if(
            state,
            principal,
            guardrails.as_ref(),
            upstream,
            &input_hits,
            log,
        );
        let stream = governance.govern_stream(
            keep_stream_text(upstream, log),
            admission,
            ServedStream {
                target: served.target.clone(),
                price: served.price,
                prompt_estimate,
            },
            cache_key,
            move |end| {
                ended.stream_ended(
                    token_usage(&end.usage, end.usage_reported),
                    outcome_name(end.outcome),
                )
            },
        );
        let mut response = sse::response(stream, include_usage);
        served_headers(&mut response, &served.target, served.attempts);
        response
    } else {
        let mut served = gateway.chat(&request).await?;
        if let Some(sources) = &sources {
            grounding::annotate(&mut served.value, sources);
        }
        log.served(&served.target, served.attempts, served.upstream);
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
        log.usage(token_usage(&usage, served.value.usage.is_some()));
        admission.settle(&served.target, usage).await;
        // The answer is checked after settlement: a blocked answer still cost its tokens.
        // It is cached as the model gave it; each caller's rules apply on the way out.
        let original = cache_key.as_ref().map(|_| served.value.clone());
        let held = match &guardrails {
            Some(selection) => Some(
                guard::check_answer(
                    state,
                    principal,
                    selection,
                    &mut served.value,
                    &input_hits,
                    log,
                )
                .await?,
            ),
            None => None,
        };
        if log.keeps_bodies()
            && let Ok(text) = serde_json::to_string(&served.value)
        {
            log.response_text(&text);
        }
        let mut response = json_response(&served.value);
        served_headers(&mut response, &served.target, served.attempts);
        review_header(&mut response, held);
        if let (Some(key), Some(original)) = (cache_key, original) {
            governance.remember(key, CachedReply::Completion { response: original });
        }
        response
    };
    guard::header(&mut response, &input_hits);
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

/// `x-landfall-review` on an answer held for review.
fn review_header(response: &mut Response, held: Option<guard::Answer>) {
    if let Some(guard::Answer::Held(id)) = held
        && let Ok(value) = HeaderValue::from_str(&id)
    {
        response.headers_mut().insert(crate::REVIEW_HEADER, value);
    }
}

/// The settled usage in accounting's terms.
pub(crate) fn token_usage(usage: &Usage, reported: bool) -> TokenUsage {
    TokenUsage {
        input_tokens: usage.input_tokens,
        cached_input_tokens: usage.cached_input_tokens,
        output_tokens: usage.output_tokens,
        cost_nanos: usage.cost_nanos,
        reported,
    }
}

fn outcome_name(outcome: StreamOutcome) -> &'static str {
    match outcome {
        StreamOutcome::Completed => "completed",
        StreamOutcome::Broken => "broken",
        StreamOutcome::Abandoned => "abandoned",
    }
}

/// Copies a stream's text into the audit record as it passes, for tenants whose bodies are
/// kept; other streams pass untouched.
fn keep_stream_text(stream: ChatStream, log: &RequestLog) -> ChatStream {
    if !log.keeps_bodies() {
        return stream;
    }
    let log = log.clone();
    stream
        .inspect(move |item| {
            if let Ok(chunk) = item {
                for choice in &chunk.choices {
                    if let Some(text) = &choice.delta.content {
                        log.response_text(text);
                    }
                }
            }
        })
        .boxed()
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
