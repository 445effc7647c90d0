//! The conformance suites on the Redis server at `LANDFALL_TEST_REDIS_URL`, each test under a
//! key prefix of its own, and how the keys look in Redis.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use landfall_kv::{
    Check, Limiter, RedisCache, RedisLimiter, RedisSettings, Release, ResponseCache,
};

const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

pub fn redis_url() -> String {
    std::env::var("LANDFALL_TEST_REDIS_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// Whether the Redis tests were asked to skip; says so on stderr when they were.
pub fn skip_redis(test: &str) -> bool {
    let skip = std::env::var("LANDFALL_TEST_SKIP_REDIS").is_ok_and(|value| value == "1");
    if skip {
        eprintln!("skipping Redis test `{test}`: LANDFALL_TEST_SKIP_REDIS=1");
    }
    skip
}

/// Settings with a prefix no other test (in this or another process) uses.
pub fn fresh_settings() -> RedisSettings {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    RedisSettings {
        url: redis_url(),
        prefix: format!(
            "landfall-test:{}:{}:{nanos}:",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ),
        // Generous: the machine is shared with builds; failures are still caught in time.
        timeout_ms: 2_000,
        lease_ms: 60_000,
    }
}

fn unreachable(url: &str, err: impl std::fmt::Display) -> ! {
    panic!(
        "the Redis tests need a server at {url} (set LANDFALL_TEST_REDIS_URL to another one, \
         or LANDFALL_TEST_SKIP_REDIS=1 to skip them): {err}"
    )
}

/// A raw connection, to look at keys.
pub async fn raw_connection() -> ::redis::aio::MultiplexedConnection {
    let url = redis_url();
    let client = ::redis::Client::open(url.as_str()).unwrap();
    match client.get_multiplexed_async_connection().await {
        Ok(connection) => connection,
        Err(err) => unreachable(&url, err),
    }
}

/// A limiter and a cache under a fresh prefix, whose keys `finish` deletes.
pub struct RedisFixture {
    settings: RedisSettings,
    limiter: Arc<RedisLimiter>,
    cache: Arc<RedisCache>,
}

impl RedisFixture {
    pub async fn start(case: &str) -> Option<Self> {
        if skip_redis(case) {
            return None;
        }
        let settings = fresh_settings();
        let limiter = RedisLimiter::connect(&settings)
            .await
            .unwrap_or_else(|err| unreachable(&settings.url, err));
        let cache = RedisCache::connect(&settings)
            .await
            .unwrap_or_else(|err| unreachable(&settings.url, err));
        Some(Self {
            settings,
            limiter: Arc::new(limiter),
            cache: Arc::new(cache),
        })
    }

    pub fn limiter(&self) -> Arc<dyn Limiter> {
        self.limiter.clone()
    }

    pub fn cache(&self) -> Arc<dyn ResponseCache> {
        self.cache.clone()
    }

    pub async fn finish(self) {
        let mut connection = raw_connection().await;
        let pattern = format!("{}*", self.settings.prefix);
        let keys: Vec<String> = ::redis::cmd("KEYS")
            .arg(&pattern)
            .query_async(&mut connection)
            .await
            .unwrap();
        if !keys.is_empty() {
            let _: () = ::redis::cmd("DEL")
                .arg(&keys)
                .query_async(&mut connection)
                .await
                .unwrap();
        }
    }
}

crate::conformance_suite!(RedisFixture);

async fn pttl(connection: &mut ::redis::aio::MultiplexedConnection, key: &str) -> i64 {
    ::redis::cmd("PTTL")
        .arg(key)
        .query_async(connection)
        .await
        .unwrap()
}

#[tokio::test]
async fn keys_carry_the_prefix_and_expire() {
    let Some(fixture) = RedisFixture::start("keys_carry_the_prefix_and_expire").await else {
        return;
    };
    let prefix = fixture.settings.prefix.clone();
    let expires_at_ms = crate::now_ms() + 30_000;
    let limiter = fixture.limiter();
    limiter
        .seed_budget("bg:t:acme", 0, expires_at_ms)
        .await
        .unwrap();
    let checks = [
        Check::Rate {
            key: "rl:t:acme:rps".to_owned(),
            limit: 10,
            period_ms: 1_000,
            cost: 1,
        },
        Check::Concurrency {
            key: "cc:t:acme".to_owned(),
            limit: 10,
        },
        Check::Budget {
            key: "bg:t:acme".to_owned(),
            limit: 10,
            cost: 1,
            expires_at_ms,
        },
    ];
    assert!(limiter.acquire("req-1", &checks).await.unwrap().admitted);

    let mut connection = raw_connection().await;
    let rate_ttl = pttl(&mut connection, &format!("{prefix}rl:t:acme:rps")).await;
    assert!((100..=1_100).contains(&rate_ttl), "rate PTTL {rate_ttl}");
    let lease_ttl = pttl(&mut connection, &format!("{prefix}cc:t:acme")).await;
    assert!(
        (50_000..=60_000).contains(&lease_ttl),
        "lease PTTL {lease_ttl}"
    );
    let budget_ttl = pttl(&mut connection, &format!("{prefix}bg:t:acme")).await;
    assert!(
        (20_000..=30_000).contains(&budget_ttl),
        "budget PTTL {budget_ttl}"
    );
    let used: i64 = ::redis::cmd("GET")
        .arg(format!("{prefix}bg:t:acme"))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(used, 1);

    // A release of budget keeps its expiry; the lease's set disappears with its last lease.
    let releases = [
        Release::Budget {
            key: "bg:t:acme".to_owned(),
            delta: 4,
            expires_at_ms,
        },
        Release::Concurrency {
            key: "cc:t:acme".to_owned(),
        },
    ];
    limiter.release("req-1", &releases).await.unwrap();
    let budget_ttl = pttl(&mut connection, &format!("{prefix}bg:t:acme")).await;
    assert!(
        (20_000..=30_000).contains(&budget_ttl),
        "budget PTTL {budget_ttl}"
    );
    let exists: i64 = ::redis::cmd("EXISTS")
        .arg(format!("{prefix}cc:t:acme"))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(exists, 0);
    fixture.finish().await;
}
