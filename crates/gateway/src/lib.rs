//! The model service layer: maps a model name to its targets and drives one request through
//! them — weighted ordering, retries with jittered backoff, fallback, `Retry-After`, circuit
//! breaking, and the stream's pre-first-token fallback. Every decision comes from the
//! [`ErrorClass`](landfall_types::ErrorClass) of a failure, never from its status or text.
//!
//! The gateway knows no transport: the server turns its results and errors into HTTP.

mod breaker;
mod error;
mod gateway;
mod observe;
mod order;
mod retry;
mod slots;
mod stream;

pub use error::{GatewayError, StartError};
pub use gateway::{Gateway, Served};
pub use observe::{Attempt, BreakerState, NextStep, NoObserver, Observer, Operation};
