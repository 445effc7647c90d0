//! The counter arithmetic both backends share, in integers.
//!
//! The Redis backend runs the same formulas in Lua (`redis/gcra.lua`, `redis/acquire.lua`); a
//! change here must be made there too. `redis/parity_tests.rs` checks that both compute the same
//! values, and the conformance suite that both backends behave the same.
//!
//! Rates are a GCRA token bucket. Its state is the TAT ("theoretical arrival time"), in µs: the
//! instant at which the bucket would be full again. `cost` units push it forward by
//! `ceil(cost * period_us / limit)` µs; a check passes when the new TAT is at most `capacity`
//! ahead of now, where `capacity = limit * unit` and `unit` is the increment of one unit.
//!
//! Rounding is why the capacity is not simply `period_us`: with 7 requests per minute a unit is
//! 8_571_429 µs, and 7 of them overrun 60 s, so a burst of 7 would be refused. With
//! `limit * unit`, a burst of exactly `limit` single units always passes and the next unit waits
//! `unit`. The price: single units refill every `unit` instead of every `period_us / limit`
//! µs, and a burst of large costs (tokens, charged at the exact rate) may exceed `limit` by up to
//! `limit * (unit - period_us / limit) / (period_us / limit)` units. Both errors are under 1%
//! while a unit is at least 100 µs, and the overshoot is under one unit while
//! `limit² <= period_us`.

use crate::{Check, CheckState, Verdict};

/// What a refused request is told while the only thing in its way is a concurrency limit:
/// leases end when other requests finish, which cannot be predicted.
pub(crate) const CONCURRENCY_RETRY_AFTER_MS: u64 = 1_000;

/// The decision on one check, before the verdict is assembled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) status: Status,
    /// The counter as it stands, which the verdict reports when not admitted.
    pub(crate) unapplied: Counter,
    /// The counter after applying this check (the same unless it passed), which the verdict
    /// reports when admitted.
    pub(crate) applied: Counter,
    /// `None` when the check cannot pass by waiting (or passed).
    pub(crate) retry_after_ms: Option<u64>,
}

/// What [`CheckState`] reports of one counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counter {
    pub(crate) remaining: u64,
    pub(crate) reset_ms: u64,
}

impl Counter {
    /// A counter without a reset time (concurrency, budgets).
    fn remaining(remaining: u64) -> Self {
        Self {
            remaining,
            reset_ms: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Passed,
    Refused,
    /// A budget counter that does not exist.
    Unseeded,
}

impl Outcome {
    fn refused_forever() -> Self {
        Self {
            status: Status::Refused,
            unapplied: Counter::remaining(0),
            applied: Counter::remaining(0),
            retry_after_ms: None,
        }
    }
}

/// A rate limit's constants, or `None` for a limit or period of zero (never passes).
#[derive(Debug, Clone, Copy)]
struct Rate {
    limit: u128,
    period_us: u128,
}

impl Rate {
    fn new(limit: u64, period_ms: u64) -> Option<Self> {
        if limit == 0 || period_ms == 0 {
            return None;
        }
        Some(Self {
            limit: u128::from(limit),
            period_us: u128::from(period_ms) * 1_000,
        })
    }

    /// `ceil(cost * period_us / limit)`: the µs `cost` units push the TAT forward.
    fn increment(self, cost: u64) -> u128 {
        // Split as the Lua script does: cost * period_us may not fit in u128, but
        // cost * (period_us % limit) < 2^64 * 2^64 does.
        let cost = u128::from(cost);
        let whole = cost.saturating_mul(self.period_us / self.limit);
        let part = (cost * (self.period_us % self.limit)).div_ceil(self.limit);
        whole.saturating_add(part)
    }

    fn capacity(self) -> u128 {
        self.limit.saturating_mul(self.increment(1))
    }

    /// Remaining single units and time until full, for a bucket whose TAT is `tat` (≥ now).
    fn counter(self, tat: u128, now: u128) -> Counter {
        let headroom = now.saturating_add(self.capacity()).saturating_sub(tat);
        let remaining = (headroom / self.increment(1)).min(self.limit);
        Counter {
            remaining: saturate(remaining),
            reset_ms: saturate(tat.saturating_sub(now).div_ceil(1_000)),
        }
    }
}

fn saturate(value: u128) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

/// Evaluates a rate check at `now_us` against the stored TAT (`None` when absent). Returns the
/// outcome and, when it passes, the TAT to store.
pub(crate) fn rate_check(
    tat_us: Option<u64>,
    now_us: u64,
    limit: u64,
    period_ms: u64,
    cost: u64,
) -> (Outcome, Option<u64>) {
    let Some(rate) = Rate::new(limit, period_ms) else {
        return (Outcome::refused_forever(), None);
    };
    let now = u128::from(now_us);
    let base = u128::from(tat_us.unwrap_or(0)).max(now);
    let new_tat = base.saturating_add(rate.increment(cost));
    let passes = cost <= limit && new_tat - now <= rate.capacity();
    // A TAT beyond u64 µs (half a million years) is not storable: refuse it.
    let stored = passes.then(|| u64::try_from(new_tat).ok()).flatten();
    let unapplied = rate.counter(base, now);
    let applied = if stored.is_some() {
        rate.counter(new_tat, now)
    } else {
        unapplied
    };
    let (status, retry_after_ms) = match stored {
        Some(_) => (Status::Passed, None),
        None if cost > limit => (Status::Refused, None),
        None => {
            let wait_us = (new_tat - rate.capacity()).saturating_sub(now);
            (Status::Refused, Some(saturate(wait_us.div_ceil(1_000))))
        }
    };
    let outcome = Outcome {
        status,
        unapplied,
        applied,
        retry_after_ms,
    };
    (outcome, stored)
}

/// The TAT after `delta` units are added to (or, negative, given back to) a rate counter, or
/// `None` when nothing is to change (a zero delta, an invalid limit, or units given back to an
/// absent key). Giving back never moves the TAT before now: a bucket holds at most its
/// capacity.
pub(crate) fn rate_release(
    tat_us: Option<u64>,
    now_us: u64,
    limit: u64,
    period_ms: u64,
    delta: i64,
) -> Option<u64> {
    let rate = Rate::new(limit, period_ms)?;
    if delta == 0 {
        return None;
    }
    let now = u128::from(now_us);
    let adjustment = rate.increment(delta.unsigned_abs());
    let tat = if delta < 0 {
        u128::from(tat_us?).saturating_sub(adjustment).max(now)
    } else {
        u128::from(tat_us.unwrap_or(0))
            .max(now)
            .saturating_add(adjustment)
    };
    Some(saturate(tat))
}

/// Evaluates a concurrency check: `held` leases are alive, `already_held` when this lease is
/// among them (taking it again passes and counts once). Returns the outcome and whether the
/// lease is to be added.
pub(crate) fn concurrency_check(held: u64, already_held: bool, limit: u64) -> Outcome {
    if limit == 0 {
        return Outcome::refused_forever();
    }
    let passes = already_held || held < limit;
    let held_after = if passes && !already_held {
        held + 1
    } else {
        held
    };
    Outcome {
        status: if passes {
            Status::Passed
        } else {
            Status::Refused
        },
        unapplied: Counter::remaining(limit.saturating_sub(held)),
        applied: Counter::remaining(limit.saturating_sub(held_after)),
        retry_after_ms: (!passes).then_some(CONCURRENCY_RETRY_AFTER_MS),
    }
}

/// Evaluates a budget check against the stored `used` (`None` when absent: unseeded). Returns
/// the outcome and, when it passes, the new `used`.
pub(crate) fn budget_check(used: Option<i64>, limit: u64, cost: u64) -> (Outcome, Option<i64>) {
    let Some(used) = used else {
        let outcome = Outcome {
            status: Status::Unseeded,
            unapplied: Counter::remaining(limit),
            applied: Counter::remaining(limit),
            retry_after_ms: None,
        };
        return (outcome, None);
    };
    let used_after = i128::from(used) + i128::from(cost);
    let stored = (used_after <= i128::from(limit))
        .then(|| i64::try_from(used_after).ok())
        .flatten();
    let left = |used: i128| {
        let remaining = i128::from(limit) - used.max(0);
        Counter::remaining(u64::try_from(remaining.max(0)).unwrap_or(u64::MAX))
    };
    let unapplied = left(i128::from(used));
    let outcome = Outcome {
        status: if stored.is_some() {
            Status::Passed
        } else {
            Status::Refused
        },
        unapplied,
        applied: stored.map_or(unapplied, |used| left(i128::from(used))),
        retry_after_ms: None,
    };
    (outcome, stored)
}

/// Assembles the verdict from one outcome per check (`limits` in the same order).
pub(crate) fn verdict(limits: impl IntoIterator<Item = u64>, outcomes: &[Outcome]) -> Verdict {
    let admitted = outcomes
        .iter()
        .all(|outcome| outcome.status == Status::Passed);
    let states = limits
        .into_iter()
        .zip(outcomes)
        .map(|(limit, outcome)| {
            let counter = if admitted {
                outcome.applied
            } else {
                outcome.unapplied
            };
            CheckState {
                limit,
                remaining: counter.remaining,
                reset_ms: counter.reset_ms,
            }
        })
        .collect();
    let refused = || {
        outcomes
            .iter()
            .enumerate()
            .filter(|(_, outcome)| outcome.status == Status::Refused)
    };
    let denied = refused().map(|(index, _)| index).next();
    let retry_after_ms = match denied {
        None => None,
        Some(_) => refused()
            .map(|(_, outcome)| outcome.retry_after_ms)
            .try_fold(0, |max, retry| retry.map(|retry| max.max(retry))),
    };
    Verdict {
        admitted,
        states,
        denied,
        retry_after_ms,
        unseeded: outcomes
            .iter()
            .enumerate()
            .filter(|(_, outcome)| outcome.status == Status::Unseeded)
            .map(|(index, _)| index)
            .collect(),
    }
}

/// The limit a check is measured against.
pub(crate) fn check_limit(check: &Check) -> u64 {
    match check {
        Check::Rate { limit, .. }
        | Check::Concurrency { limit, .. }
        | Check::Budget { limit, .. } => *limit,
    }
}

#[cfg(test)]
#[path = "math_tests.rs"]
mod tests;
