//! The cache conformance suite: every case runs on every backend.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use landfall_kv::ResponseCache;

const MINUTE: Duration = Duration::from_secs(60);

pub async fn a_put_is_read_back_by_its_key_only(cache: Arc<dyn ResponseCache>) {
    assert_eq!(cache.get("rc:t:acme:abc").await.unwrap(), None);
    let body = Bytes::from_static(b"{\"id\":\"chatcmpl-1\"}");
    cache
        .put("rc:t:acme:abc", body.clone(), MINUTE)
        .await
        .unwrap();
    assert_eq!(cache.get("rc:t:acme:abc").await.unwrap(), Some(body));
    // Another tenant with the same hash, another hash: separate entries.
    assert_eq!(cache.get("rc:t:other:abc").await.unwrap(), None);
    assert_eq!(cache.get("rc:t:acme:abd").await.unwrap(), None);
    cache
        .put("rc:t:other:abc", Bytes::from_static(b"other"), MINUTE)
        .await
        .unwrap();
    assert_eq!(
        cache.get("rc:t:acme:abc").await.unwrap().as_deref(),
        Some(&b"{\"id\":\"chatcmpl-1\"}"[..])
    );
    assert_eq!(
        cache.get("rc:t:other:abc").await.unwrap().as_deref(),
        Some(&b"other"[..])
    );
    // Binary values and empty values survive as they are.
    let binary = Bytes::from((0..=255_u8).collect::<Vec<_>>());
    cache
        .put("rc:binary", binary.clone(), MINUTE)
        .await
        .unwrap();
    assert_eq!(cache.get("rc:binary").await.unwrap(), Some(binary));
    cache.put("rc:empty", Bytes::new(), MINUTE).await.unwrap();
    assert_eq!(cache.get("rc:empty").await.unwrap(), Some(Bytes::new()));
}

pub async fn the_latest_put_wins(cache: Arc<dyn ResponseCache>) {
    cache
        .put("rc:k", Bytes::from_static(b"one"), MINUTE)
        .await
        .unwrap();
    cache
        .put("rc:k", Bytes::from_static(b"two"), MINUTE)
        .await
        .unwrap();
    assert_eq!(
        cache.get("rc:k").await.unwrap().as_deref(),
        Some(&b"two"[..])
    );
    // A zero TTL keeps nothing, and hides what was there.
    cache
        .put("rc:k", Bytes::from_static(b"three"), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(cache.get("rc:k").await.unwrap(), None);
}

pub async fn entries_expire_after_their_ttl(cache: Arc<dyn ResponseCache>) {
    let short = Duration::from_millis(300);
    cache
        .put("rc:short", Bytes::from_static(b"s"), short)
        .await
        .unwrap();
    cache
        .put("rc:long", Bytes::from_static(b"l"), MINUTE)
        .await
        .unwrap();
    // Overwriting takes the new TTL: long, then short.
    cache
        .put("rc:shortened", Bytes::from_static(b"1"), MINUTE)
        .await
        .unwrap();
    cache
        .put("rc:shortened", Bytes::from_static(b"2"), short)
        .await
        .unwrap();
    // And short, then long.
    cache
        .put("rc:lengthened", Bytes::from_static(b"1"), short)
        .await
        .unwrap();
    cache
        .put("rc:lengthened", Bytes::from_static(b"2"), MINUTE)
        .await
        .unwrap();
    assert!(cache.get("rc:short").await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(cache.get("rc:short").await.unwrap(), None);
    assert_eq!(cache.get("rc:shortened").await.unwrap(), None);
    assert_eq!(
        cache.get("rc:long").await.unwrap().as_deref(),
        Some(&b"l"[..])
    );
    assert_eq!(
        cache.get("rc:lengthened").await.unwrap().as_deref(),
        Some(&b"2"[..])
    );
}
