use std::time::Duration;

use landfall_types::ErrorClass;

/// Why an upstream call failed. [`ProviderError::class`] is all the gateway looks at.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    #[error("upstream answered HTTP {status}: {message}")]
    Status {
        status: u16,
        message: String,
        /// The upstream's machine-readable code (`context_length_exceeded` …), if any.
        code: Option<String>,
        retry_after: Option<Duration>,
        class: ErrorClass,
    },
    #[error("upstream timed out after {timeout_ms} ms ({phase})")]
    Timeout {
        phase: TimeoutPhase,
        timeout_ms: u64,
    },
    #[error("cannot reach upstream: {message}")]
    Connection { message: String },
    #[error("upstream sent an invalid response: {message}")]
    InvalidResponse { message: String },
    #[error("upstream stream broke off: {message}")]
    StreamBroken { message: String },
    #[error("upstream reported an error mid-stream: {message}")]
    StreamError { message: String },
    #[error("this provider does not support {operation}")]
    Unsupported { operation: &'static str },
    #[error("this provider cannot express the request: {message}")]
    Untranslatable { message: String },
    /// A local model refused or failed: a full queue (rate-limited), a prompt too long for
    /// its context, bad sampling parameters, a model that is not loaded.
    #[error("{message}")]
    Local { class: ErrorClass, message: String },
    /// The answer was stopped on this side after it began (a guardrail blocked it); `code`
    /// and `message` are for the client.
    #[error("{message}")]
    Stopped { code: &'static str, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutPhase {
    /// Waiting for response headers or the first stream event.
    FirstByte,
    /// Reading a whole response.
    Total,
    /// Waiting for the next stream event.
    StreamIdle,
}

impl std::fmt::Display for TimeoutPhase {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            Self::FirstByte => "waiting for the first byte",
            Self::Total => "reading the response",
            Self::StreamIdle => "waiting for the next stream event",
        })
    }
}

impl ProviderError {
    #[must_use]
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Status { class, .. } | Self::Local { class, .. } => *class,
            Self::Timeout { .. }
            | Self::Connection { .. }
            | Self::InvalidResponse { .. }
            | Self::StreamBroken { .. }
            | Self::StreamError { .. } => ErrorClass::Transient,
            Self::Unsupported { .. } | Self::Untranslatable { .. } => ErrorClass::Permanent,
            Self::Stopped { .. } => ErrorClass::InvalidRequest,
        }
    }

    /// How long the upstream asked us to wait before trying it again.
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub(crate) fn invalid_response(message: impl Into<String>) -> Self {
        Self::InvalidResponse {
            message: message.into(),
        }
    }
}

/// The class of an upstream HTTP error, from its status and (for 400s) its message and code.
#[must_use]
pub fn classify_status(status: u16, message: &str, code: Option<&str>) -> ErrorClass {
    match status {
        429 => ErrorClass::RateLimited,
        413 => ErrorClass::ContextTooLong,
        400 | 422 if mentions_context_length(message, code) => ErrorClass::ContextTooLong,
        401..=405 => ErrorClass::Permanent,
        408 | 425 | 500..=599 => ErrorClass::Transient,
        400..=499 => ErrorClass::InvalidRequest,
        _ => ErrorClass::Permanent,
    }
}

fn mentions_context_length(message: &str, code: Option<&str>) -> bool {
    const MARKERS: &[&str] = &[
        "context_length_exceeded",
        "context length",
        "context window",
        "maximum context",
        "prompt is too long",
        "too many tokens",
        "input is too long",
    ];
    let message = message.to_lowercase();
    code == Some("context_length_exceeded") || MARKERS.iter().any(|marker| message.contains(marker))
}

/// A provider that cannot be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("invalid header `{name}`: {reason}")]
    InvalidHeader { name: String, reason: String },
    #[error("cannot build the HTTP client: {reason}")]
    Client { reason: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_classes() {
        let cases = [
            (429, "slow down", None, ErrorClass::RateLimited),
            (500, "oops", None, ErrorClass::Transient),
            (502, "", None, ErrorClass::Transient),
            (503, "", None, ErrorClass::Transient),
            (504, "", None, ErrorClass::Transient),
            (529, "overloaded", None, ErrorClass::Transient),
            (408, "", None, ErrorClass::Transient),
            (400, "bad field", None, ErrorClass::InvalidRequest),
            (422, "bad field", None, ErrorClass::InvalidRequest),
            (
                400,
                "x",
                Some("context_length_exceeded"),
                ErrorClass::ContextTooLong,
            ),
            (
                400,
                "This model's maximum context length is 4096 tokens",
                None,
                ErrorClass::ContextTooLong,
            ),
            (
                400,
                "prompt is too long: 210000 tokens > 200000 maximum",
                None,
                ErrorClass::ContextTooLong,
            ),
            (413, "request too large", None, ErrorClass::ContextTooLong),
            (401, "bad key", None, ErrorClass::Permanent),
            (403, "forbidden", None, ErrorClass::Permanent),
            (404, "no such model", None, ErrorClass::Permanent),
            (418, "teapot", None, ErrorClass::InvalidRequest),
            (302, "moved", None, ErrorClass::Permanent),
        ];
        for (status, message, code, class) in cases {
            assert_eq!(
                classify_status(status, message, code),
                class,
                "{status} {message}"
            );
        }
    }

    #[test]
    fn transport_failures_are_transient() {
        let errors = [
            ProviderError::Timeout {
                phase: TimeoutPhase::FirstByte,
                timeout_ms: 1,
            },
            ProviderError::Connection {
                message: "refused".into(),
            },
            ProviderError::invalid_response("not json"),
            ProviderError::StreamBroken {
                message: "cut".into(),
            },
        ];
        for error in errors {
            assert_eq!(error.class(), ErrorClass::Transient, "{error}");
        }
        assert_eq!(
            ProviderError::Unsupported {
                operation: "embeddings"
            }
            .class(),
            ErrorClass::Permanent
        );
    }
}
