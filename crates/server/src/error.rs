//! The one place errors become HTTP: an exhaustive mapping to status codes and OpenAI-shaped
//! error bodies. Details of upstream and internal failures are logged, not sent.

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};
use landfall_accounting::Failure;
use landfall_gateway::GatewayError;
use landfall_governance::{AdminError, GovernanceError};
use landfall_knowledge::KnowledgeError;
use landfall_providers::ProviderError;
use landfall_types::ErrorClass;
use serde::Serialize;

/// Everything a request can fail with.
#[derive(Debug)]
pub enum ApiError {
    /// The body is not JSON at all.
    MalformedJson {
        detail: String,
    },
    /// The JSON does not fit the schema (wrong type, missing field).
    InvalidBody {
        detail: String,
        param: Option<String>,
    },
    /// The JSON fits the schema but a value is not acceptable.
    InvalidValue {
        message: String,
        param: &'static str,
    },
    UnsupportedMediaType {
        content_type: String,
    },
    PayloadTooLarge {
        limit_bytes: usize,
    },
    Unauthorized {
        reason: &'static str,
    },
    RouteNotFound {
        method: String,
        path: String,
    },
    MethodNotAllowed,
    ModelNotFound {
        model: String,
    },
    /// Boxed: gateway errors carry the upstream's details and would bloat every `Result`.
    Gateway(Box<GatewayError>),
    Governance(Box<GovernanceError>),
    Admin(Box<AdminError>),
    Knowledge(Box<KnowledgeError>),
    /// A reload or local model change that was not applied.
    Swap(Box<crate::SwapError>),
    /// Knowledge bases are switched off (`knowledge.enabled = false`).
    KnowledgeDisabled,
    /// A guardrail rule blocked the request's input (`output` false) or its answer.
    Blocked {
        output: bool,
        rule: String,
        message: String,
    },
    /// No review has this id for the caller.
    ReviewNotFound {
        id: String,
    },
    /// The review was already decided.
    ReviewDecided {
        id: String,
        status: &'static str,
    },
    /// No tool approval has this id.
    ApprovalNotFound {
        id: String,
    },
    /// The approval was already decided or expired.
    ApprovalDecided {
        id: String,
        status: String,
    },
    /// Guardrail rules that do not compile, or a stale version (admin changes).
    InvalidRules {
        problems: String,
    },
    /// No operator rule or policy has this id.
    RuleNotFound {
        kind: &'static str,
        id: String,
    },
    Storage(Box<landfall_storage::StoreError>),
    /// No stored response has this id for the caller's tenant.
    ResponseNotFound {
        id: String,
    },
    /// No conversation has this id for the caller's tenant.
    ConversationNotFound {
        id: String,
    },
    /// The conversation has no item with this id.
    ConversationItemNotFound {
        id: String,
    },
    /// No long-term memory has this id for the caller's tenant.
    MemoryNotFound {
        id: String,
    },
    /// No prompt template (or no such version of one) is available to the caller.
    PromptNotFound {
        id: String,
        version: Option<i64>,
    },
    /// An agent run failed for a reason of its own (not a model call's error).
    AgentFailed {
        message: String,
    },
    /// A `[tools]` entry's MCP server could not be reached to list its tools.
    ToolServerUnavailable {
        name: String,
        message: String,
    },
}

impl From<landfall_storage::StoreError> for ApiError {
    fn from(error: landfall_storage::StoreError) -> Self {
        Self::Storage(Box::new(error))
    }
}

impl From<KnowledgeError> for ApiError {
    fn from(error: KnowledgeError) -> Self {
        Self::Knowledge(Box::new(error))
    }
}

impl From<GatewayError> for ApiError {
    fn from(error: GatewayError) -> Self {
        Self::Gateway(Box::new(error))
    }
}

impl From<GovernanceError> for ApiError {
    fn from(error: GovernanceError) -> Self {
        Self::Governance(Box::new(error))
    }
}

impl From<AdminError> for ApiError {
    fn from(error: AdminError) -> Self {
        Self::Admin(Box::new(error))
    }
}

/// `{"error": {...}}`, as OpenAI sends it.
#[derive(Debug, Serialize)]
pub(crate) struct ErrorBody {
    pub(crate) error: ErrorDetail,
}

#[derive(Debug, Serialize)]
pub(crate) struct ErrorDetail {
    pub(crate) message: String,
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) param: Option<String>,
    pub(crate) code: Option<&'static str>,
}

struct Mapped {
    status: StatusCode,
    detail: ErrorDetail,
    retry_after: Option<Duration>,
    headers: Vec<(&'static str, String)>,
    /// Set when governance refused the request, for metrics and the audit log.
    rejection: Option<&'static str>,
}

fn mapped(
    status: StatusCode,
    kind: &'static str,
    code: Option<&'static str>,
    message: String,
) -> Mapped {
    Mapped {
        status,
        detail: ErrorDetail {
            message,
            kind,
            param: None,
            code,
        },
        retry_after: None,
        headers: Vec::new(),
        rejection: None,
    }
}

impl Mapped {
    fn rejected(mut self, reason: &'static str) -> Self {
        self.rejection = Some(reason);
        self
    }
}

const INVALID: &str = "invalid_request_error";

impl ApiError {
    fn mapped(self) -> Mapped {
        match self {
            Self::MalformedJson { detail } => mapped(
                StatusCode::BAD_REQUEST,
                INVALID,
                Some("invalid_json"),
                format!("the request body is not valid JSON: {detail}"),
            ),
            Self::InvalidBody { detail, param } => {
                let mut mapped = mapped(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    INVALID,
                    Some("invalid_body"),
                    detail,
                );
                mapped.detail.param = param;
                mapped
            }
            Self::InvalidValue { message, param } => {
                let mut mapped = mapped(
                    StatusCode::BAD_REQUEST,
                    INVALID,
                    Some("invalid_value"),
                    message,
                );
                mapped.detail.param = Some(param.to_owned());
                mapped
            }
            Self::UnsupportedMediaType { content_type } => mapped(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                INVALID,
                Some("unsupported_media_type"),
                format!("expected Content-Type: application/json, got `{content_type}`"),
            ),
            Self::PayloadTooLarge { limit_bytes } => mapped(
                StatusCode::PAYLOAD_TOO_LARGE,
                INVALID,
                Some("payload_too_large"),
                format!("the request body exceeds the limit of {limit_bytes} bytes"),
            ),
            Self::Unauthorized { reason } => mapped(
                StatusCode::UNAUTHORIZED,
                INVALID,
                Some("invalid_api_key"),
                reason.to_owned(),
            )
            .rejected("unauthorized"),
            Self::RouteNotFound { method, path } => mapped(
                StatusCode::NOT_FOUND,
                INVALID,
                Some("unknown_url"),
                format!("unknown request URL: {method} {path}"),
            ),
            Self::MethodNotAllowed => mapped(
                StatusCode::METHOD_NOT_ALLOWED,
                INVALID,
                Some("method_not_allowed"),
                "this method is not allowed on this URL".to_owned(),
            ),
            Self::ModelNotFound { model } => {
                let mut mapped = mapped(
                    StatusCode::NOT_FOUND,
                    INVALID,
                    Some("model_not_found"),
                    format!("the model `{model}` does not exist"),
                );
                mapped.detail.param = Some("model".to_owned());
                mapped
            }
            Self::Gateway(error) => gateway_error(*error),
            Self::Governance(error) => governance_error(*error),
            Self::Admin(error) => admin_error(*error),
            Self::Swap(error) => swap_error(*error),
            Self::Knowledge(error) => knowledge_error(*error),
            Self::KnowledgeDisabled => mapped(
                StatusCode::NOT_FOUND,
                INVALID,
                Some("knowledge_disabled"),
                "knowledge bases are switched off on this server (knowledge.enabled)".to_owned(),
            ),
            Self::Blocked {
                output,
                rule,
                message,
            } => {
                let code = if output {
                    "output_blocked"
                } else {
                    "content_blocked"
                };
                let mut mapped = mapped(StatusCode::BAD_REQUEST, INVALID, Some(code), message);
                mapped
                    .headers
                    .push((crate::GUARDRAILS_HEADER, format!("{rule}=block")));
                mapped.rejection = Some("guardrail");
                mapped
            }
            Self::ResponseNotFound { id } => mapped(
                StatusCode::NOT_FOUND,
                INVALID,
                Some("response_not_found"),
                format!("no response `{id}`"),
            ),
            Self::ConversationNotFound { id } => mapped(
                StatusCode::NOT_FOUND,
                INVALID,
                Some("conversation_not_found"),
                format!("no conversation `{id}`"),
            ),
            Self::ConversationItemNotFound { id } => mapped(
                StatusCode::NOT_FOUND,
                INVALID,
                Some("item_not_found"),
                format!("the conversation has no item `{id}`"),
            ),
            Self::MemoryNotFound { id } => mapped(
                StatusCode::NOT_FOUND,
                INVALID,
                Some("memory_not_found"),
                format!("no memory `{id}`"),
            ),
            Self::PromptNotFound { id, version } => mapped(
                StatusCode::NOT_FOUND,
                INVALID,
                Some("prompt_not_found"),
                match version {
                    Some(version) => format!("prompt `{id}` has no version {version}"),
                    None => format!("no prompt `{id}`"),
                },
            ),
            Self::AgentFailed { message } => mapped(
                StatusCode::BAD_GATEWAY,
                "server_error",
                Some("agent_failed"),
                message,
            ),
            Self::ToolServerUnavailable { name, message } => mapped(
                StatusCode::BAD_GATEWAY,
                "server_error",
                Some("tool_server_unavailable"),
                format!("the MCP server of tool `{name}` is unavailable: {message}"),
            ),
            Self::ReviewNotFound { id } => mapped(
                StatusCode::NOT_FOUND,
                INVALID,
                Some("review_not_found"),
                format!("no review `{id}`"),
            ),
            Self::ReviewDecided { id, status } => mapped(
                StatusCode::CONFLICT,
                INVALID,
                Some("review_decided"),
                format!("review `{id}` is already {status}"),
            ),
            Self::ApprovalNotFound { id } => mapped(
                StatusCode::NOT_FOUND,
                INVALID,
                Some("approval_not_found"),
                format!("no tool approval `{id}`"),
            ),
            Self::ApprovalDecided { id, status } => mapped(
                StatusCode::CONFLICT,
                INVALID,
                Some("approval_decided"),
                format!("tool approval `{id}` is already {status}"),
            ),
            Self::InvalidRules { problems } => mapped(
                StatusCode::BAD_REQUEST,
                INVALID,
                Some("invalid_rules"),
                problems,
            ),
            Self::RuleNotFound { kind, id } => mapped(
                StatusCode::NOT_FOUND,
                INVALID,
                Some("not_found"),
                format!(
                    "no operator {kind} has id `{id}` (rules from the configuration file are changed there)"
                ),
            ),
            Self::Storage(error) => match *error {
                landfall_storage::StoreError::Unavailable(message) => {
                    tracing::error!(%message, "metadata store unavailable");
                    mapped(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "server_error",
                        Some("store_unavailable"),
                        "the metadata store is unavailable; retry later".to_owned(),
                    )
                }
                landfall_storage::StoreError::Conflict { entity, id } => mapped(
                    StatusCode::CONFLICT,
                    INVALID,
                    Some("conflict"),
                    format!("{entity} `{id}` was changed concurrently; read it again and retry"),
                ),
                landfall_storage::StoreError::NotFound { entity, id } => mapped(
                    StatusCode::NOT_FOUND,
                    INVALID,
                    Some("not_found"),
                    format!("{entity} `{id}` does not exist"),
                ),
                error @ (landfall_storage::StoreError::Corrupt { .. }
                | landfall_storage::StoreError::Database(_)) => {
                    tracing::error!(%error, "metadata store error");
                    mapped(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "server_error",
                        Some("internal_error"),
                        "the server failed; the details are in its log".to_owned(),
                    )
                }
            },
        }
    }
}

fn governance_error(error: GovernanceError) -> Mapped {
    let message = error.to_string();
    match error {
        GovernanceError::Unauthorized { reason } => ApiError::Unauthorized { reason }.mapped(),
        GovernanceError::ModelNotAllowed { .. } => {
            let mut mapped = mapped(
                StatusCode::FORBIDDEN,
                "permission_error",
                Some("model_not_allowed"),
                message,
            );
            mapped.detail.param = Some("model".to_owned());
            mapped.rejected("forbidden")
        }
        GovernanceError::RateLimited {
            limit,
            retry_after,
            headers,
            ..
        } => {
            let kind = if limit.starts_with("tokens") {
                "tokens"
            } else {
                "requests"
            };
            let message = match retry_after {
                Some(wait) => format!("{message}; retry in {:.1}s", wait.as_secs_f64()),
                None => format!("{message}; this request alone exceeds the limit"),
            };
            let mut mapped = mapped(
                StatusCode::TOO_MANY_REQUESTS,
                kind,
                Some("rate_limit_exceeded"),
                message,
            );
            mapped.retry_after = retry_after;
            mapped.headers = headers.pairs();
            mapped.rejected("rate_limit")
        }
        GovernanceError::QuotaExceeded { .. } => mapped(
            StatusCode::TOO_MANY_REQUESTS,
            "insufficient_quota",
            Some("insufficient_quota"),
            format!("you exceeded your current quota: {message}"),
        )
        .rejected("budget"),
        GovernanceError::Overloaded { retry_after, .. } => {
            let mut mapped = mapped(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                Some("server_overloaded"),
                format!("{message}; set a smaller max_tokens or retry later"),
            );
            mapped.retry_after = Some(retry_after);
            mapped.rejected("shed")
        }
        GovernanceError::LimiterUnavailable(error) => {
            tracing::error!(%error, "request refused: rate limiting unavailable");
            mapped(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                Some("rate_limiter_unavailable"),
                "rate limiting is temporarily unavailable; retry later".to_owned(),
            )
        }
        GovernanceError::Store(error) => store_unavailable(&error),
    }
}

fn store_unavailable(error: &dyn std::fmt::Display) -> Mapped {
    tracing::error!(%error, "metadata store failed");
    let mut mapped = mapped(
        StatusCode::SERVICE_UNAVAILABLE,
        "server_error",
        Some("store_unavailable"),
        "the metadata store is temporarily unavailable; retry later".to_owned(),
    );
    mapped.retry_after = Some(Duration::from_secs(1));
    mapped
}

fn knowledge_error(error: KnowledgeError) -> Mapped {
    let message = error.to_string();
    match error {
        KnowledgeError::NotFound { .. } => {
            mapped(StatusCode::NOT_FOUND, INVALID, Some("not_found"), message)
        }
        KnowledgeError::Invalid { param, .. } => {
            let mut mapped = mapped(
                StatusCode::BAD_REQUEST,
                INVALID,
                Some("invalid_value"),
                message,
            );
            mapped.detail.param = param.map(str::to_owned);
            mapped
        }
        KnowledgeError::Forbidden { .. } => mapped(
            StatusCode::FORBIDDEN,
            "permission_error",
            Some("vector_store_not_allowed"),
            message,
        )
        .rejected("forbidden"),
        KnowledgeError::Conflict { .. } => {
            mapped(StatusCode::CONFLICT, INVALID, Some("conflict"), message)
        }
        KnowledgeError::Unsupported { .. } => mapped(
            StatusCode::BAD_REQUEST,
            INVALID,
            Some("unsupported_operation"),
            message,
        ),
        KnowledgeError::Store(error) => store_unavailable(&error),
        // The knowledge service's own model calls are governed like direct ones, and refused
        // with the same status and headers.
        KnowledgeError::Refused(refusal) => match refusal.downcast::<GovernanceError>() {
            Ok(error) => governance_error(*error),
            Err(other) => {
                tracing::error!(error = %other, "knowledge request refused");
                unavailable_knowledge()
            }
        },
        KnowledgeError::Index(_)
        | KnowledgeError::Embedding(_)
        | KnowledgeError::Generation(_)
        | KnowledgeError::Unavailable(_) => {
            tracing::error!(error = %message, "knowledge request failed");
            unavailable_knowledge()
        }
    }
}

fn unavailable_knowledge() -> Mapped {
    let mut mapped = mapped(
        StatusCode::SERVICE_UNAVAILABLE,
        "server_error",
        Some("knowledge_unavailable"),
        "the knowledge service failed; retry later".to_owned(),
    );
    mapped.retry_after = Some(Duration::from_secs(1));
    mapped
}

fn swap_error(error: crate::SwapError) -> Mapped {
    use crate::SwapError;
    let message = error.to_string();
    match error {
        SwapError::NoSource | SwapError::NotLocal { .. } | SwapError::InUse { .. } => {
            mapped(StatusCode::CONFLICT, INVALID, Some("conflict"), message)
        }
        SwapError::NotFound { .. } => {
            mapped(StatusCode::NOT_FOUND, INVALID, Some("not_found"), message)
        }
        SwapError::Config(_) | SwapError::Build(_) | SwapError::Tools(_) => mapped(
            StatusCode::BAD_REQUEST,
            INVALID,
            Some("invalid_configuration"),
            message,
        ),
        SwapError::Load { .. } => mapped(
            StatusCode::UNPROCESSABLE_ENTITY,
            INVALID,
            Some("model_load_failed"),
            message,
        ),
    }
}

impl From<crate::SwapError> for ApiError {
    fn from(error: crate::SwapError) -> Self {
        Self::Swap(Box::new(error))
    }
}

fn admin_error(error: AdminError) -> Mapped {
    let message = error.to_string();
    match error {
        AdminError::Invalid { field, .. } => {
            let mut mapped = mapped(
                StatusCode::BAD_REQUEST,
                INVALID,
                Some("invalid_value"),
                message,
            );
            mapped.detail.param = Some(field);
            mapped
        }
        AdminError::NotFound { .. } => {
            mapped(StatusCode::NOT_FOUND, INVALID, Some("not_found"), message)
        }
        AdminError::Conflict { .. } => {
            mapped(StatusCode::CONFLICT, INVALID, Some("conflict"), message)
        }
        AdminError::Store(error) => store_unavailable(&error),
    }
}

fn gateway_error(error: GatewayError) -> Mapped {
    let retry_after = error.retry_after();
    let mut mapped = match error {
        GatewayError::UnknownModel { model } => return ApiError::ModelNotFound { model }.mapped(),
        GatewayError::NoCapableTarget { model, operation } => mapped(
            StatusCode::BAD_REQUEST,
            INVALID,
            Some("unsupported_operation"),
            format!("the model `{model}` does not support {operation}"),
        ),
        GatewayError::Unavailable {
            model,
            rate_limited: true,
            ..
        } => mapped(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            Some("rate_limit_exceeded"),
            format!("every provider of `{model}` is rate limiting requests; retry later"),
        ),
        GatewayError::Unavailable {
            model,
            rate_limited: false,
            ..
        } => mapped(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            Some("no_available_target"),
            format!("every provider of `{model}` is cooling down after failures; retry later"),
        ),
        GatewayError::Saturated { model, .. } => mapped(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            Some("server_overloaded"),
            format!("every provider of `{model}` is at its concurrency limit; retry later"),
        )
        .rejected("saturated"),
        GatewayError::Upstream {
            error,
            model,
            target,
            attempts,
        } => {
            tracing::warn!(%model, %target, attempts, %error, "request failed upstream");
            upstream_error(error)
        }
    };
    mapped.retry_after = retry_after;
    mapped
}

fn upstream_error(error: ProviderError) -> Mapped {
    // Stopped on this side (a guardrail): the client gets the reason and its code.
    if let ProviderError::Stopped { code, message } = error {
        return mapped(StatusCode::BAD_REQUEST, INVALID, Some(code), message);
    }
    match error.class() {
        ErrorClass::RateLimited => mapped(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            Some("rate_limit_exceeded"),
            "the upstream provider is rate limiting requests; retry later".to_owned(),
        ),
        ErrorClass::ContextTooLong => mapped(
            StatusCode::BAD_REQUEST,
            INVALID,
            Some("context_length_exceeded"),
            client_message(&error),
        ),
        ErrorClass::InvalidRequest => {
            let status = match &error {
                ProviderError::Status { status, .. } => StatusCode::from_u16(*status)
                    .ok()
                    .filter(StatusCode::is_client_error)
                    .unwrap_or(StatusCode::BAD_REQUEST),
                _ => StatusCode::BAD_REQUEST,
            };
            mapped(status, INVALID, None, client_message(&error))
        }
        ErrorClass::Transient | ErrorClass::Permanent => {
            let (status, message) = match &error {
                ProviderError::Timeout { .. } => (
                    StatusCode::GATEWAY_TIMEOUT,
                    "the upstream provider timed out".to_owned(),
                ),
                ProviderError::Status { status, .. } => (
                    StatusCode::BAD_GATEWAY,
                    format!("the upstream provider failed with HTTP {status}"),
                ),
                ProviderError::Connection { .. } => (
                    StatusCode::BAD_GATEWAY,
                    "cannot reach the upstream provider".to_owned(),
                ),
                ProviderError::InvalidResponse { .. } => (
                    StatusCode::BAD_GATEWAY,
                    "the upstream provider sent an invalid response".to_owned(),
                ),
                ProviderError::StreamBroken { .. } | ProviderError::StreamError { .. } => (
                    StatusCode::BAD_GATEWAY,
                    "the upstream provider's stream broke off".to_owned(),
                ),
                ProviderError::Unsupported { operation } => (
                    StatusCode::BAD_GATEWAY,
                    format!("the upstream provider does not support {operation}"),
                ),
                ProviderError::Untranslatable { message } => (
                    StatusCode::BAD_REQUEST,
                    format!("the request cannot be sent to this model: {message}"),
                ),
                ProviderError::Local { message, .. } => {
                    (StatusCode::SERVICE_UNAVAILABLE, message.clone())
                }
                ProviderError::Stopped { message, .. } => {
                    (StatusCode::BAD_REQUEST, message.clone())
                }
            };
            mapped(status, "upstream_error", Some("upstream_error"), message)
        }
    }
}

/// The upstream's own words, for errors that are the client's to fix.
fn client_message(error: &ProviderError) -> String {
    match error {
        ProviderError::Status { message, .. }
        | ProviderError::Untranslatable { message }
        | ProviderError::Local { message, .. }
        | ProviderError::Stopped { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// The body of the `error` event that ends a stream which failed after it began.
pub(crate) fn stream_error_body(error: ProviderError) -> ErrorBody {
    ErrorBody {
        error: upstream_error(error).detail,
    }
}

impl ApiError {
    /// The error as the body of a response would carry it (for a stream's `error` event).
    pub(crate) fn detail(self) -> ErrorDetail {
        self.mapped().detail
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mapped = self.mapped();
        let failure = Failure {
            code: mapped.detail.code.unwrap_or(mapped.detail.kind),
            rejection: mapped.rejection,
        };
        let body = ErrorBody {
            error: mapped.detail,
        };
        let mut response = (mapped.status, axum::Json(body)).into_response();
        response.extensions_mut().insert(failure);
        if let Some(retry_after) = mapped.retry_after {
            let seconds = retry_after.as_secs_f64().ceil().max(1.0);
            if let Ok(value) = HeaderValue::from_str(&format!("{seconds:.0}")) {
                response
                    .headers_mut()
                    .insert(http::header::RETRY_AFTER, value);
            }
        }
        for (name, value) in mapped.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use landfall_providers::TimeoutPhase;
    use serde_json::{Value, json};

    fn upstream(error: ProviderError) -> ApiError {
        ApiError::Gateway(Box::new(GatewayError::Upstream {
            model: "m".into(),
            target: "p/m".into(),
            attempts: 2,
            error,
        }))
    }

    fn status(
        status: u16,
        message: &str,
        class: ErrorClass,
        retry_after: Option<u64>,
    ) -> ProviderError {
        ProviderError::Status {
            status,
            message: message.into(),
            code: None,
            retry_after: retry_after.map(Duration::from_secs),
            class,
        }
    }

    /// The wire contract: status, body and Retry-After for every kind of failure.
    #[tokio::test]
    async fn every_error_maps_to_a_status_and_an_openai_body() {
        let cases: Vec<(ApiError, u16, Value, Option<u64>)> = vec![
            (
                ApiError::ModelNotFound {
                    model: "gpt-9".into(),
                },
                404,
                json!({"message": "the model `gpt-9` does not exist", "type": "invalid_request_error", "param": "model", "code": "model_not_found"}),
                None,
            ),
            (
                ApiError::PayloadTooLarge { limit_bytes: 10 },
                413,
                json!({"message": "the request body exceeds the limit of 10 bytes", "type": "invalid_request_error", "param": null, "code": "payload_too_large"}),
                None,
            ),
            (
                upstream(status(429, "slow down", ErrorClass::RateLimited, Some(7))),
                429,
                json!({"message": "the upstream provider is rate limiting requests; retry later", "type": "rate_limit_error", "param": null, "code": "rate_limit_exceeded"}),
                Some(7),
            ),
            (
                upstream(status(
                    400,
                    "max_tokens is too large",
                    ErrorClass::InvalidRequest,
                    None,
                )),
                400,
                json!({"message": "max_tokens is too large", "type": "invalid_request_error", "param": null, "code": null}),
                None,
            ),
            (
                upstream(status(422, "bad schema", ErrorClass::InvalidRequest, None)),
                422,
                json!({"message": "bad schema", "type": "invalid_request_error", "param": null, "code": null}),
                None,
            ),
            (
                upstream(status(
                    400,
                    "prompt is too long",
                    ErrorClass::ContextTooLong,
                    None,
                )),
                400,
                json!({"message": "prompt is too long", "type": "invalid_request_error", "param": null, "code": "context_length_exceeded"}),
                None,
            ),
            (
                upstream(status(
                    401,
                    "invalid x-api-key sk-secret",
                    ErrorClass::Permanent,
                    None,
                )),
                502,
                json!({"message": "the upstream provider failed with HTTP 401", "type": "upstream_error", "param": null, "code": "upstream_error"}),
                None,
            ),
            (
                upstream(ProviderError::Timeout {
                    phase: TimeoutPhase::FirstByte,
                    timeout_ms: 5,
                }),
                504,
                json!({"message": "the upstream provider timed out", "type": "upstream_error", "param": null, "code": "upstream_error"}),
                None,
            ),
            (
                upstream(ProviderError::InvalidResponse {
                    message: "<html> at 127.0.0.1".into(),
                }),
                502,
                json!({"message": "the upstream provider sent an invalid response", "type": "upstream_error", "param": null, "code": "upstream_error"}),
                None,
            ),
            (
                ApiError::Gateway(Box::new(GatewayError::Unavailable {
                    model: "m".into(),
                    retry_after: Some(Duration::from_millis(1_500)),
                    rate_limited: false,
                })),
                503,
                json!({"message": "every provider of `m` is cooling down after failures; retry later", "type": "server_error", "param": null, "code": "no_available_target"}),
                Some(2),
            ),
        ];
        for (error, expected_status, expected_body, expected_retry_after) in cases {
            let label = format!("{error:?}");
            let response = error.into_response();
            assert_eq!(response.status().as_u16(), expected_status, "{label}");
            let retry_after = response
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
            assert_eq!(retry_after, expected_retry_after, "{label}");
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(body, json!({"error": expected_body}), "{label}");
        }
    }
}
