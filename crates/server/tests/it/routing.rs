//! Retries, fallback, Retry-After, circuit breaking and load balancing, end to end.

use std::time::{Duration, Instant};

use landfall_testkit::{MockUpstream, Reply, Script};
use serde_json::Value;

use crate::harness::{FAST_ROUTING, header, hello, provider, start};

#[tokio::test]
async fn rate_limited_first_target_falls_back_to_the_second() {
    let first = MockUpstream::start(Script::new().chat([Reply::rate_limited(30)])).await;
    let second = MockUpstream::start(Script::new()).await;
    let config = format!(
        "{}{}{FAST_ROUTING}[models.chat]\ntargets = [{{ provider = \"first\", model = \"a\" }}, {{ provider = \"second\", model = \"b\", priority = 1 }}]\n",
        provider("first", &first.base_url(), ""),
        provider("second", &second.base_url(), ""),
    );
    let landfall = start(&config).await;
    let response = landfall.chat(hello("chat")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-landfall-target"), "second/b");
    assert_eq!(header(&response, "x-landfall-attempts"), "2");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "echo: hello there"
    );
    assert_eq!(first.hits("/v1/chat/completions"), 1);
    // The upstream got the mapped model name and the provider's key.
    let request = &second.requests()[0];
    assert_eq!(request.body["model"], "b");
    assert_eq!(request.header("authorization"), Some("Bearer k-second"));

    // Retry-After (30 s) keeps the first target skipped: the next request goes straight on.
    let response = landfall.chat(hello("chat")).await;
    assert_eq!(header(&response, "x-landfall-attempts"), "1");
    assert_eq!(first.hits("/v1/chat/completions"), 1);
}

#[tokio::test]
async fn transient_errors_are_retried_on_the_same_target() {
    let upstream = MockUpstream::start(Script::new().chat([Reply::status(503, "busy")])).await;
    let config = format!(
        "{}{FAST_ROUTING}[models.chat]\ntargets = [{{ provider = \"only\" }}]\n",
        provider("only", &upstream.base_url(), "")
    );
    let landfall = start(&config).await;
    let response = landfall.chat(hello("chat")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-landfall-attempts"), "2");
    assert_eq!(header(&response, "x-landfall-target"), "only/chat");
}

#[tokio::test]
async fn retry_after_is_waited_out_when_no_other_target_is_left() {
    let upstream = MockUpstream::start(Script::new().chat([Reply::rate_limited(1)])).await;
    let config = format!(
        "{}{FAST_ROUTING}[models.chat]\ntargets = [{{ provider = \"only\" }}]\n",
        provider("only", &upstream.base_url(), "")
    );
    let landfall = start(&config).await;
    let started = Instant::now();
    let response = landfall.chat(hello("chat")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-landfall-attempts"), "2");
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_long_retry_after_is_passed_to_the_client() {
    let upstream = MockUpstream::start(Script::new().chat([Reply::rate_limited(120)])).await;
    let config = format!(
        "{}{FAST_ROUTING}[models.chat]\ntargets = [{{ provider = \"only\" }}]\n",
        provider("only", &upstream.base_url(), "")
    );
    let landfall = start(&config).await;
    let response = landfall.chat(hello("chat")).await;
    assert_eq!(response.status(), 429);
    assert_eq!(header(&response, "retry-after"), "120");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    // While it cools down, requests are refused at once, still as rate limited, without
    // calling the upstream.
    let response = landfall.chat(hello("chat")).await;
    assert_eq!(response.status(), 429);
    assert!(header(&response, "retry-after").parse::<u64>().unwrap() > 100);
    assert_eq!(upstream.hits("/v1/chat/completions"), 1);
}

#[tokio::test]
async fn circuit_breaker_skips_a_failing_target() {
    let failures = std::iter::repeat_n(Reply::status(500, "down"), 10);
    let flaky = MockUpstream::start(Script::new().chat(failures)).await;
    let healthy = MockUpstream::start(Script::new()).await;
    let config = format!(
        "{}{}[routing]\nretries_per_target = 0\nbreaker_failure_threshold = 2\nbreaker_cooldown_ms = 60000\n\
         [models.chat]\ntargets = [{{ provider = \"flaky\" }}, {{ provider = \"healthy\", priority = 1 }}]\n",
        provider("flaky", &flaky.base_url(), ""),
        provider("healthy", &healthy.base_url(), ""),
    );
    let landfall = start(&config).await;
    for _ in 0..2 {
        let response = landfall.chat(hello("chat")).await;
        assert_eq!(header(&response, "x-landfall-attempts"), "2");
    }
    for _ in 0..3 {
        let response = landfall.chat(hello("chat")).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "x-landfall-target"), "healthy/chat");
        assert_eq!(header(&response, "x-landfall-attempts"), "1");
    }
    assert_eq!(flaky.hits("/v1/chat/completions"), 2);
}

#[tokio::test]
async fn context_length_errors_fall_back_only_to_larger_windows() {
    let small = MockUpstream::start(Script::new().chat([Reply::context_too_long()])).await;
    let smaller = MockUpstream::start(Script::new()).await;
    let large = MockUpstream::start(Script::new()).await;
    let config = format!(
        "{}{}{}{FAST_ROUTING}[models.chat]\ntargets = [\n\
         {{ provider = \"small\", context_window = 4096 }},\n\
         {{ provider = \"smaller\", context_window = 2048, priority = 1 }},\n\
         {{ provider = \"large\", context_window = 128000, priority = 2 }},\n]\n",
        provider("small", &small.base_url(), ""),
        provider("smaller", &smaller.base_url(), ""),
        provider("large", &large.base_url(), ""),
    );
    let landfall = start(&config).await;
    let response = landfall.chat(hello("chat")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-landfall-target"), "large/chat");
    assert_eq!(header(&response, "x-landfall-attempts"), "2");
    assert_eq!(smaller.hits("/v1/chat/completions"), 0);
}

#[tokio::test]
async fn context_length_error_without_a_larger_target_is_a_400() {
    let upstream = MockUpstream::start(Script::new().chat([Reply::context_too_long()])).await;
    let config = format!(
        "{}[models.chat]\ntargets = [{{ provider = \"only\" }}]\n",
        provider("only", &upstream.base_url(), "")
    );
    let landfall = start(&config).await;
    let response = landfall.chat(hello("chat")).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "context_length_exceeded");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("maximum context length")
    );
}

#[tokio::test]
async fn invalid_requests_are_returned_without_fallback() {
    let first =
        MockUpstream::start(Script::new().chat([Reply::status(400, "temperature must be <= 2")]))
            .await;
    let second = MockUpstream::start(Script::new()).await;
    let config = format!(
        "{}{}[models.chat]\ntargets = [{{ provider = \"first\" }}, {{ provider = \"second\", priority = 1 }}]\n",
        provider("first", &first.base_url(), ""),
        provider("second", &second.base_url(), ""),
    );
    let landfall = start(&config).await;
    let response = landfall.chat(hello("chat")).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["message"], "temperature must be <= 2");
    assert_eq!(second.hits("/v1/chat/completions"), 0);
}

#[tokio::test]
async fn garbage_from_the_upstream_is_a_502() {
    let garbage = Reply::Raw {
        status: 200,
        content_type: "application/json".into(),
        body: "{\"choices\": [".into(),
    };
    let html = Reply::Raw {
        status: 200,
        content_type: "text/html".into(),
        body: "<html>hi</html>".into(),
    };
    let wrong_schema = Reply::Json {
        status: 200,
        body: serde_json::json!({"result": "ok"}),
        headers: vec![],
    };
    for reply in [garbage, html, wrong_schema] {
        let upstream = MockUpstream::start(Script::new().chat([reply])).await;
        let config = format!(
            "{}[routing]\nretries_per_target = 0\n[models.chat]\ntargets = [{{ provider = \"only\" }}]\n",
            provider("only", &upstream.base_url(), "")
        );
        let landfall = start(&config).await;
        let response = landfall.chat(hello("chat")).await;
        assert_eq!(response.status(), 502);
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body["error"]["message"],
            "the upstream provider sent an invalid response"
        );
    }
}

#[tokio::test]
async fn a_slow_target_times_out_and_the_next_one_serves() {
    let slow = MockUpstream::start(Script::new().chat([Reply::Hang])).await;
    let fast = MockUpstream::start(Script::new()).await;
    let config = format!(
        "{}{}[routing]\nretries_per_target = 0\n[models.chat]\ntargets = [{{ provider = \"slow\" }}, {{ provider = \"fast\", priority = 1 }}]\n",
        provider("slow", &slow.base_url(), "first_byte_timeout_ms = 200"),
        provider("fast", &fast.base_url(), ""),
    );
    let landfall = start(&config).await;
    let started = Instant::now();
    let response = landfall.chat(hello("chat")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-landfall-target"), "fast/chat");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_timeout_with_nothing_left_is_a_504() {
    let slow = MockUpstream::start(Script::new().chat([Reply::Hang])).await;
    let config = format!(
        "{}[routing]\nretries_per_target = 0\n[models.chat]\ntargets = [{{ provider = \"slow\" }}]\n",
        provider("slow", &slow.base_url(), "first_byte_timeout_ms = 100"),
    );
    let landfall = start(&config).await;
    let response = landfall.chat(hello("chat")).await;
    assert_eq!(response.status(), 504);
}

#[tokio::test]
async fn connection_errors_fall_back() {
    let healthy = MockUpstream::start(Script::new()).await;
    let config = format!(
        "{}{}{FAST_ROUTING}[models.chat]\ntargets = [{{ provider = \"closed\" }}, {{ provider = \"healthy\", priority = 1 }}]\n",
        provider("closed", "http://127.0.0.1:1/v1", ""),
        provider("healthy", &healthy.base_url(), ""),
    );
    let landfall = start(&config).await;
    let response = landfall.chat(hello("chat")).await;
    assert_eq!(response.status(), 200);
    // One try and one retry on the closed port, then the healthy target.
    assert_eq!(header(&response, "x-landfall-attempts"), "3");
}

#[tokio::test]
async fn equal_priorities_share_load_by_weight() {
    let heavy = MockUpstream::start(Script::new()).await;
    let light = MockUpstream::start(Script::new()).await;
    let config = format!(
        "{}{}[models.chat]\ntargets = [{{ provider = \"heavy\", weight = 3 }}, {{ provider = \"light\", weight = 1 }}]\n",
        provider("heavy", &heavy.base_url(), ""),
        provider("light", &light.base_url(), ""),
    );
    let landfall = start(&config).await;
    for _ in 0..400 {
        assert_eq!(landfall.chat(hello("chat")).await.status(), 200);
    }
    let share = heavy.hits("/v1/chat/completions") as f64 / 400.0;
    assert!((0.65..=0.85).contains(&share), "heavy share {share}");
    assert_eq!(
        heavy.hits("/v1/chat/completions") + light.hits("/v1/chat/completions"),
        400
    );
}

#[tokio::test]
async fn extra_headers_and_unknown_fields_reach_the_upstream() {
    let upstream = MockUpstream::start(Script::new()).await;
    let config = format!(
        "{}[models.chat]\ntargets = [{{ provider = \"only\", model = \"upstream-name\" }}]\n",
        provider(
            "only",
            &upstream.base_url(),
            "headers = { \"X-Team\" = \"search\" }"
        ),
    );
    let landfall = start(&config).await;
    let mut body = hello("chat");
    body["seed"] = 7.into();
    body["logprobs"] = true.into();
    body["response_format"] = serde_json::json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}});
    body["vendor_option"] = serde_json::json!({"nested": [1, 2]});
    body["messages"][0]["x_custom"] = "kept".into();
    let response = landfall.chat(body.clone()).await;
    assert_eq!(response.status(), 200);
    let received = &upstream.requests()[0];
    assert_eq!(received.header("x-team"), Some("search"));
    let mut expected = body;
    expected["model"] = "upstream-name".into();
    assert_eq!(received.body, expected);
}
