//! What the Redis backend does when Redis is down, unreachable or silent: it fails quickly
//! with `Unavailable`, never hangs, and works again once Redis is back.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use landfall_kv::{
    Check, KvError, Limiter, RedisCache, RedisLimiter, RedisSettings, ResponseCache,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::redis::{fresh_settings, redis_url, skip_redis};

fn settings_at(url: String) -> RedisSettings {
    RedisSettings {
        url,
        timeout_ms: 300,
        ..fresh_settings()
    }
}

fn assert_unavailable<T>(result: Result<T, KvError>, what: &str) {
    match result {
        Err(KvError::Unavailable { backend, .. }) => assert_eq!(backend, "redis"),
        Err(other) => panic!("{what}: expected Unavailable, got {other}"),
        Ok(_) => panic!("{what}: expected Unavailable, got a success"),
    }
}

fn a_check() -> [Check; 1] {
    [Check::Rate {
        key: "rl:down".to_owned(),
        limit: 1_000,
        period_ms: 1_000,
        cost: 1,
    }]
}

#[tokio::test]
async fn connecting_to_a_closed_port_fails_quickly() {
    let settings = settings_at("redis://127.0.0.1:1".to_owned());
    let started = Instant::now();
    assert_unavailable(RedisLimiter::connect(&settings).await, "limiter");
    assert_unavailable(RedisCache::connect(&settings).await, "cache");
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
}

#[tokio::test]
async fn a_bad_url_is_a_protocol_error() {
    let settings = settings_at("http://127.0.0.1:6379".to_owned());
    let result = RedisLimiter::connect(&settings).await;
    assert!(
        matches!(result, Err(KvError::Protocol { .. })),
        "{:?}",
        result.err()
    );
}

/// Accepts connections and never answers.
async fn silent_server() -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    (address, task)
}

#[tokio::test]
async fn connecting_to_a_silent_server_fails_quickly() {
    let (address, server) = silent_server().await;
    let settings = settings_at(format!("redis://{address}"));
    let started = Instant::now();
    assert_unavailable(RedisLimiter::connect(&settings).await, "limiter");
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    server.abort();
}

/// A TCP proxy to the real Redis that the test can cut and restore on the same port.
struct Proxy {
    address: SocketAddr,
    upstream: String,
    task: Option<JoinHandle<()>>,
}

impl Proxy {
    async fn start() -> Self {
        let url = redis_url();
        let upstream = url
            .trim_start_matches("redis://")
            .split('/')
            .next()
            .unwrap()
            .rsplit('@')
            .next()
            .unwrap()
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut proxy = Self {
            address,
            upstream,
            task: None,
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&mut self, listener: TcpListener) {
        let upstream = self.upstream.clone();
        // Aborting this task drops the listener and, with the JoinSet, every connection.
        self.task = Some(tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                connections.spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
        }));
    }

    async fn cut(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    async fn restore(&mut self) {
        let listener = TcpListener::bind(self.address).await.unwrap();
        self.serve(listener);
    }
}

#[tokio::test]
async fn calls_fail_quickly_while_redis_is_down_and_recover_after() {
    if skip_redis("calls_fail_quickly_while_redis_is_down_and_recover_after") {
        return;
    }
    let mut proxy = Proxy::start().await;
    let settings = settings_at(format!("redis://{}", proxy.address));
    let limiter = RedisLimiter::connect(&settings).await.unwrap();
    let cache = RedisCache::connect(&settings).await.unwrap();
    assert!(limiter.acquire("r", &a_check()).await.unwrap().admitted);
    assert_eq!(cache.get("rc:down").await.unwrap(), None);

    proxy.cut().await;
    for _ in 0..3 {
        let started = Instant::now();
        assert_unavailable(limiter.acquire("r", &a_check()).await, "acquire while down");
        assert_unavailable(cache.get("rc:down").await, "get while down");
        let elapsed = started.elapsed();
        // Two calls, each within its 300 ms, plus scheduling slack.
        assert!(elapsed < Duration::from_millis(1_500), "took {elapsed:?}");
    }

    proxy.restore().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let acquired = limiter.acquire("r", &a_check()).await;
        let got = cache.get("rc:down").await;
        if acquired.is_ok() && got.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still failing 5 s after Redis came back: {:?} {:?}",
            acquired.err(),
            got.err()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    proxy.cut().await;
}
