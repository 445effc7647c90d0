//! The Redis backend, shared by every replica: limiter counters updated by Lua scripts (one
//! `EVALSHA` per call), cache entries as plain strings with a TTL.
//!
//! Each of [`RedisLimiter`] and [`RedisCache`] holds its own multiplexed connection through
//! `redis`'s `ConnectionManager`, which reconnects on its own after Redis comes back. Every call
//! is bounded by [`RedisSettings::timeout_ms`] and fails with [`KvError::Unavailable`] when
//! Redis does not answer in time, so a Redis that is down costs a request at most that long.
//!
//! One Redis server at one URL (no Sentinel discovery); not Redis Cluster,
//! where the keys of one script call could live on different nodes.

mod cache;
mod limiter;

use std::future::Future;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, RedisError, ServerErrorKind};

use crate::KvError;

pub use cache::RedisCache;
pub use limiter::RedisLimiter;

const BACKEND: &str = "redis";

/// How long `connect` and each reconnection attempt may take, at least.
const MIN_CONNECT_TIMEOUT_MS: u64 = 1_000;

/// Where Redis is and how to use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `redis://[user:password@]host:port[/db]` (`rediss://` needs TLS, which is not built in).
    pub url: String,
    /// Put before every key, so several deployments can share one Redis.
    pub prefix: String,
    /// The longest one call may wait for Redis before failing as unavailable.
    pub timeout_ms: u64,
    /// How long a concurrency lease lives when its request never releases it (a crashed
    /// replica).
    pub lease_ms: u64,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".to_owned(),
            prefix: "landfall:".to_owned(),
            timeout_ms: 200,
            lease_ms: 900_000,
        }
    }
}

/// A connection with the settings' prefix and time limit.
#[derive(Clone)]
struct Connection {
    manager: ConnectionManager,
    prefix: String,
    timeout: Duration,
}

impl Connection {
    /// Connects, failing within `max(timeout_ms, 1 s)` when Redis cannot be reached.
    async fn open(settings: &RedisSettings) -> Result<Self, KvError> {
        let client = Client::open(settings.url.as_str()).map_err(|error| KvError::Protocol {
            backend: BACKEND,
            message: format!("invalid Redis URL: {error}"),
        })?;
        let timeout = Duration::from_millis(settings.timeout_ms);
        let connect_timeout =
            Duration::from_millis(settings.timeout_ms.max(MIN_CONNECT_TIMEOUT_MS));
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let manager = tokio::time::timeout(
            connect_timeout,
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| timed_out(connect_timeout))?
        .map_err(from_redis)?;
        Ok(Self {
            manager,
            prefix: settings.prefix.clone(),
            timeout,
        })
    }

    fn key(&self, key: &str) -> String {
        let mut full = String::with_capacity(self.prefix.len() + key.len());
        full.push_str(&self.prefix);
        full.push_str(key);
        full
    }

    /// Runs `call` on the connection, within the time limit.
    async fn run<T, F, Fut>(&self, call: F) -> Result<T, KvError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        tokio::time::timeout(self.timeout, call(self.manager.clone()))
            .await
            .map_err(|_| timed_out(self.timeout))?
            .map_err(from_redis)
    }
}

fn timed_out(timeout: Duration) -> KvError {
    KvError::Unavailable {
        backend: BACKEND,
        message: format!("no answer within {} ms", timeout.as_millis()),
    }
}

/// Errors from the server about its own state (loading, read-only replica, failover) and
/// failures to talk to it (refused, dropped, timed out) mean Redis is unavailable; other
/// errors from the server (a script error, a wrong type) are protocol errors.
fn from_redis(error: RedisError) -> KvError {
    let message = error.to_string();
    match error.kind() {
        ::redis::ErrorKind::Server(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::TryAgain
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::ReadOnly,
        ) => KvError::Unavailable {
            backend: BACKEND,
            message,
        },
        ::redis::ErrorKind::Server(_)
        | ::redis::ErrorKind::Parse
        | ::redis::ErrorKind::UnexpectedReturnType
        | ::redis::ErrorKind::Extension => KvError::Protocol {
            backend: BACKEND,
            message,
        },
        _ => KvError::Unavailable {
            backend: BACKEND,
            message,
        },
    }
}
