use async_trait::async_trait;

use crate::KvError;

/// One counter a request must pass. Keys are used as given (the Redis backend adds its prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// At most `limit` units per `period_ms`, as a token bucket (GCRA) of capacity `limit`
    /// that refills continuously at `limit / period_ms`: a full bucket allows a burst of
    /// `limit`, after which units pass at the refill rate. `cost` units are taken now (1 for a
    /// request; an estimate for tokens, corrected later by [`Release::Rate`]). A `cost`
    /// above `limit` can never pass.
    Rate {
        key: String,
        limit: u64,
        period_ms: u64,
        cost: u64,
    },
    /// At most `limit` requests holding a lease at once. A lease not released within the
    /// backend's lease time (a crashed replica) expires on its own.
    Concurrency { key: String, limit: u64 },
    /// `used + cost <= limit` on a counter that lives until `expires_at_ms` (the end of the
    /// budget period, plus margin). Used is what earlier requests reserved and then settled.
    /// A counter that does not exist yet is reported in [`Verdict::unseeded`] instead of being
    /// created at zero, so the caller can seed it from the durable ledger first.
    Budget {
        key: String,
        limit: u64,
        cost: u64,
        expires_at_ms: i64,
    },
}

/// The state of one check after a decision, for `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckState {
    pub limit: u64,
    pub remaining: u64,
    /// Until the counter is back at its full allowance (rates), or 0.
    pub reset_ms: u64,
}

/// The outcome of [`Limiter::acquire`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// True when every check passed and all were applied; false when none was applied.
    pub admitted: bool,
    /// One state per check, in the order given (after applying them when admitted).
    pub states: Vec<CheckState>,
    /// Index of the first check that refused, when not admitted for that reason.
    pub denied: Option<usize>,
    /// When a refused request could pass, if ever (`None` for a cost above the limit, and for
    /// budgets, which refill only when the period ends).
    pub retry_after_ms: Option<u64>,
    /// Indexes of budget checks whose counter does not exist (nothing was applied).
    pub unseeded: Vec<usize>,
}

/// A correction after the request finished, matching a check it passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Release {
    /// Adds `delta` units to a rate counter taken earlier (negative gives back what an
    /// estimate took too much); the bucket never holds more than its capacity.
    Rate {
        key: String,
        limit: u64,
        period_ms: u64,
        delta: i64,
    },
    /// Returns the lease this request took.
    Concurrency { key: String },
    /// Adds `delta` to a budget counter (actual minus reserved).
    Budget {
        key: String,
        delta: i64,
        expires_at_ms: i64,
    },
}

/// Counters for rate limits, concurrency and budgets.
///
/// Guarantees, for every implementation: `acquire` is atomic and all-or-nothing across every
/// process sharing the backend (no interleaving can let two requests both take the last unit);
/// the time used is the backend's own clock (Redis's `TIME` for Redis), so replicas with skewed
/// clocks agree.
#[async_trait]
pub trait Limiter: Send + Sync {
    /// Evaluates `checks` at one instant; admits and applies all of them only if all pass.
    /// `lease_id` identifies the request for its concurrency leases.
    async fn acquire(&self, lease_id: &str, checks: &[Check]) -> Result<Verdict, KvError>;

    /// Applies corrections after the request, each at most once per request.
    async fn release(&self, lease_id: &str, releases: &[Release]) -> Result<(), KvError>;

    /// Creates a budget counter at `used` unless it exists already.
    async fn seed_budget(&self, key: &str, used: u64, expires_at_ms: i64) -> Result<(), KvError>;
}
