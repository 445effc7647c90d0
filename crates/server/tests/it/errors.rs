//! Bad input gets the right status and an OpenAI-shaped body; nothing else is affected.

use landfall_testkit::{MockUpstream, Script};
use serde_json::{Value, json};

use crate::harness::{Landfall, hello, provider, start};

async fn landfall_with(upstream: &MockUpstream, extra: &str) -> Landfall {
    let config = format!(
        "[server]\nmax_body_bytes = 4096\n{extra}{}[models.chat]\ntargets = [{{ provider = \"only\" }}]\n",
        provider("only", &upstream.base_url(), "")
    );
    start(&config).await
}

async fn post(
    landfall: &Landfall,
    path: &str,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> (u16, Value) {
    let mut request = landfall.client.post(landfall.url(path)).body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn bad_requests_get_precise_errors() {
    let upstream = MockUpstream::start(Script::new()).await;
    let landfall = landfall_with(&upstream, "").await;
    let json = Some("application/json");
    let cases: Vec<(&str, Option<&str>, String, u16, &str)> = vec![
        ("malformed", json, "{\"model\": ".into(), 400, "invalid_json"),
        ("not an object", json, "[1, 2]".into(), 422, "invalid_body"),
        ("wrong type", json, json!({"model": "chat", "messages": "hi"}).to_string(), 422, "invalid_body"),
        ("bad role", json, json!({"model": "chat", "messages": [{"role": "robot", "content": "x"}]}).to_string(), 422, "invalid_body"),
        ("missing model", json, json!({"messages": [{"role": "user", "content": "x"}]}).to_string(), 422, "invalid_body"),
        ("empty messages", json, json!({"model": "chat", "messages": []}).to_string(), 400, "invalid_value"),
        ("unknown model", json, json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}).to_string(), 404, "model_not_found"),
        ("options without stream", json, json!({"model": "chat", "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "x"}]}).to_string(), 400, "invalid_value"),
        ("text body", Some("text/plain"), hello("chat").to_string(), 415, "unsupported_media_type"),
        ("no content type", None, hello("chat").to_string(), 415, "unsupported_media_type"),
        ("too large", json, format!("{{\"model\":\"chat\",\"messages\":[{{\"role\":\"user\",\"content\":\"{}\"}}]}}", "x".repeat(5000)), 413, "payload_too_large"),
    ];
    for (name, content_type, body, status, code) in cases {
        let (actual_status, body) =
            post(&landfall, "/v1/chat/completions", content_type, body).await;
        assert_eq!(actual_status, status, "{name}: {body}");
        assert_eq!(body["error"]["code"], code, "{name}: {body}");
        assert_eq!(
            body["error"]["type"], "invalid_request_error",
            "{name}: {body}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|message| !message.is_empty()),
            "{name}"
        );
    }
    assert_eq!(upstream.hits("/v1/chat/completions"), 0);
    // Nothing else was affected.
    assert_eq!(landfall.chat(hello("chat")).await.status(), 200);
}

#[tokio::test]
async fn wrong_types_name_the_field() {
    let upstream = MockUpstream::start(Script::new()).await;
    let landfall = landfall_with(&upstream, "").await;
    let body = json!({"model": "chat", "messages": [{"role": "user", "content": 5}]});
    let (status, body) = post(
        &landfall,
        "/v1/chat/completions",
        Some("application/json"),
        body.to_string(),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["param"], "messages[0].content", "{body}");
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_a_413() {
    let upstream = MockUpstream::start(Script::new()).await;
    let landfall = landfall_with(&upstream, "").await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..10).map(|_| Ok(vec![b' '; 1000])).collect();
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let (status, body) = post(
        &landfall,
        "/v1/chat/completions",
        Some("application/json"),
        body,
    )
    .await;
    assert_eq!(status, 413, "{body}");
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let upstream = MockUpstream::start(Script::new()).await;
    let landfall = landfall_with(&upstream, "").await;
    let response = landfall
        .client
        .get(landfall.url("/v1/nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unknown_url");
    let response = landfall
        .client
        .get(landfall.url("/v1/chat/completions"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
}

#[tokio::test]
async fn models_and_probes() {
    let upstream = MockUpstream::start(Script::new()).await;
    let landfall = landfall_with(&upstream, "").await;
    let body: Value = landfall
        .client
        .get(landfall.url("/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"][0]["id"], "chat");
    let response = landfall
        .client
        .get(landfall.url("/v1/models/chat"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = landfall
        .client
        .get(landfall.url("/v1/models/other"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let response = landfall
        .client
        .get(landfall.url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn embeddings_pass_through_and_validate() {
    let upstream = MockUpstream::start(Script::new()).await;
    let landfall = landfall_with(&upstream, "").await;
    let url = landfall.url("/v1/embeddings");
    let response = landfall
        .client
        .post(&url)
        .json(&json!({"model": "chat", "input": ["a", "b"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    let response = landfall
        .client
        .post(&url)
        .json(&json!({"model": "chat", "input": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let response = landfall
        .client
        .post(&url)
        .json(&json!({"model": "chat", "input": {"x": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
}

#[tokio::test]
async fn embeddings_on_a_chat_only_provider_are_refused() {
    let config = "[providers.claude]\ntype = \"anthropic\"\napi_key = \"k\"\n[models.claude]\ntargets = [{ provider = \"claude\" }]\n";
    let landfall = start(config).await;
    let response = landfall
        .client
        .post(landfall.url("/v1/embeddings"))
        .json(&json!({"model": "claude", "input": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unsupported_operation");
}
