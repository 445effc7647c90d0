use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::{Connection, RedisSettings};
use crate::{KvError, ResponseCache};

/// [`ResponseCache`] on Redis: `GET`, and `SET … PX ttl`. Eviction when Redis is full follows
/// its `maxmemory-policy`.
pub struct RedisCache {
    connection: Connection,
}

impl RedisCache {
    /// Connects to Redis.
    ///
    /// # Errors
    ///
    /// [`KvError::Unavailable`] when Redis cannot be reached within `max(timeout_ms, 1 s)`,
    /// [`KvError::Protocol`] for an invalid URL.
    pub async fn connect(settings: &RedisSettings) -> Result<Self, KvError> {
        Ok(Self {
            connection: Connection::open(settings).await?,
        })
    }
}

#[async_trait]
impl ResponseCache for RedisCache {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, KvError> {
        let mut command = ::redis::cmd("GET");
        command.arg(self.connection.key(key));
        let value =
            self.connection
                .run(|mut manager| async move {
                    command.query_async::<Option<Vec<u8>>>(&mut manager).await
                })
                .await?;
        Ok(value.map(Bytes::from))
    }

    async fn put(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), KvError> {
        let key = self.connection.key(key);
        // Round up: a TTL under 1 ms still keeps the value for a moment.
        let ttl_ms = u64::try_from(ttl.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX);
        let command = if ttl_ms == 0 {
            // Nothing to keep, but the latest put must still hide an older value.
            let mut command = ::redis::cmd("DEL");
            command.arg(key);
            command
        } else {
            let mut command = ::redis::cmd("SET");
            command.arg(key).arg(value.as_ref()).arg("PX").arg(ttl_ms);
            command
        };
        self.connection
            .run(|mut manager| async move { command.query_async::<()>(&mut manager).await })
            .await
    }
}
