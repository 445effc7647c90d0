//! The admin API's validation, load shedding, per-target concurrency, and what happens when the
//! counter backend (Redis) goes away.

use std::time::Duration;

use landfall_testkit::{MockUpstream, Reply, Script};
use serde_json::{Value, json};

use crate::harness::{Backends, hello, provider, start_on};

const ADMIN_KEY: &str = "admin-key-0123456789";

fn config(upstream: &MockUpstream, extra: &str) -> String {
    format!(
        "[auth]\nadmin_key = \"{ADMIN_KEY}\"\nallow_anonymous = true\n{extra}\n{}\
         [models.chat]\ntargets = [{{ provider = \"only\" }}]\n",
        provider("only", &upstream.base_url(), "")
    )
}

async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_admin_api_needs_its_key_and_names_bad_fields() {
    let upstream = MockUpstream::start(Script::new()).await;
    let backends = Backends::embedded().await;
    let landfall = start_on(&config(&upstream, ""), &backends).await;
    let url = landfall.url("/admin/v1/tenants");
    let (status, body) = send(landfall.client.get(&url)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("invalid_api_key"))
    );
    let (status, _) = send(landfall.client.get(&url).bearer_auth("wrong-admin-key-000")).await;
    assert_eq!(status, 401);
    // A client key is not an admin key, and the admin key is not a client key.
    let (status, _) = send(
        landfall
            .client
            .post(landfall.url("/v1/chat/completions"))
            .bearer_auth(ADMIN_KEY)
            .json(&hello("chat")),
    )
    .await;
    assert_eq!(status, 401);

    let admin = |body: Value| {
        landfall
            .client
            .post(&url)
            .bearer_auth(ADMIN_KEY)
            .json(&body)
    };
    for (body, field) in [
        (json!({"id": "Bad Id"}), "id"),
        (
            json!({"limits": {"requests_per_second": 0}}),
            "limits.requests_per_second",
        ),
        (
            json!({"limits": {"requests_per_second": -1}}),
            "limits.requests_per_second",
        ),
        (json!({"limits": {"rps": 5}}), "limits.rps"),
        (
            json!({"budgets": [{"period": "day", "tokens": 5, "cost": 1.0}]}),
            "budgets[0]",
        ),
        (
            json!({"budgets": [{"period": "week", "tokens": 5}]}),
            "budgets[0].period",
        ),
        (json!({"nme": "typo"}), "nme"),
    ] {
        let (status, error) = send(admin(body.clone())).await;
        assert_eq!(status, 400, "{body} → {error}");
        assert_eq!(error["error"]["param"], field, "{body} → {error}");
    }
    let (status, created) = send(admin(json!({"id": "acme", "name": "Acme"}))).await;
    assert_eq!(status, 201, "{created}");
    let (status, error) = send(admin(json!({"id": "acme"}))).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (409, Some("conflict"))
    );

    let keys = landfall.url("/admin/v1/keys");
    let key = |body: Value| {
        landfall
            .client
            .post(&keys)
            .bearer_auth(ADMIN_KEY)
            .json(&body)
    };
    let (status, error) = send(key(json!({"tenant_id": "nobody"}))).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (404, Some("not_found")),
        "{error}"
    );
    let (status, error) = send(key(
        json!({"tenant_id": "acme", "scopes": {"models": ["chat", "gpt-9"]}}),
    ))
    .await;
    assert_eq!(
        (status, error["error"]["param"].as_str()),
        (400, Some("scopes.models[1]")),
        "{error}"
    );
    let (status, error) = send(key(json!({"tenant_id": "acme", "expires_at": 1}))).await;
    assert_eq!(
        (status, error["error"]["param"].as_str()),
        (400, Some("expires_at")),
        "{error}"
    );
    let (status, error) = send(key(json!({}))).await;
    assert_eq!(status, 400, "{error}");
    let (status, error) = send(
        landfall
            .client
            .post(&keys)
            .bearer_auth(ADMIN_KEY)
            .header("content-type", "application/json")
            .body("{"),
    )
    .await;
    assert_eq!(status, 400, "{error}");
    let (status, _) = send(
        landfall
            .client
            .get(landfall.url("/admin/v1/keys/key_missing"))
            .bearer_auth(ADMIN_KEY),
    )
    .await;
    assert_eq!(status, 404);

    // Pagination: one at a time, by id.
    for id in ["beta", "gamma"] {
        assert_eq!(send(admin(json!({"id": id}))).await.0, 201);
    }
    let (_, page) = send(
        landfall
            .client
            .get(format!("{url}?limit=2"))
            .bearer_auth(ADMIN_KEY),
    )
    .await;
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    assert_eq!(page["has_more"], true);
    assert_eq!(page["last_id"], "beta");
    let (_, page) = send(
        landfall
            .client
            .get(format!("{url}?limit=2&after=beta"))
            .bearer_auth(ADMIN_KEY),
    )
    .await;
    assert_eq!(page["data"][0]["id"], "gamma");
    assert_eq!(page["has_more"], false);
    let (status, _) = send(
        landfall
            .client
            .get(format!("{url}?limit=5000"))
            .bearer_auth(ADMIN_KEY),
    )
    .await;
    assert_eq!(status, 400);

    // PATCH changes only what it names; `expires_at: null` removes an expiry.
    let (status, patched) = send(
        landfall
            .client
            .patch(format!("{url}/acme"))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({"limits": {"requests_per_minute": 60}})),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["name"], "Acme");
    assert_eq!(patched["limits"]["requests_per_minute"], 60);
}

#[tokio::test]
async fn the_admin_api_is_closed_without_an_admin_key() {
    let upstream = MockUpstream::start(Script::new()).await;
    let text = format!(
        "[auth]\nallow_anonymous = true\n{}[models.chat]\ntargets = [{{ provider = \"only\" }}]\n",
        provider("only", &upstream.base_url(), "")
    );
    let backends = Backends::embedded().await;
    let landfall = start_on(&text, &backends).await;
    let (status, body) = send(
        landfall
            .client
            .get(landfall.url("/admin/v1/tenants"))
            .bearer_auth("anything-at-all-here"),
    )
    .await;
    assert_eq!(status, 401);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("auth.admin_key"),
        "{body}"
    );
}

#[tokio::test]
async fn long_generations_are_shed_when_the_cpu_is_busy() {
    let upstream = MockUpstream::start(Script::new()).await;
    // A sampling interval of an hour: the test sets the CPU reading itself.
    let shedding =
        "[shedding]\nenabled = true\nsample_interval_ms = 3600000\nlong_generation_tokens = 500\n";
    let backends = Backends::embedded().await;
    let landfall = start_on(&config(&upstream, shedding), &backends).await;
    let long = json!({"model": "chat", "max_tokens": 4000, "messages": [{"role": "user", "content": "essay"}]});
    let short = json!({"model": "chat", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(landfall.chat(long.clone()).await.status(), 200);
    landfall.state.governance().cpu_load().record(95);
    let response = landfall.chat(long.clone()).await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "server_overloaded");
    // No max_tokens at all is a long generation too.
    assert_eq!(landfall.chat(hello("chat")).await.status(), 503);
    assert_eq!(landfall.chat(short).await.status(), 200);
    landfall.state.governance().cpu_load().record(40);
    assert_eq!(landfall.chat(long).await.status(), 200);
}

#[tokio::test]
async fn the_cap_policy_shortens_long_generations() {
    let upstream = MockUpstream::start(Script::new()).await;
    let shedding = "[shedding]\nenabled = true\nsample_interval_ms = 3600000\nlong_generation_tokens = 500\npolicy = \"cap\"\n";
    let backends = Backends::embedded().await;
    let landfall = start_on(&config(&upstream, shedding), &backends).await;
    landfall.state.governance().cpu_load().record(99);
    let response = landfall
        .chat(json!({"model": "chat", "max_completion_tokens": 4000, "messages": [{"role": "user", "content": "essay"}]}))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-landfall-shed-max-tokens"], "500");
    let sent = upstream.requests().last().unwrap().body.clone();
    assert_eq!(sent["max_completion_tokens"], 500);
}

#[tokio::test]
async fn a_saturated_target_queues_then_falls_back() {
    let slow = MockUpstream::start(Script::new().chat([
        Reply::chat_text("slow").delayed(500),
        Reply::chat_text("slow").delayed(500),
    ]))
    .await;
    let spare = MockUpstream::start(Script::new()).await;
    let text = format!(
        "[auth]\nallow_anonymous = true\n{}{}[models.chat]\ntargets = [\n\
         {{ provider = \"slow\", max_concurrency = 1, queue_size = 1, queue_timeout_ms = 100 }},\n\
         {{ provider = \"spare\", priority = 1 }},\n]\n",
        provider("slow", &slow.base_url(), ""),
        provider("spare", &spare.base_url(), "")
    );
    let backends = Backends::embedded().await;
    let landfall = start_on(&text, &backends).await;
    let delayed = |ms| {
        let landfall = &landfall;
        async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            landfall.chat(hello("chat")).await
        }
    };
    // The first holds the slot; the second waits in the queue past its 100 ms timeout; the
    // third finds the queue full. Both fall back to the spare target.
    let started = std::time::Instant::now();
    let (first, queued, overflow) = tokio::join!(delayed(0), delayed(50), delayed(80));
    eprintln!("elapsed {:?}", started.elapsed());
    assert_eq!(
        crate::harness::header(&first, "x-landfall-target"),
        "slow/chat"
    );
    assert_eq!(
        crate::harness::header(&queued, "x-landfall-target"),
        "spare/chat"
    );
    assert_eq!(
        crate::harness::header(&overflow, "x-landfall-target"),
        "spare/chat"
    );
    assert_eq!(slow.hits("/v1/chat/completions"), 1);
}

/// A TCP relay to Redis that the test can cut, to take Redis away from a running server.
struct Relay {
    address: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(target: &str) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let target = target.to_owned();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                connections.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Relay { address, task }
    }
}

async fn with_redis_outage(on_error: &str) -> Option<(u16, u64)> {
    let backends = Backends::shared().await?;
    let relay = Relay::start("127.0.0.1:6379").await;
    let settings = landfall_kv::RedisSettings {
        url: format!("redis://{}", relay.address),
        prefix: format!("landfall-outage-{}:", std::process::id()),
        timeout_ms: 200,
        ..landfall_kv::RedisSettings::default()
    };
    let limiter = landfall_kv::RedisLimiter::connect(&settings).await.unwrap();
    let backends = Backends {
        limiter: std::sync::Arc::new(limiter),
        ..backends
    };
    let upstream = MockUpstream::start(Script::new()).await;
    let limits = format!("[limits]\non_backend_error = \"{on_error}\"\n");
    let text = format!(
        "[auth]\nadmin_key = \"{ADMIN_KEY}\"\n{limits}{}[models.chat]\ntargets = [{{ provider = \"only\" }}]\n",
        provider("only", &upstream.base_url(), "")
    );
    let landfall = start_on(&text, &backends).await;
    let (_, tenant) = send(
        landfall
            .client
            .post(landfall.url("/admin/v1/tenants"))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({"limits": {"requests_per_second": 100}})),
    )
    .await;
    let (_, key) = send(
        landfall
            .client
            .post(landfall.url("/admin/v1/keys"))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({"tenant_id": tenant["id"]})),
    )
    .await;
    let secret = key["secret"].as_str().unwrap().to_owned();
    let chat = || {
        landfall
            .client
            .post(landfall.url("/v1/chat/completions"))
            .bearer_auth(&secret)
            .json(&hello("chat"))
    };
    assert_eq!(send(chat()).await.0, 200);
    relay.task.abort();
    // Aborting the relay drops its connections: Redis is now unreachable.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let (status, _) = send(chat()).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "an outage must not hang requests"
    );
    let errors = landfall.state.governance().stats().limiter_errors;
    let (_, stats) = send(
        landfall
            .client
            .get(landfall.url("/admin/v1/stats"))
            .bearer_auth(ADMIN_KEY),
    )
    .await;
    assert_eq!(stats["limiter_errors"], errors);
    backends.cleanup().await;
    Some((status, errors))
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_down_fails_open_when_configured() {
    let Some((status, errors)) = with_redis_outage("fail_open").await else {
        return;
    };
    assert_eq!(status, 200);
    assert!(errors >= 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_down_fails_closed_when_configured() {
    let Some((status, errors)) = with_redis_outage("fail_closed").await else {
        return;
    };
    assert_eq!(status, 503);
    assert!(errors >= 1);
}
