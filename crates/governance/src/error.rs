use std::time::Duration;

use landfall_kv::KvError;
use landfall_storage::{BudgetPeriod, StoreError};

use crate::RateLimitHeaders;

/// Why governance refused a request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GovernanceError {
    /// No key, an unknown key, or a key that is revoked or expired.
    #[error("{reason}")]
    Unauthorized { reason: &'static str },
    /// The key may not use this model.
    #[error("this API key may not use the model `{model}`")]
    ModelNotAllowed { model: String },
    /// A rate or concurrency limit refused the request.
    #[error("rate limit reached for {limit} of {scope} `{id}`")]
    RateLimited {
        scope: &'static str,
        id: String,
        /// Which limit, e.g. "requests per minute".
        limit: &'static str,
        /// `None` when the request can never pass (it asks for more tokens than the limit).
        retry_after: Option<Duration>,
        /// Boxed: it would make every `Result` of this crate large.
        headers: Box<RateLimitHeaders>,
    },
    /// A budget has no room left for this request in the current period.
    #[error("the {period} budget of {scope} `{id}` is exhausted")]
    QuotaExceeded {
        scope: &'static str,
        id: String,
        period: &'static str,
    },
    /// CPU is over the shedding threshold and the request asks for a long generation.
    #[error(
        "the server is overloaded; requests for more than {max_tokens} completion tokens are refused for now"
    )]
    Overloaded {
        max_tokens: u64,
        retry_after: Duration,
    },
    /// The limit backend is down and the configuration says to fail closed.
    #[error("rate limiting is unavailable: {0}")]
    LimiterUnavailable(KvError),
    /// The metadata store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub(crate) fn period_name(period: BudgetPeriod) -> &'static str {
    match period {
        BudgetPeriod::Day => "daily",
        BudgetPeriod::Month => "monthly",
    }
}

/// A governance layer that cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the metadata store: {0}")]
    Store(StoreError),
    #[error("cannot connect to the counter and cache backend: {0}")]
    Kv(KvError),
}
