use std::collections::HashMap as StdHashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use crate::math::{self, Outcome, Status};
use crate::{Check, KvError, Limiter, Release, Verdict};

/// How long a concurrency lease lives when it is never released, by default (15 minutes, as
/// on Redis).
const DEFAULT_LEASE_MS: u64 = 900_000;

/// How often, at most, a call sweeps every expired entry out of the maps.
const SWEEP_INTERVAL_US: u64 = 1_000_000;

/// Maps keyed by counter names: foldhash instead of SipHash, as every request hashes each of
/// its keys twice under the one mutex. The keys are the operator's own ids, not attacker-chosen
/// text (unknown keys are refused before any counter is touched).
type HashMap<K, V> = StdHashMap<K, V, foldhash::fast::RandomState>;

/// A clock in µs since the Unix epoch.
type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// [`Limiter`] for one process: every counter in a map behind one mutex, so each call is
/// atomic across all its keys. The mutex is never held across an `.await` (there is none).
///
/// Memory stays bounded by the live counters: full rate buckets, expired leases and budgets
/// past their expiry are dropped at most once a second, during a call.
pub struct MemoryLimiter {
    state: Mutex<State>,
    clock: Clock,
    lease_us: u64,
}

#[derive(Default)]
struct State {
    /// Key → TAT in µs.
    rates: HashMap<String, u64>,
    /// Key → lease id → lease expiry in µs.
    leases: HashMap<String, HashMap<String, u64>>,
    budgets: HashMap<String, Budget>,
    last_sweep_us: u64,
}

#[derive(Debug, Clone, Copy)]
struct Budget {
    used: i64,
    expires_at_ms: i64,
}

/// A change that an admitted call applies.
enum Apply<'a> {
    Rate {
        key: &'a str,
        tat_us: u64,
    },
    Lease {
        key: &'a str,
    },
    Budget {
        key: &'a str,
        used: i64,
        expires_at_ms: i64,
    },
}

impl Default for MemoryLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryLimiter {
    /// An empty limiter on the system clock.
    pub fn new() -> Self {
        Self::with_clock(system_now_us)
    }

    /// An empty limiter on `now_us` (µs since the Unix epoch), for deterministic tests.
    pub fn with_clock(now_us: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        Self {
            state: Mutex::new(State::default()),
            clock: Arc::new(now_us),
            lease_us: DEFAULT_LEASE_MS * 1_000,
        }
    }

    /// Sets how long a lease that is never released lives (default 15 minutes).
    #[must_use]
    pub fn with_lease_ms(mut self, lease_ms: u64) -> Self {
        self.lease_us = lease_ms.saturating_mul(1_000);
        self
    }

    /// Locks the state at `now_us`, sweeping expired entries when it is time to.
    fn lock(&self, now_us: u64) -> MutexGuard<'_, State> {
        // A poisoned mutex only means another call panicked mid-way; the maps are still
        // valid (each change is a single insert or remove).
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if now_us.saturating_sub(state.last_sweep_us) >= SWEEP_INTERVAL_US {
            state.sweep(now_us);
        }
        state
    }
}

fn system_now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
        })
}

impl State {
    fn sweep(&mut self, now_us: u64) {
        let now_ms = ms(now_us);
        self.rates.retain(|_, tat_us| *tat_us > now_us);
        self.leases.retain(|_, leases| {
            leases.retain(|_, expires_us| *expires_us > now_us);
            !leases.is_empty()
        });
        self.budgets
            .retain(|_, budget| budget.expires_at_ms > now_ms);
        self.last_sweep_us = now_us;
    }

    fn budget(&self, key: &str, now_us: u64) -> Option<Budget> {
        let budget = self.budgets.get(key)?;
        (budget.expires_at_ms > ms(now_us)).then_some(*budget)
    }

    /// The number of live leases on `key`, and whether `lease_id` is one of them.
    fn leases(&mut self, key: &str, lease_id: &str, now_us: u64) -> (u64, bool) {
        let Some(leases) = self.leases.get_mut(key) else {
            return (0, false);
        };
        leases.retain(|_, expires_us| *expires_us > now_us);
        let count = u64::try_from(leases.len()).unwrap_or(u64::MAX);
        (count, leases.contains_key(lease_id))
    }

    /// Evaluates every check; checks on a key already seen in this call see its effect.
    fn evaluate<'a>(
        &mut self,
        lease_id: &str,
        checks: &'a [Check],
        now_us: u64,
    ) -> (Vec<Outcome>, Vec<Apply<'a>>) {
        let mut outcomes = Vec::with_capacity(checks.len());
        let mut plan: Vec<Apply<'a>> = Vec::with_capacity(checks.len());
        for check in checks {
            let outcome = match check {
                Check::Rate {
                    key,
                    limit,
                    period_ms,
                    cost,
                } => {
                    let planned = plan.iter().rev().find_map(|apply| match apply {
                        Apply::Rate { key: k, tat_us } if k == key => Some(*tat_us),
                        _ => None,
                    });
                    let tat_us = planned.or_else(|| self.rates.get(key).copied());
                    let (outcome, stored) =
                        math::rate_check(tat_us, now_us, *limit, *period_ms, *cost);
                    if let Some(tat_us) = stored {
                        plan.push(Apply::Rate { key, tat_us });
                    }
                    outcome
                }
                Check::Concurrency { key, limit } => {
                    let planned = plan
                        .iter()
                        .any(|apply| matches!(apply, Apply::Lease { key: k } if k == key));
                    let (held, already_held) = self.leases(key, lease_id, now_us);
                    let (held, already_held) = if planned {
                        (held + u64::from(!already_held), true)
                    } else {
                        (held, already_held)
                    };
                    let outcome = math::concurrency_check(held, already_held, *limit);
                    if outcome.status == Status::Passed {
                        plan.push(Apply::Lease { key });
                    }
                    outcome
                }
                Check::Budget {
                    key,
                    limit,
                    cost,
                    expires_at_ms,
                } => {
                    let planned = plan.iter().rev().find_map(|apply| match apply {
                        Apply::Budget { key: k, used, .. } if k == key => Some(*used),
                        _ => None,
                    });
                    let used = planned.or_else(|| self.budget(key, now_us).map(|b| b.used));
                    let (outcome, stored) = math::budget_check(used, *limit, *cost);
                    if let Some(used) = stored {
                        plan.push(Apply::Budget {
                            key,
                            used,
                            expires_at_ms: *expires_at_ms,
                        });
                    }
                    outcome
                }
            };
            outcomes.push(outcome);
        }
        (outcomes, plan)
    }

    fn apply(&mut self, lease_id: &str, plan: Vec<Apply<'_>>, lease_expires_us: u64) {
        for apply in plan {
            match apply {
                Apply::Rate { key, tat_us } => {
                    self.rates.insert(key.to_owned(), tat_us);
                }
                Apply::Lease { key } => {
                    self.leases
                        .entry(key.to_owned())
                        .or_default()
                        .insert(lease_id.to_owned(), lease_expires_us);
                }
                Apply::Budget {
                    key,
                    used,
                    expires_at_ms,
                } => {
                    self.budgets.insert(
                        key.to_owned(),
                        Budget {
                            used,
                            expires_at_ms,
                        },
                    );
                }
            }
        }
    }

    fn release(&mut self, lease_id: &str, release: &Release, now_us: u64) {
        match release {
            Release::Rate {
                key,
                limit,
                period_ms,
                delta,
            } => {
                let tat_us = self.rates.get(key).copied();
                match math::rate_release(tat_us, now_us, *limit, *period_ms, *delta) {
                    Some(tat_us) if tat_us > now_us => {
                        self.rates.insert(key.clone(), tat_us);
                    }
                    // A full bucket is the same as no bucket.
                    Some(_) => {
                        self.rates.remove(key);
                    }
                    None => {}
                }
            }
            Release::Concurrency { key } => {
                if let Some(leases) = self.leases.get_mut(key) {
                    leases.remove(lease_id);
                    if leases.is_empty() {
                        self.leases.remove(key);
                    }
                }
            }
            Release::Budget { key, delta, .. } => {
                // A missing counter stays missing: the next acquire reports it unseeded and
                // the caller seeds it from the ledger, which is right where a counter made
                // from this delta alone would be short of everything spent before.
                if self.budget(key, now_us).is_some()
                    && let Some(budget) = self.budgets.get_mut(key)
                {
                    budget.used = budget.used.saturating_add(*delta);
                }
            }
        }
    }
}

fn ms(us: u64) -> i64 {
    i64::try_from(us / 1_000).unwrap_or(i64::MAX)
}

#[async_trait]
impl Limiter for MemoryLimiter {
    async fn acquire(&self, lease_id: &str, checks: &[Check]) -> Result<Verdict, KvError> {
        let now_us = (self.clock)();
        let mut state = self.lock(now_us);
        let (outcomes, plan) = state.evaluate(lease_id, checks, now_us);
        let verdict = math::verdict(checks.iter().map(math::check_limit), &outcomes);
        if verdict.admitted {
            state.apply(lease_id, plan, now_us.saturating_add(self.lease_us));
        }
        Ok(verdict)
    }

    async fn release(&self, lease_id: &str, releases: &[Release]) -> Result<(), KvError> {
        let now_us = (self.clock)();
        let mut state = self.lock(now_us);
        for release in releases {
            state.release(lease_id, release, now_us);
        }
        Ok(())
    }

    async fn seed_budget(&self, key: &str, used: u64, expires_at_ms: i64) -> Result<(), KvError> {
        let now_us = (self.clock)();
        let mut state = self.lock(now_us);
        if expires_at_ms <= 0 || state.budget(key, now_us).is_some() {
            return Ok(());
        }
        let used = i64::try_from(used).unwrap_or(i64::MAX);
        state.budgets.insert(
            key.to_owned(),
            Budget {
                used,
                expires_at_ms,
            },
        );
        Ok(())
    }
}

#[cfg(test)]
#[path = "limiter_tests.rs"]
mod tests;
