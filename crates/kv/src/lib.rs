//! Fast shared state on the request path: rate-limit, concurrency and budget counters
//! ([`Limiter`]) and the response cache ([`ResponseCache`]), in process (embedded, the default)
//! or in Redis (shared by replicas).
//!
//! Both backends implement the same arithmetic and pass the same conformance tests. This crate
//! counts; which counters a request touches, and what a refusal means, belongs to
//! `landfall-governance`.
//!
//! What both backends do beyond the trait documents:
//! - Rates: see `math.rs` for the token bucket in integer µs. A limit or period of zero never
//!   passes (`retry_after_ms: None`), like a cost above the limit.
//! - A refused concurrency check suggests retrying after 1 s (leases end unpredictably). Taking
//!   a lease the request already holds passes and counts once; releasing one it does not hold
//!   (or releasing twice) does nothing.
//! - A budget release on a counter that does not exist (expired, evicted, Redis restarted) does
//!   nothing: the next `acquire` reports it unseeded, and the caller seeds it from the ledger.
//!   `Release::Budget::expires_at_ms` is not used; the counter keeps the expiry it has.
//! - Checks on the same key in one call see each other, as if applied in order.
//! - `CheckState::reset_ms` is 0 for concurrency and budgets.

mod cache;
mod error;
mod limiter;
mod math;
mod memory;
mod redis;

pub use cache::ResponseCache;
pub use error::KvError;
pub use limiter::{Check, CheckState, Limiter, Release, Verdict};
pub use memory::{MemoryCache, MemoryLimiter};
pub use redis::{RedisCache, RedisLimiter, RedisSettings};
