//! The conformance suites on the in-process backend.

use std::sync::Arc;

use landfall_kv::{Limiter, MemoryCache, MemoryLimiter, ResponseCache};

/// A fresh limiter and cache.
pub struct MemoryFixture {
    limiter: Arc<MemoryLimiter>,
    cache: Arc<MemoryCache>,
}

impl MemoryFixture {
    pub async fn start(_case: &str) -> Option<Self> {
        Some(Self {
            limiter: Arc::new(MemoryLimiter::new()),
            cache: Arc::new(MemoryCache::new(1 << 20)),
        })
    }

    pub fn limiter(&self) -> Arc<dyn Limiter> {
        self.limiter.clone()
    }

    pub fn cache(&self) -> Arc<dyn ResponseCache> {
        self.cache.clone()
    }

    pub async fn finish(self) {}
}

crate::conformance_suite!(MemoryFixture);

#[tokio::test]
async fn the_cache_stays_within_its_bytes() {
    let cache = MemoryCache::new(10_000);
    let value = bytes::Bytes::from(vec![7_u8; 1_000]);
    for index in 0..100 {
        let key = format!("k{index}");
        cache
            .put(&key, value.clone(), std::time::Duration::from_secs(60))
            .await
            .unwrap();
    }
    let mut kept = 0;
    for index in 0..100 {
        if cache.get(&format!("k{index}")).await.unwrap().is_some() {
            kept += 1;
        }
    }
    assert!(kept <= 10, "{kept} entries of 1 kB kept in 10 kB");
}
