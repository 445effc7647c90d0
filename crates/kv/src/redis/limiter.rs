use ::redis::Script;
use async_trait::async_trait;

use super::{BACKEND, Connection, RedisSettings};
use crate::math::{self, CONCURRENCY_RETRY_AFTER_MS, Counter, Outcome, Status};
use crate::{Check, KvError, Limiter, Release, Verdict};

const ACQUIRE: &str = concat!(include_str!("gcra.lua"), include_str!("acquire.lua"));
const RELEASE: &str = concat!(include_str!("gcra.lua"), include_str!("release.lua"));

/// [`Limiter`] on Redis, shared by every replica. Each `acquire` and `release` is one Lua
/// script (sent by SHA, loaded on first use), so it is atomic across its keys and uses Redis's
/// clock. Leases are sorted sets scored by expiry; rates and budgets are integer strings.
///
/// Values above 2^53 (µs TATs near the year 2255, limits or costs that large) lose precision in
/// Lua's doubles.
pub struct RedisLimiter {
    connection: Connection,
    lease_ms: u64,
    acquire: Script,
    release: Script,
}

impl RedisLimiter {
    /// Connects to Redis.
    ///
    /// # Errors
    ///
    /// [`KvError::Unavailable`] when Redis cannot be reached within `max(timeout_ms, 1 s)`,
    /// [`KvError::Protocol`] for an invalid URL.
    pub async fn connect(settings: &RedisSettings) -> Result<Self, KvError> {
        Ok(Self {
            connection: Connection::open(settings).await?,
            lease_ms: settings.lease_ms,
            acquire: Script::new(ACQUIRE),
            release: Script::new(RELEASE),
        })
    }
}

#[async_trait]
impl Limiter for RedisLimiter {
    async fn acquire(&self, lease_id: &str, checks: &[Check]) -> Result<Verdict, KvError> {
        if checks.is_empty() {
            return Ok(math::verdict([], &[]));
        }
        let mut invocation = self.acquire.prepare_invoke();
        invocation
            .arg(lease_id)
            .arg(self.lease_ms)
            .arg(CONCURRENCY_RETRY_AFTER_MS);
        for check in checks {
            match check {
                Check::Rate {
                    key,
                    limit,
                    period_ms,
                    cost,
                } => invocation
                    .key(self.connection.key(key))
                    .arg("r")
                    .arg(limit)
                    .arg(period_ms)
                    .arg(cost),
                Check::Concurrency { key, limit } => invocation
                    .key(self.connection.key(key))
                    .arg("c")
                    .arg(limit)
                    .arg(0)
                    .arg(0),
                Check::Budget {
                    key,
                    limit,
                    cost,
                    expires_at_ms,
                } => invocation
                    .key(self.connection.key(key))
                    .arg("b")
                    .arg(limit)
                    .arg(cost)
                    .arg(expires_at_ms),
            };
        }
        let reply: Vec<i64> = self
            .connection
            .run(|mut manager| async move { invocation.invoke_async(&mut manager).await })
            .await?;
        let outcomes = parse_outcomes(&reply, checks.len())?;
        Ok(math::verdict(
            checks.iter().map(math::check_limit),
            &outcomes,
        ))
    }

    async fn release(&self, lease_id: &str, releases: &[Release]) -> Result<(), KvError> {
        if releases.is_empty() {
            return Ok(());
        }
        let mut invocation = self.release.prepare_invoke();
        invocation.arg(lease_id);
        for release in releases {
            match release {
                Release::Rate {
                    key,
                    limit,
                    period_ms,
                    delta,
                } => invocation
                    .key(self.connection.key(key))
                    .arg("r")
                    .arg(limit)
                    .arg(period_ms)
                    .arg(delta),
                Release::Concurrency { key } => invocation
                    .key(self.connection.key(key))
                    .arg("c")
                    .arg(0)
                    .arg(0)
                    .arg(0),
                Release::Budget { key, delta, .. } => invocation
                    .key(self.connection.key(key))
                    .arg("b")
                    .arg(delta)
                    .arg(0)
                    .arg(0),
            };
        }
        self.connection
            .run(|mut manager| async move { invocation.invoke_async::<i64>(&mut manager).await })
            .await?;
        Ok(())
    }

    async fn seed_budget(&self, key: &str, used: u64, expires_at_ms: i64) -> Result<(), KvError> {
        // Redis refuses a non-positive PXAT; such a counter would be expired anyway.
        if expires_at_ms <= 0 {
            return Ok(());
        }
        let used = i64::try_from(used).unwrap_or(i64::MAX);
        let mut command = ::redis::cmd("SET");
        command
            .arg(self.connection.key(key))
            .arg(used)
            .arg("NX")
            .arg("PXAT")
            .arg(expires_at_ms);
        self.connection
            .run(|mut manager| async move {
                command
                    .query_async::<Option<String>>(&mut manager)
                    .await
            })
            .await?;
        Ok(())
    }
}

/// Reads the script's four integers per check.
fn parse_outcomes(reply: &[i64], checks: usize) -> Result<Vec<Outcome>, KvError> {
    let protocol = |message: String| KvError::Protocol {
        backend: BACKEND,
        message,
    };
    if reply.len() != checks * 4 {
        return Err(protocol(format!(
            "acquire returned {} values for {checks} checks",
            reply.len()
        )));
    }
    let unsigned = |value: i64| u64::try_from(value).unwrap_or(0);
    reply
        .chunks_exact(4)
        .map(|values| {
            let &[status, remaining, reset_ms, retry_ms] = values else {
                return Err(protocol("acquire returned a short chunk".to_owned()));
            };
            let status = match status {
                0 => Status::Passed,
                1 => Status::Refused,
                2 => Status::Unseeded,
                other => return Err(protocol(format!("acquire returned status {other}"))),
            };
            // The script reports the counter the verdict shows (applied or not).
            let counter = Counter {
                remaining: unsigned(remaining),
                reset_ms: unsigned(reset_ms),
            };
            Ok(Outcome {
                status,
                unapplied: counter,
                applied: counter,
                retry_after_ms: (retry_ms >= 0).then(|| unsigned(retry_ms)),
            })
        })
        .collect()
}

#[cfg(test)]
#[path = "parity_tests.rs"]
mod parity_tests;
