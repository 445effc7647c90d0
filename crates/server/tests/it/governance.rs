//! Tenants, keys, limits, budgets, the response cache and shedding through the HTTP API. Each
//! behaviour test runs on the embedded backends and on PostgreSQL + Redis.

use std::time::{Duration, Instant};

use landfall_testkit::{MockUpstream, Reply, Script};
use serde_json::{Value, json};

use crate::harness::{Backends, Landfall, hello, provider, start_on};

const ADMIN_KEY: &str = "admin-key-0123456789";

fn config(upstream: &MockUpstream, extra: &str) -> String {
    format!(
        "[auth]\nadmin_key = \"{ADMIN_KEY}\"\n[accounting]\nflush_interval_ms = 50\n{extra}\n{}\
         [models.chat]\ntargets = [{{ provider = \"only\", price = {{ input = 1.0, output = 2.0 }} }}]\n\
         [models.other]\ntargets = [{{ provider = \"only\" }}]\n",
        provider("only", &upstream.base_url(), "")
    )
}

impl Landfall {
    async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.call(method, &format!("/admin/v1{path}"), ADMIN_KEY, body)
            .await
    }

    /// Creates a tenant and a key of it; returns the key's secret and id.
    async fn tenant_with_key(&self, tenant: Value, key: Value) -> (String, String) {
        let (status, body) = self
            .admin(reqwest::Method::POST, "/tenants", Some(tenant))
            .await;
        assert_eq!(status, 201, "{body}");
        let mut key = key;
        key["tenant_id"] = body["id"].clone();
        let (status, body) = self.admin(reqwest::Method::POST, "/keys", Some(key)).await;
        assert_eq!(status, 201, "{body}");
        (
            body["secret"].as_str().unwrap().to_owned(),
            body["id"].as_str().unwrap().to_owned(),
        )
    }

    async fn chat_as(&self, secret: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/v1/chat/completions"))
            .bearer_auth(secret)
            .json(body)
            .send()
            .await
            .unwrap()
    }
}

async fn status_and_body(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread")]
            async fn embedded() {
                let backends = crate::harness::Backends::embedded().await;
                super::$name(&backends).await;
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn postgres_redis() {
                let Some(backends) = crate::harness::Backends::shared().await else { return };
                super::$name(&backends).await;
                backends.cleanup().await;
            }
        }
    )*};
}

on_every_backend!(
    keys_authenticate_and_scopes_apply,
    revocation_reaches_every_replica_within_a_second,
    request_rates_are_limited_with_openai_headers,
    token_reservations_are_settled_to_exact_usage,
    concurrent_requests_are_limited,
    budgets_refuse_with_insufficient_quota,
    cache_answers_repeats_per_tenant,
);

async fn keys_authenticate_and_scopes_apply(backends: &Backends) {
    let upstream = MockUpstream::start(Script::new()).await;
    let landfall = start_on(&config(&upstream, ""), backends).await;
    let (secret, key_id) = landfall
        .tenant_with_key(
            json!({"id": "acme"}),
            json!({"scopes": {"models": ["chat"]}}),
        )
        .await;
    assert!(secret.starts_with("lf-"));

    let anonymous = landfall
        .client
        .post(landfall.url("/v1/chat/completions"))
        .json(&hello("chat"));
    let (status, body) = status_and_body(anonymous.send().await.unwrap()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("invalid_api_key")),
        "{body}"
    );
    // Change the last character to a different one (a secret can end in any letter).
    let (kept, last) = secret.split_at(secret.len() - 1);
    let tampered = format!("{kept}{}", if last == "x" { "y" } else { "x" });
    assert_eq!(
        landfall.chat_as(&tampered, &hello("chat")).await.status(),
        401
    );
    assert_eq!(
        landfall
            .chat_as("lf-nonsense", &hello("chat"))
            .await
            .status(),
        401
    );

    assert_eq!(
        landfall.chat_as(&secret, &hello("chat")).await.status(),
        200
    );
    let (status, body) = status_and_body(landfall.chat_as(&secret, &hello("other")).await).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("model_not_allowed")),
        "{body}"
    );
    let models: Value = landfall
        .client
        .get(landfall.url("/v1/models"))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"].as_array().map(Vec::len), Some(1), "{models}");

    // The listing never shows the secret or its digest.
    let (_, listed) = landfall
        .admin(reqwest::Method::GET, &format!("/keys/{key_id}"), None)
        .await;
    assert!(!listed.to_string().contains(&secret[10..]), "{listed}");
    assert!(listed.get("secret_sha256").is_none());

    // Expiry: a key that expires in a second stops working.
    let soon = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    let (status, expiring) = landfall
        .admin(
            reqwest::Method::POST,
            "/keys",
            Some(json!({"tenant_id": "acme", "expires_at": soon})),
        )
        .await;
    assert_eq!(status, 201);
    let expiring = expiring["secret"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let (status, body) = status_and_body(landfall.chat_as(&expiring, &hello("chat")).await).await;
    assert_eq!(status, 401);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{body}"
    );

    // Revoking the tenant stops all its keys.
    let (status, _) = landfall
        .admin(reqwest::Method::DELETE, "/tenants/acme", None)
        .await;
    assert_eq!(status, 200);
    let (status, body) = status_and_body(landfall.chat_as(&secret, &hello("chat")).await).await;
    assert_eq!(status, 401, "{body}");
}

async fn revocation_reaches_every_replica_within_a_second(backends: &Backends) {
    let upstream = MockUpstream::start(Script::new()).await;
    let first = start_on(&config(&upstream, ""), backends).await;
    let second = start_on(&config(&upstream, ""), backends).await;
    let (secret, key_id) = first.tenant_with_key(json!({}), json!({})).await;
    assert_eq!(second.chat_as(&secret, &hello("chat")).await.status(), 200);
    let (status, body) = first
        .admin(reqwest::Method::DELETE, &format!("/keys/{key_id}"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["revoked_at"].is_i64());
    let revoked = Instant::now();
    // The replica that revoked forgets the key at once.
    assert_eq!(first.chat_as(&secret, &hello("chat")).await.status(), 401);
    // The other replica (which had the key cached) refuses it within the 1 s promise.
    loop {
        let status = second.chat_as(&secret, &hello("chat")).await.status();
        if status == 401 {
            break;
        }
        assert_eq!(status, 200);
        assert!(
            revoked.elapsed() < Duration::from_secs(1),
            "still accepted after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn request_rates_are_limited_with_openai_headers(backends: &Backends) {
    let upstream = MockUpstream::start(Script::new()).await;
    let landfall = start_on(&config(&upstream, ""), backends).await;
    let (secret, _) = landfall
        .tenant_with_key(
            json!({"limits": {"requests_per_minute": 1000}}),
            json!({"limits": {"requests_per_second": 3}}),
        )
        .await;
    for remaining in (0..3).rev() {
        let response = landfall.chat_as(&secret, &hello("chat")).await;
        assert_eq!(response.status(), 200);
        let headers = response.headers();
        assert_eq!(headers["x-ratelimit-limit-requests"], "3");
        assert_eq!(
            headers["x-ratelimit-remaining-requests"],
            remaining.to_string().as_str()
        );
        assert!(headers.contains_key("x-ratelimit-reset-requests"));
    }
    let response = landfall.chat_as(&secret, &hello("chat")).await;
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert_eq!(response.headers()["x-ratelimit-remaining-requests"], "0");
    let (_, body) = status_and_body(response).await;
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(body["error"]["type"], "requests");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("requests per second of key"),
        "{body}"
    );
    // The bucket refills at 3 per second.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        landfall.chat_as(&secret, &hello("chat")).await.status(),
        200
    );
    // Refused requests never reached the upstream.
    assert_eq!(upstream.hits("/v1/chat/completions"), 4);
}

async fn token_reservations_are_settled_to_exact_usage(backends: &Backends) {
    let upstream = MockUpstream::start(Script::new()).await;
    let landfall = start_on(&config(&upstream, ""), backends).await;
    let (secret, _) = landfall
        .tenant_with_key(json!({"limits": {"tokens_per_minute": 300}}), json!({}))
        .await;
    let asking = |stream: bool| {
        json!({"model": "chat", "max_tokens": 200, "stream": stream,
               "messages": [{"role": "user", "content": "hello there"}]})
    };
    // Each request reserves ~210 tokens of 300 and uses ~8: without settlement the second
    // would be refused.
    for stream in [false, true, false, true] {
        let response = landfall.chat_as(&secret, &asking(stream)).await;
        assert_eq!(response.status(), 200, "stream: {stream}");
        let _ = response.text().await.unwrap();
        // The stream settles when it ends, just after the body is read.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // One request alone above the limit can never pass: no Retry-After.
    let too_big = json!({"model": "chat", "max_tokens": 1000, "messages": [{"role": "user", "content": "hi"}]});
    let response = landfall.chat_as(&secret, &too_big).await;
    assert_eq!(response.status(), 429);
    assert!(response.headers().get("retry-after").is_none());
    let (_, body) = status_and_body(response).await;
    assert_eq!(body["error"]["type"], "tokens", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("alone exceeds"),
        "{body}"
    );
}

async fn concurrent_requests_are_limited(backends: &Backends) {
    let upstream =
        MockUpstream::start(Script::new().chat([Reply::chat_text("slow").delayed(400)])).await;
    let landfall = start_on(&config(&upstream, ""), backends).await;
    let (secret, _) = landfall
        .tenant_with_key(json!({"limits": {"max_concurrent_requests": 1}}), json!({}))
        .await;
    let body = hello("chat");
    let slow = landfall.chat_as(&secret, &body);
    let fast = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        landfall.chat_as(&secret, &hello("chat")).await
    };
    let (slow, refused) = tokio::join!(slow, fast);
    assert_eq!(slow.status(), 200);
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    // The slot is free again once the first request is done.
    assert_eq!(
        landfall.chat_as(&secret, &hello("chat")).await.status(),
        200
    );
}

async fn budgets_refuse_with_insufficient_quota(backends: &Backends) {
    let upstream = MockUpstream::start(Script::new()).await;
    let landfall = start_on(&config(&upstream, ""), backends).await;
    // Every request: prompt "hello there" (5 tokens upstream) + "echo: hello there" (3 tokens),
    // reserved as ~11 prompt tokens + max_tokens 20.
    let request = json!({"model": "chat", "max_tokens": 20, "messages": [{"role": "user", "content": "hello there"}]});
    let (secret, key_id) = landfall
        .tenant_with_key(
            json!({"id": "budgeted", "budgets": [{"period": "day", "tokens": 100}]}),
            json!({}),
        )
        .await;
    let mut served = 0;
    loop {
        let (status, body) = status_and_body(landfall.chat_as(&secret, &request).await).await;
        if status == 429 {
            assert_eq!(body["error"]["type"], "insufficient_quota", "{body}");
            assert_eq!(body["error"]["code"], "insufficient_quota");
            break;
        }
        assert_eq!(status, 200, "{body}");
        served += 1;
        assert!(served < 50, "the budget never ran out");
    }
    // 8 tokens each: the 100-token budget serves 100 / 8 requests, minus the last reservation.
    assert!((9..=12).contains(&served), "served {served}");
    landfall.state.governance().flush_usage().await.unwrap();
    let totals = backends
        .store
        .usage_totals(landfall_storage::UsageScope::Key(&key_id), 0)
        .await
        .unwrap();
    assert_eq!(totals.tokens, 8 * served);
    assert!(totals.tokens <= 100);

    // A money budget: $1 per million input and $2 per million output tokens, so a request costs
    // 5 + 6 = 11 millionths of a dollar, and reserves ~15 + 40 before it is served.
    let (secret, _) = landfall
        .tenant_with_key(
            json!({"budgets": [{"period": "month", "cost": 0.0001}]}),
            json!({}),
        )
        .await;
    let mut served = 0;
    while landfall.chat_as(&secret, &request).await.status() == 200 {
        served += 1;
        assert!(served < 50, "the money budget never ran out");
    }
    assert!((4..=6).contains(&served), "served {served}");
}

async fn cache_answers_repeats_per_tenant(backends: &Backends) {
    let upstream = MockUpstream::start(Script::new()).await;
    let landfall = start_on(&config(&upstream, ""), backends).await;
    let (first, _) = landfall.tenant_with_key(json!({}), json!({})).await;
    let (second, _) = landfall.tenant_with_key(json!({}), json!({})).await;
    let request = json!({"model": "chat", "temperature": 0, "messages": [{"role": "user", "content": "what is 2+2"}]});

    let miss = landfall.chat_as(&first, &request).await;
    assert_eq!(miss.headers()["x-landfall-cache"], "miss");
    let miss: Value = miss.json().await.unwrap();
    // The cache is written in the background.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let hit = landfall.chat_as(&first, &request).await;
    assert_eq!(hit.headers()["x-landfall-cache"], "hit");
    let hit: Value = hit.json().await.unwrap();
    assert_eq!(hit["choices"], miss["choices"]);
    assert_eq!(upstream.hits("/v1/chat/completions"), 1);

    // Another tenant never sees the first tenant's entry.
    let other = landfall.chat_as(&second, &request).await;
    assert_eq!(other.headers()["x-landfall-cache"], "miss");
    assert_eq!(upstream.hits("/v1/chat/completions"), 2);

    // A stream is cached as a stream and replayed as SSE, usage chunk on request.
    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    let live = landfall.chat_as(&first, &streamed).await;
    assert_eq!(live.headers()["x-landfall-cache"], "miss");
    let live = live.text().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let replay = landfall.chat_as(&first, &streamed).await;
    assert_eq!(replay.headers()["x-landfall-cache"], "hit");
    assert_eq!(replay.headers()["content-type"], "text/event-stream");
    let replay = replay.text().await.unwrap();
    assert_eq!(
        crate::harness::sse_data(&replay),
        crate::harness::sse_data(&live)
    );
    assert!(replay.ends_with("data: [DONE]\n\n"));
    assert_eq!(upstream.hits("/v1/chat/completions"), 3);

    // Non-deterministic requests are not cached unless asked; `skip` bypasses the cache.
    let warm = json!({"model": "chat", "temperature": 0.8, "messages": [{"role": "user", "content": "hi"}]});
    assert!(
        landfall
            .chat_as(&first, &warm)
            .await
            .headers()
            .get("x-landfall-cache")
            .is_none()
    );
    let skipped = landfall
        .client
        .post(landfall.url("/v1/chat/completions"))
        .bearer_auth(&first)
        .header("x-landfall-cache", "skip")
        .json(&request)
        .send()
        .await
        .unwrap();
    assert!(skipped.headers().get("x-landfall-cache").is_none());
    assert_eq!(upstream.hits("/v1/chat/completions"), 5);
}
