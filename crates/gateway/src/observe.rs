//! What the attempt loop reports about itself: every upstream attempt, how it ended, and what
//! the gateway did next. Metrics implement [`Observer`]; the gateway knows no metrics library.

use std::time::Duration;

use landfall_types::ErrorClass;

/// What a request asked the gateway to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Chat,
    Embeddings,
}

impl Operation {
    /// OpenTelemetry's `gen_ai.operation.name`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::Embeddings => "embeddings",
        }
    }
}

/// What the gateway did after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// The attempt served the request.
    Served,
    /// The same target is tried again after a pause.
    Retry,
    /// The next target is tried.
    Fallback,
    /// The error goes back to the client.
    GiveUp,
}

/// One upstream call and its outcome.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    pub operation: Operation,
    /// The model name the client asked for.
    pub model: &'a str,
    /// `provider/upstream-model`.
    pub target: &'a str,
    /// The provider's name (the part of `target` before the first `/`).
    pub provider: &'a str,
    /// `None` when the call succeeded.
    pub failure: Option<ErrorClass>,
    /// How long the call took (for a stream: until its first output).
    pub elapsed: Duration,
    pub next: NextStep,
}

/// Receives every attempt as it ends. Called on the request path: implementations must be
/// cheap and must not block.
pub trait Observer: Send + Sync {
    fn attempt(&self, attempt: &Attempt<'_>);
}

/// Observes nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObserver;

impl Observer for NoObserver {
    fn attempt(&self, _attempt: &Attempt<'_>) {}
}

/// A target's circuit breaker as seen at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerState {
    pub model: String,
    pub target: String,
    pub open: bool,
}
