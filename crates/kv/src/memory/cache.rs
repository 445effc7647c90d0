use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use moka::Expiry;
use moka::future::Cache;

use crate::{KvError, ResponseCache};

/// [`ResponseCache`] for one process, bounded by bytes (keys plus values), each entry expiring
/// after its own TTL. When full, `moka` evicts by recency and frequency (TinyLFU), and may
/// decline to keep a new entry that is unlikely to be read.
pub struct MemoryCache {
    entries: Cache<String, Entry>,
}

#[derive(Clone)]
struct Entry {
    value: Bytes,
    ttl: Duration,
}

/// Expires each entry `ttl` after its latest `put`.
struct PerEntryTtl;

impl Expiry<String, Entry> for PerEntryTtl {
    fn expire_after_create(&self, _key: &String, entry: &Entry, _at: Instant) -> Option<Duration> {
        Some(entry.ttl)
    }

    fn expire_after_update(
        &self,
        _key: &String,
        entry: &Entry,
        _at: Instant,
        _until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }
}

impl MemoryCache {
    /// An empty cache holding at most about `max_bytes` of keys and values.
    pub fn new(max_bytes: u64) -> Self {
        let entries = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|key: &String, entry: &Entry| {
                u32::try_from(key.len() + entry.value.len()).unwrap_or(u32::MAX)
            })
            .expire_after(PerEntryTtl)
            .build();
        Self { entries }
    }
}

#[async_trait]
impl ResponseCache for MemoryCache {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, KvError> {
        Ok(self.entries.get(key).await.map(|entry| entry.value))
    }

    async fn put(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), KvError> {
        if ttl.is_zero() {
            // Nothing to keep, but the latest put must still hide an older value.
            self.entries.invalidate(key).await;
            return Ok(());
        }
        self.entries
            .insert(key.to_owned(), Entry { value, ttl })
            .await;
        Ok(())
    }
}
