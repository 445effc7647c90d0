use serde::Serialize;

/// What a caller may do about an error. Retries, fallback and circuit breaking decide from this
/// class alone, never from status codes or messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Worth retrying the same target after a backoff: 5xx, timeouts, broken connections,
    /// malformed upstream responses.
    Transient,
    /// The target refused for now: try another target, or this one after `Retry-After`.
    RateLimited,
    /// The input does not fit this target's context window: a target with a larger window may
    /// still serve it.
    ContextTooLong,
    /// The request itself is wrong; no target will accept it. Return it to the client.
    InvalidRequest,
    /// This target cannot serve the request (bad credentials, unknown upstream model,
    /// unsupported operation); another target may.
    Permanent,
}

impl ErrorClass {
    /// The class in snake case, for metrics and logs.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Transient => "transient",
            Self::RateLimited => "rate_limited",
            Self::ContextTooLong => "context_too_long",
            Self::InvalidRequest => "invalid_request",
            Self::Permanent => "permanent",
        }
    }

    /// Whether the failure says something about the target's health (and so counts towards its
    /// circuit breaker) rather than about the request.
    #[must_use]
    pub fn counts_against_target(self) -> bool {
        match self {
            Self::Transient | Self::RateLimited | Self::Permanent => true,
            Self::ContextTooLong | Self::InvalidRequest => false,
        }
    }
}
