//! Admission: the counters a request must pass (rates, tokens, concurrency and budgets of its
//! tenant and key), taken in one atomic step with tokens reserved from an estimate, and the
//! settlement that corrects every reservation to the exact usage afterwards.

use std::sync::Arc;
use std::time::Duration;

use landfall_config::OnBackendError;
use landfall_kv::{Check, CheckState, Release, Verdict};
use landfall_storage::{Budget, BudgetLimit, Limits, UsageScope};
use landfall_types::TokenPrice;

use crate::error::period_name;
use crate::ledger::Usage;
use crate::periods::windows;
use crate::{GovernanceError, Inner, Principal, now_millis};

/// What a request is expected to consume, for reservations.
#[derive(Debug, Clone, Copy)]
pub struct Demand<'a> {
    pub model: &'a str,
    pub prompt_tokens: u64,
    /// The request's `max_tokens`, or the configured default when it has none.
    pub completion_tokens: u64,
    /// The highest price among the model's targets.
    pub price: Option<TokenPrice>,
}

impl Demand<'_> {
    fn tokens(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }

    fn cost_nanos(&self) -> u64 {
        self.price.map_or(0, |price| {
            price.cost_of(self.prompt_tokens, 0, self.completion_tokens)
        })
    }
}

/// The limits that answer `x-ratelimit-*` headers: the tightest request and token limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimitHeaders {
    pub requests: Option<CheckState>,
    pub tokens: Option<CheckState>,
}

impl RateLimitHeaders {
    /// OpenAI's header names and values, e.g. `x-ratelimit-reset-requests: 1s`.
    #[must_use]
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        if let Some(state) = self.requests {
            pairs.push(("x-ratelimit-limit-requests", state.limit.to_string()));
            pairs.push((
                "x-ratelimit-remaining-requests",
                state.remaining.to_string(),
            ));
            pairs.push(("x-ratelimit-reset-requests", duration_text(state.reset_ms)));
        }
        if let Some(state) = self.tokens {
            pairs.push(("x-ratelimit-limit-tokens", state.limit.to_string()));
            pairs.push(("x-ratelimit-remaining-tokens", state.remaining.to_string()));
            pairs.push(("x-ratelimit-reset-tokens", duration_text(state.reset_ms)));
        }
        pairs
    }

    fn keep_tighter(slot: &mut Option<CheckState>, state: CheckState) {
        if slot.is_none_or(|current| state.remaining < current.remaining) {
            *slot = Some(state);
        }
    }
}

/// OpenAI's duration format: `20ms`, `1s`, `1.5s`, `6m0s`.
#[must_use]
pub fn duration_text(millis: u64) -> String {
    if millis < 1_000 {
        return format!("{millis}ms");
    }
    let minutes = millis / 60_000;
    let seconds = (millis % 60_000) as f64 / 1_000.0;
    if minutes == 0 {
        format!("{seconds}s")
    } else {
        format!("{minutes}m{seconds}s")
    }
}

/// What a counter is for.
#[derive(Debug, Clone, Copy)]
enum Purpose {
    Requests(&'static str),
    Tokens,
    Concurrency,
    Budget(Budget, i64),
}

/// What each check of a plan is for, and whose it is (parallel to the checks).
struct Planned<'a> {
    purpose: Purpose,
    scope: &'static str,
    id: &'a str,
}

/// The counters for one principal and demand.
fn plan<'a>(principal: &'a Principal, demand: &Demand<'_>) -> (Vec<Check>, Vec<Planned<'a>>) {
    let mut planned = (Vec::new(), Vec::new());
    let tenant = &principal.tenant;
    add_scope(
        &mut planned,
        "tenant",
        &tenant.id,
        &tenant.limits,
        &tenant.budgets,
        demand,
    );
    if let Some(key) = &principal.key {
        add_scope(
            &mut planned,
            "key",
            &key.id,
            &key.limits,
            &key.budgets,
            demand,
        );
    }
    planned
}

fn add_scope<'a>(
    (checks, planned): &mut (Vec<Check>, Vec<Planned<'a>>),
    scope: &'static str,
    id: &'a str,
    limits: &Limits,
    budgets: &[Budget],
    demand: &Demand<'_>,
) {
    let initial = &scope[..1];
    let mut push = |check: Check, purpose: Purpose| {
        checks.push(check);
        planned.push(Planned { purpose, scope, id });
    };
    let rates = [
        (
            limits.requests_per_second,
            1_000,
            "rps",
            "requests per second",
        ),
        (
            limits.requests_per_minute,
            60_000,
            "rpm",
            "requests per minute",
        ),
    ];
    for (limit, period_ms, suffix, name) in rates {
        if let Some(limit) = limit {
            let key = counter_key(&["rl", initial, id, suffix]);
            let check = Check::Rate {
                key,
                limit,
                period_ms,
                cost: 1,
            };
            push(check, Purpose::Requests(name));
        }
    }
    if let Some(limit) = limits.tokens_per_minute {
        let key = counter_key(&["rl", initial, id, "tpm"]);
        let check = Check::Rate {
            key,
            limit,
            period_ms: 60_000,
            cost: demand.tokens(),
        };
        push(check, Purpose::Tokens);
    }
    if let Some(limit) = limits.max_concurrent_requests {
        let key = counter_key(&["cc", initial, id]);
        push(Check::Concurrency { key, limit }, Purpose::Concurrency);
    }
    if budgets.is_empty() {
        return;
    }
    let windows = windows(now_millis());
    for budget in budgets {
        let window = windows.get(budget.period);
        let (unit, limit, cost) = match budget.limit {
            BudgetLimit::Tokens(limit) => ("t", limit, demand.tokens()),
            BudgetLimit::CostNanos(limit) => ("c", limit, demand.cost_nanos()),
        };
        let key = counter_key(&["bg", initial, id, &window.label, unit]);
        // Kept a day past the period, so a late settlement still finds its counter.
        let expires_at_ms = window.end + 86_400_000;
        let check = Check::Budget {
            key,
            limit,
            cost,
            expires_at_ms,
        };
        push(check, Purpose::Budget(*budget, window.start));
    }
}

/// `parts` joined by `:`, in one allocation (this runs for every counter of every request).
fn counter_key(parts: &[&str]) -> String {
    let length = parts.iter().map(|part| part.len() + 1).sum();
    let mut key = String::with_capacity(length);
    for (index, part) in parts.iter().enumerate() {
        if index > 0 {
            key.push(':');
        }
        key.push_str(part);
    }
    key
}

/// A request let in: it holds its reservations until [`Admission::settle`] (or its drop, which
/// settles it as having used nothing, as for a failed or abandoned request).
pub struct Admission {
    inner: Arc<Inner>,
    lease_id: String,
    principal: Principal,
    model: String,
    reserved_tokens: u64,
    reserved_cost_nanos: u64,
    /// The checks taken, to correct after the request.
    taken: Vec<(Check, Purpose)>,
    headers: RateLimitHeaders,
    settled: bool,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Admission")
            .field("tenant_id", &self.principal.tenant.id)
            .field("key_id", &self.principal.key_id())
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl Admission {
    /// Values for the `x-ratelimit-*` response headers.
    #[must_use]
    pub fn headers(&self) -> RateLimitHeaders {
        self.headers
    }

    /// Corrects every reservation to what the request used and adds it to the ledger. Returns
    /// once the counters are corrected, so a client that sends its next request after the
    /// response finds its concurrency slot free.
    pub async fn settle(mut self, target: &str, usage: Usage) {
        if let Some(pending) = self.finish(target, usage) {
            pending.apply().await;
        }
    }

    /// Records the usage and returns the counter corrections still to apply.
    fn finish(&mut self, target: &str, usage: Usage) -> Option<PendingRelease> {
        if self.settled {
            return None;
        }
        self.settled = true;
        let tokens = usage.input_tokens.saturating_add(usage.output_tokens);
        let signed = |actual: u64, reserved: u64| {
            i64::try_from(actual).unwrap_or(i64::MAX) - i64::try_from(reserved).unwrap_or(i64::MAX)
        };
        let releases: Vec<Release> = self
            .taken
            .drain(..)
            .filter_map(|(check, purpose)| match (check, purpose) {
                (
                    Check::Rate {
                        key,
                        limit,
                        period_ms,
                        ..
                    },
                    Purpose::Tokens,
                ) => {
                    let delta = signed(tokens, self.reserved_tokens);
                    (delta != 0).then_some(Release::Rate {
                        key,
                        limit,
                        period_ms,
                        delta,
                    })
                }
                (Check::Concurrency { key, .. }, _) => Some(Release::Concurrency { key }),
                (
                    Check::Budget {
                        key, expires_at_ms, ..
                    },
                    Purpose::Budget(budget, _),
                ) => {
                    let delta = match budget.limit {
                        BudgetLimit::Tokens(_) => signed(tokens, self.reserved_tokens),
                        BudgetLimit::CostNanos(_) => {
                            signed(usage.cost_nanos, self.reserved_cost_nanos)
                        }
                    };
                    (delta != 0).then_some(Release::Budget {
                        key,
                        delta,
                        expires_at_ms,
                    })
                }
                _ => None,
            })
            .collect();
        self.inner.ledger.add(
            &self.principal.tenant.id,
            self.principal.key_id(),
            &self.model,
            target,
            &usage,
        );
        (!releases.is_empty()).then(|| PendingRelease {
            inner: Arc::clone(&self.inner),
            lease_id: std::mem::take(&mut self.lease_id),
            releases,
        })
    }
}

/// Counter corrections computed at settlement.
struct PendingRelease {
    inner: Arc<Inner>,
    lease_id: String,
    releases: Vec<Release>,
}

impl PendingRelease {
    async fn apply(self) {
        if let Err(error) = self
            .inner
            .limiter
            .release(&self.lease_id, &self.releases)
            .await
        {
            self.inner
                .stats
                .limiter_errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(%error, "cannot settle rate-limit reservations");
        }
    }
}

impl Drop for Admission {
    /// A request dropped unsettled (failed, refused downstream, or abandoned) used nothing; its
    /// corrections run in the background.
    fn drop(&mut self) {
        let Some(pending) = self.finish("none", Usage::failed()) else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(pending.apply());
        }
    }
}

/// Takes the counters of `principal` for `demand`, all or none.
pub(crate) async fn admit(
    inner: &Arc<Inner>,
    principal: &Principal,
    demand: &Demand<'_>,
) -> Result<Admission, GovernanceError> {
    let (checks, planned) = plan(principal, demand);
    let admission = |taken: Vec<(Check, Purpose)>, lease_id: String, headers| Admission {
        inner: Arc::clone(inner),
        lease_id,
        principal: principal.clone(),
        model: demand.model.to_owned(),
        reserved_tokens: demand.tokens(),
        reserved_cost_nanos: demand.cost_nanos(),
        taken,
        headers,
        settled: false,
    };
    if planned.is_empty() {
        return Ok(admission(
            Vec::new(),
            String::new(),
            RateLimitHeaders::default(),
        ));
    }
    // Only concurrency leases need an id.
    let needs_lease = checks
        .iter()
        .any(|check| matches!(check, Check::Concurrency { .. }));
    let lease_id = if needs_lease {
        lease_id()
    } else {
        String::new()
    };
    let verdict = match acquire_seeded(inner, &lease_id, &planned, &checks).await {
        Ok(verdict) => verdict,
        Err(error) => {
            inner
                .stats
                .limiter_errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return match inner.on_backend_error {
                OnBackendError::FailOpen => {
                    tracing::warn!(%error, "rate limiting unavailable; admitting without limits (fail_open)");
                    Ok(admission(Vec::new(), lease_id, RateLimitHeaders::default()))
                }
                OnBackendError::FailClosed => {
                    tracing::error!(%error, "rate limiting unavailable; refusing (fail_closed)");
                    Err(GovernanceError::LimiterUnavailable(error))
                }
            };
        }
    };
    let headers = headers(&planned, &verdict.states);
    if !verdict.admitted {
        return Err(refusal(&planned, &verdict, headers));
    }
    let taken = checks
        .into_iter()
        .zip(planned.iter().map(|planned| planned.purpose))
        .collect();
    Ok(admission(taken, lease_id, headers))
}

/// Acquires, seeding budget counters from the ledger first when the backend has none.
async fn acquire_seeded(
    inner: &Inner,
    lease_id: &str,
    planned: &[Planned<'_>],
    checks: &[Check],
) -> Result<Verdict, landfall_kv::KvError> {
    let mut verdict = inner.limiter.acquire(lease_id, checks).await?;
    // A seed is created at most once per counter; a second round covers a counter that expired
    // in between.
    for _ in 0..2 {
        if verdict.unseeded.is_empty() {
            break;
        }
        for &index in &verdict.unseeded {
            let (
                Some(Check::Budget {
                    key, expires_at_ms, ..
                }),
                Some(Planned {
                    purpose: Purpose::Budget(budget, start),
                    scope,
                    id,
                }),
            ) = (checks.get(index), planned.get(index))
            else {
                continue;
            };
            let used = match budget_used(inner, scope, id, budget, *start).await {
                Ok(used) => used,
                Err(error) => {
                    return Err(landfall_kv::KvError::Unavailable {
                        backend: "metadata store",
                        message: error.to_string(),
                    });
                }
            };
            inner.limiter.seed_budget(key, used, *expires_at_ms).await?;
        }
        verdict = inner.limiter.acquire(lease_id, checks).await?;
    }
    Ok(verdict)
}

async fn budget_used(
    inner: &Inner,
    scope: &str,
    id: &str,
    budget: &Budget,
    since: i64,
) -> Result<u64, landfall_storage::StoreError> {
    let scope = if scope == "tenant" {
        UsageScope::Tenant(id)
    } else {
        UsageScope::Key(id)
    };
    // Usage not yet flushed is counted too, so a seed never forgets this replica's spend.
    let totals = inner
        .ledger
        .totals(inner.store.as_ref(), scope, since)
        .await?;
    Ok(match budget.limit {
        BudgetLimit::Tokens(_) => totals.tokens,
        BudgetLimit::CostNanos(_) => totals.cost_nanos,
    })
}

fn headers(planned: &[Planned<'_>], states: &[CheckState]) -> RateLimitHeaders {
    let mut headers = RateLimitHeaders::default();
    for (planned, state) in planned.iter().zip(states) {
        match planned.purpose {
            Purpose::Requests(_) => RateLimitHeaders::keep_tighter(&mut headers.requests, *state),
            Purpose::Tokens => RateLimitHeaders::keep_tighter(&mut headers.tokens, *state),
            Purpose::Concurrency | Purpose::Budget(..) => {}
        }
    }
    headers
}

fn refusal(
    planned: &[Planned<'_>],
    verdict: &Verdict,
    headers: RateLimitHeaders,
) -> GovernanceError {
    let headers = Box::new(headers);
    let denied = verdict.denied.and_then(|index| planned.get(index));
    let Some(denied) = denied else {
        // Not admitted without a denial: budget counters that could not be seeded.
        return GovernanceError::LimiterUnavailable(landfall_kv::KvError::Protocol {
            backend: "limiter",
            message: "budget counters could not be created".to_owned(),
        });
    };
    let retry_after = verdict.retry_after_ms.map(Duration::from_millis);
    let (scope, id) = (denied.scope, denied.id.to_owned());
    match denied.purpose {
        Purpose::Budget(budget, _) => GovernanceError::QuotaExceeded {
            scope,
            id,
            period: period_name(budget.period),
        },
        Purpose::Requests(limit) => GovernanceError::RateLimited {
            scope,
            id,
            limit,
            retry_after,
            headers,
        },
        Purpose::Tokens => GovernanceError::RateLimited {
            scope,
            id,
            limit: "tokens per minute",
            retry_after,
            headers,
        },
        Purpose::Concurrency => GovernanceError::RateLimited {
            scope,
            id,
            limit: "concurrent requests",
            retry_after: retry_after.or(Some(Duration::from_secs(1))),
            headers,
        },
    }
}

fn lease_id() -> String {
    use rand::Rng;
    format!("{:032x}", rand::rng().random::<u128>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_openai() {
        assert_eq!(duration_text(20), "20ms");
        assert_eq!(duration_text(1_000), "1s");
        assert_eq!(duration_text(1_500), "1.5s");
        assert_eq!(duration_text(360_000), "6m0s");
    }
}
