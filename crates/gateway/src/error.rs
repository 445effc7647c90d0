use std::time::Duration;

use landfall_providers::{BuildError, ProviderError};
use landfall_types::ErrorClass;

/// Why the gateway could not serve a request.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("the model `{model}` does not exist")]
    UnknownModel { model: String },
    #[error("no target of `{model}` supports {operation}")]
    NoCapableTarget {
        model: String,
        operation: &'static str,
    },
    /// Every target was skipped by its circuit breaker; `rate_limited` when each was opened
    /// by a rate limit.
    #[error("every target of `{model}` is cooling down after failures")]
    Unavailable {
        model: String,
        retry_after: Option<Duration>,
        rate_limited: bool,
    },
    /// Every target's concurrency slots and queue were full, or the wait timed out.
    #[error("every target of `{model}` is at its concurrency limit")]
    Saturated {
        model: String,
        retry_after: Option<Duration>,
    },
    #[error("`{model}` failed at {target} after {attempts} attempt(s): {error}")]
    Upstream {
        model: String,
        target: String,
        attempts: u32,
        error: ProviderError,
    },
}

impl GatewayError {
    /// The class of the failure a client should act on.
    #[must_use]
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::UnknownModel { .. } => ErrorClass::InvalidRequest,
            Self::NoCapableTarget { .. } => ErrorClass::Permanent,
            Self::Unavailable {
                rate_limited: true, ..
            } => ErrorClass::RateLimited,
            Self::Unavailable {
                rate_limited: false,
                ..
            } => ErrorClass::Transient,
            Self::Saturated { .. } => ErrorClass::Transient,
            Self::Upstream { error, .. } => error.class(),
        }
    }

    /// How long the client should wait before trying again, when known.
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Unavailable { retry_after, .. } | Self::Saturated { retry_after, .. } => {
                *retry_after
            }
            Self::Upstream { error, .. } => error.retry_after(),
            Self::UnknownModel { .. } | Self::NoCapableTarget { .. } => None,
        }
    }
}

/// A configuration the gateway cannot be built from.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("provider `{provider}`: {error}")]
    Provider { provider: String, error: BuildError },
}
