//! A per-target circuit breaker: after `threshold` consecutive failures the target is skipped
//! for a cool-down; a `Retry-After` keeps it skipped at least that long. After the cool-down
//! the next request tries it again, and one more failure opens it again at once.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
pub(crate) struct Breaker {
    /// Monotonic origin of `open_until_ms`.
    origin: Instant,
    consecutive_failures: AtomicU32,
    /// Milliseconds after `origin` until which the target is skipped; 0 when closed.
    open_until_ms: AtomicU64,
    /// Whether the last failure was a rate limit, so a skipped target can be reported as
    /// rate limited rather than unavailable.
    last_failure_rate_limited: AtomicBool,
}

impl Breaker {
    pub(crate) fn new(origin: Instant) -> Self {
        Self {
            origin,
            consecutive_failures: AtomicU32::new(0),
            open_until_ms: AtomicU64::new(0),
            last_failure_rate_limited: AtomicBool::new(false),
        }
    }

    /// How long the target stays skipped, if it is.
    pub(crate) fn open_for(&self, now: Instant) -> Option<Duration> {
        let open_until = self.open_until_ms.load(Ordering::Relaxed);
        let now_ms = self.millis(now);
        (open_until > now_ms).then(|| Duration::from_millis(open_until - now_ms))
    }

    pub(crate) fn record_success(&self) {
        // Avoid writing shared cache lines on the hot path when nothing changes.
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
        if self.open_until_ms.load(Ordering::Relaxed) != 0 {
            self.open_until_ms.store(0, Ordering::Relaxed);
        }
    }

    /// Whether the failure that opened the breaker was a rate limit.
    pub(crate) fn rate_limited(&self) -> bool {
        self.last_failure_rate_limited.load(Ordering::Relaxed)
    }

    /// Counts a failure; opens the breaker for `cooldown` at `threshold` failures in a row, and
    /// for at least `retry_after` when the upstream asked for it.
    pub(crate) fn record_failure(
        &self,
        now: Instant,
        threshold: u32,
        cooldown: Duration,
        rate_limited: bool,
        retry_after: Option<Duration>,
    ) {
        self.last_failure_rate_limited
            .store(rate_limited, Ordering::Relaxed);
        let failures = self
            .consecutive_failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        let mut open_for = Duration::ZERO;
        if failures >= threshold {
            open_for = cooldown;
        }
        if let Some(retry_after) = retry_after {
            open_for = open_for.max(retry_after);
        }
        if !open_for.is_zero() {
            let until = self
                .millis(now)
                .saturating_add(u64::try_from(open_for.as_millis()).unwrap_or(u64::MAX));
            self.open_until_ms.fetch_max(until, Ordering::Relaxed);
        }
    }

    fn millis(&self, now: Instant) -> u64 {
        // +1 keeps 0 free to mean "closed".
        u64::try_from(now.saturating_duration_since(self.origin).as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOLDOWN: Duration = Duration::from_secs(30);

    #[test]
    fn opens_after_threshold_and_closes_after_cooldown() {
        let origin = Instant::now();
        let breaker = Breaker::new(origin);
        breaker.record_failure(origin, 3, COOLDOWN, false, None);
        breaker.record_failure(origin, 3, COOLDOWN, false, None);
        assert_eq!(breaker.open_for(origin), None);
        breaker.record_failure(origin, 3, COOLDOWN, false, None);
        assert_eq!(breaker.open_for(origin), Some(COOLDOWN));
        let later = origin + COOLDOWN + Duration::from_millis(1);
        assert_eq!(breaker.open_for(later), None);
        // Half-open: one more failure reopens at once.
        breaker.record_failure(later, 3, COOLDOWN, false, None);
        assert!(breaker.open_for(later).is_some());
        breaker.record_success();
        assert_eq!(breaker.open_for(later), None);
    }

    #[test]
    fn retry_after_opens_immediately() {
        let origin = Instant::now();
        let breaker = Breaker::new(origin);
        breaker.record_failure(origin, 5, COOLDOWN, true, Some(Duration::from_secs(2)));
        assert!(breaker.rate_limited());
        assert_eq!(breaker.open_for(origin), Some(Duration::from_secs(2)));
        assert_eq!(breaker.open_for(origin + Duration::from_secs(3)), None);
    }

    #[test]
    fn success_resets_the_count() {
        let origin = Instant::now();
        let breaker = Breaker::new(origin);
        breaker.record_failure(origin, 2, COOLDOWN, false, None);
        breaker.record_success();
        breaker.record_failure(origin, 2, COOLDOWN, false, None);
        assert_eq!(breaker.open_for(origin), None);
    }
}
