use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::KvError;

/// Opaque bytes by key, with a time to live.
///
/// Guarantees: `get` returns the bytes of the latest `put` of that key within its TTL, or
/// `None`; an entry may disappear earlier when the cache is full (least recently used first).
/// Keys are used as given: callers put tenant separation into them.
#[async_trait]
pub trait ResponseCache: Send + Sync {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, KvError>;
    async fn put(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), KvError>;
}
