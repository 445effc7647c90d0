//! The response cache's policy: which requests may be answered from cache, under which key,
//! and what is stored. The bytes live in a [`ResponseCache`] backend (in process or Redis).
//!
//! The lookup goes through [`CacheLookup`], the seam where a semantic cache (nearest earlier
//! request by embedding) will plug in beside the exact one.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use landfall_config::{CacheConfig, CacheMode};
use landfall_kv::ResponseCache;
use landfall_types::{ChatChunk, ChatRequest, ChatResponse};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Request header: `use` caches a request the mode would not, `skip` bypasses the cache.
pub const CACHE_REQUEST_HEADER: &str = "x-landfall-cache";

/// A cached answer: a whole completion, or the chunks of a stream to replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CachedReply {
    Completion { response: ChatResponse },
    Stream { chunks: Vec<ChatChunk> },
}

/// Finds an earlier answer for a request. Implementations: exact match (here); a semantic
/// match over embeddings can be added without touching callers.
#[async_trait::async_trait]
pub trait CacheLookup: Send + Sync {
    /// An earlier answer; `None` on a miss or when the backend fails (counted in `errors`).
    async fn find(&self, key: &CacheKey) -> Option<CachedReply>;
    /// Keeps an answer, unless it is larger than [`CacheLookup::max_entry_bytes`].
    async fn store(&self, key: &CacheKey, reply: &CachedReply);
    /// Largest answer kept, in bytes of its JSON.
    fn max_entry_bytes(&self) -> u64;
    /// Backend failures so far, each served as a miss.
    fn errors(&self) -> u64;
}

/// Where a request's answer is cached: the tenant, the alias and the normalized request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    pub digest: String,
}

/// Exact-match cache over a byte store.
pub(crate) struct ExactCache {
    backend: Arc<dyn ResponseCache>,
    ttl: Duration,
    max_entry_bytes: u64,
    errors: std::sync::atomic::AtomicU64,
}

impl ExactCache {
    pub(crate) fn new(backend: Arc<dyn ResponseCache>, config: &CacheConfig) -> Self {
        Self {
            backend,
            ttl: Duration::from_millis(config.ttl_ms),
            max_entry_bytes: config.max_entry_bytes,
            errors: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn note_error(&self, error: &landfall_kv::KvError) {
        self.errors
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(%error, "response cache unavailable; serving without it");
    }
}

#[async_trait::async_trait]
impl CacheLookup for ExactCache {
    async fn find(&self, key: &CacheKey) -> Option<CachedReply> {
        let bytes = match self.backend.get(&key.digest).await {
            Ok(bytes) => bytes?,
            Err(error) => {
                self.note_error(&error);
                return None;
            }
        };
        match serde_json::from_slice(&bytes) {
            Ok(reply) => Some(reply),
            Err(error) => {
                tracing::warn!(%error, "unreadable cache entry ignored");
                None
            }
        }
    }

    async fn store(&self, key: &CacheKey, reply: &CachedReply) {
        let Ok(bytes) = serde_json::to_vec(reply) else {
            return;
        };
        if bytes.len() as u64 > self.max_entry_bytes {
            return;
        }
        if let Err(error) = self
            .backend
            .put(&key.digest, Bytes::from(bytes), self.ttl)
            .await
        {
            self.note_error(&error);
        }
    }

    fn max_entry_bytes(&self) -> u64 {
        self.max_entry_bytes
    }

    fn errors(&self) -> u64 {
        self.errors.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The cache key of `request` for `tenant_id`, when the policy lets it be cached.
pub(crate) fn key_for(
    config: &CacheConfig,
    tenant_id: &str,
    request: &ChatRequest,
    header: Option<&str>,
) -> Option<CacheKey> {
    if !config.enabled {
        return None;
    }
    let wanted = match header.map(str::trim) {
        Some(value) if value.eq_ignore_ascii_case("skip") => return None,
        Some(value) if value.eq_ignore_ascii_case("use") => true,
        _ => config.mode == CacheMode::Deterministic && request.temperature == Some(0.0),
    };
    if !wanted {
        return None;
    }
    let mut normalized = serde_json::to_value(request).ok()?;
    let fields = normalized.as_object_mut()?;
    // Fields that do not change the answer; `stream` selects the cached form separately.
    for field in ["stream", "stream_options", "user", "metadata", "store"] {
        fields.remove(field);
    }
    let mut hasher = Sha256::new();
    for part in [
        b"v1".as_slice(),
        tenant_id.as_bytes(),
        request.model.as_bytes(),
    ] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hasher.update([u8::from(request.is_stream())]);
    // serde_json's map is ordered by key, so equal requests serialize equally.
    hasher.update(serde_json::to_vec(&normalized).ok()?);
    let digest = hasher.finalize();
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    Some(CacheKey {
        digest: format!("rc:{hex}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: serde_json::Value) -> ChatRequest {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn only_deterministic_or_opted_in_requests_are_cached() {
        let config = CacheConfig::default();
        let zero = request(serde_json::json!({"model": "m", "messages": [], "temperature": 0}));
        let warm = request(serde_json::json!({"model": "m", "messages": [], "temperature": 0.7}));
        assert!(key_for(&config, "t", &zero, None).is_some());
        assert!(key_for(&config, "t", &warm, None).is_none());
        assert!(key_for(&config, "t", &warm, Some("use")).is_some());
        assert!(key_for(&config, "t", &zero, Some("skip")).is_none());
        let opt_in = CacheConfig {
            mode: CacheMode::OptIn,
            ..CacheConfig::default()
        };
        assert!(key_for(&opt_in, "t", &zero, None).is_none());
    }

    #[test]
    fn keys_separate_tenants_models_and_forms_but_not_field_order() {
        let config = CacheConfig::default();
        let a = request(
            serde_json::json!({"model": "m", "temperature": 0, "messages": [{"role": "user", "content": "hi"}], "seed": 1, "top_p": 1}),
        );
        let b = request(
            serde_json::json!({"top_p": 1, "seed": 1, "messages": [{"content": "hi", "role": "user"}], "temperature": 0, "model": "m", "user": "x"}),
        );
        let key = |tenant, request: &ChatRequest| key_for(&config, tenant, request, None).unwrap();
        assert_eq!(key("t", &a), key("t", &b));
        assert_ne!(key("t", &a), key("u", &a));
        let mut streamed = a.clone();
        streamed.stream = Some(true);
        assert_ne!(key("t", &a), key("t", &streamed));
        let mut other_model = a.clone();
        other_model.model = "n".to_owned();
        assert_ne!(key("t", &a), key("t", &other_model));
    }
}
