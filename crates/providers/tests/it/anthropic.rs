//! The Anthropic adapter against the testkit's scripted Messages API.

use futures::StreamExt;
use landfall_config::{HttpSettings, ProviderConfig, ProviderKind, Secret};
use landfall_providers::{ChatModel, ProviderError};
use landfall_testkit::{MockUpstream, Reply, Script};
use landfall_types::{ChatChunk, ChatRequest, ErrorClass};
use serde_json::{Value, json};

const MODEL: &str = "claude-x";

#[expect(
    clippy::unwrap_used,
    reason = "test setup: no test can run without its adapter"
)]
fn adapter(upstream: &MockUpstream) -> std::sync::Arc<dyn ChatModel> {
    let config = ProviderConfig {
        http: HttpSettings {
            base_url: upstream.base_url(),
            api_key: Some(Secret::new("k")),
            first_byte_timeout_ms: 5_000,
            timeout_ms: 10_000,
            stream_idle_timeout_ms: 5_000,
            ..Default::default()
        },
        kind: ProviderKind::Anthropic {
            anthropic_version: "2023-06-01".into(),
            default_max_tokens: 1024,
        },
    };
    landfall_providers::build("test", &config, &landfall_providers::LocalModels::default())
        .unwrap()
        .chat
}

#[expect(
    clippy::unwrap_used,
    reason = "test setup: the request bodies are literals"
)]
fn request(body: Value) -> ChatRequest {
    serde_json::from_value(body).unwrap()
}

fn hello() -> ChatRequest {
    request(json!({
        "model": "client-name",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hello there"},
        ],
    }))
}

fn weather_tools() -> Value {
    json!([{"type": "function", "function": {"name": "weather", "description": "Forecast",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}}])
}

fn anthropic_error(status: u16, kind: &str, message: &str) -> Reply {
    Reply::Json {
        status,
        body: json!({"type": "error", "error": {"type": kind, "message": message}}),
        headers: Vec::new(),
    }
}

/// A named SSE event (named by its data's `type`), which the mock writes verbatim.
fn sse(data: Value) -> String {
    format!(
        "event: {}\ndata: {data}",
        data["type"].as_str().unwrap_or_default()
    )
}

fn message_start() -> String {
    sse(
        json!({"type": "message_start", "message": {"id": "msg_s", "type": "message",
        "role": "assistant", "model": MODEL, "content": [], "stop_reason": null,
        "usage": {"input_tokens": 3, "output_tokens": 1}}}),
    )
}

fn text_events() -> Vec<String> {
    vec![
        message_start(),
        sse(json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}})),
        sse(json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": "Hel"}})),
    ]
}

/// Every item of a stream; an error before the stream began is the only item.
async fn collect(
    model: &dyn ChatModel,
    request: &ChatRequest,
) -> Vec<Result<ChatChunk, ProviderError>> {
    match model.chat_stream(request, MODEL).await {
        Ok(stream) => stream.collect().await,
        Err(error) => vec![Err(error)],
    }
}

fn text_of(chunks: &[Result<ChatChunk, ProviderError>]) -> String {
    chunks
        .iter()
        .filter_map(|chunk| chunk.as_ref().ok())
        .flat_map(|chunk| &chunk.choices)
        .filter_map(|choice| choice.delta.content.as_deref())
        .collect()
}

fn finish_reasons(chunks: &[Result<ChatChunk, ProviderError>]) -> Vec<&str> {
    chunks
        .iter()
        .filter_map(|chunk| chunk.as_ref().ok())
        .flat_map(|chunk| &chunk.choices)
        .filter_map(|choice| choice.finish_reason.as_deref())
        .collect()
}

#[tokio::test]
async fn text_completion() {
    let upstream = MockUpstream::start(Script::new()).await;
    let response = adapter(&upstream).chat(&hello(), MODEL).await.unwrap();
    assert!(response.id.starts_with("msg_"), "{}", response.id);
    assert_eq!(response.object, "chat.completion");
    assert_eq!(response.model, MODEL);
    let choice = &response.choices[0];
    assert_eq!(choice.message.text_content(), "echo: hello there");
    assert_eq!(choice.message.tool_calls, None);
    assert_eq!(choice.finish_reason.as_deref(), Some("stop"));
    let usage = response.usage.unwrap();
    assert!(
        usage.prompt_tokens > 0 && usage.completion_tokens == 3,
        "{usage:?}"
    );
    assert_eq!(usage.total_tokens, usage.prompt_tokens + 3);
}

#[tokio::test]
async fn upstream_receives_headers_and_a_translated_body() {
    let upstream = MockUpstream::start(Script::new()).await;
    let mut request = hello();
    request.temperature = Some(0.2);
    request.extra.insert("seed".into(), json!(7));
    adapter(&upstream).chat(&request, MODEL).await.unwrap();
    let recorded = upstream.requests();
    let [received] = recorded.as_slice() else {
        panic!("expected one request, got {recorded:?}");
    };
    assert_eq!(received.method, "POST");
    assert_eq!(received.path, "/v1/messages");
    assert_eq!(received.header("x-api-key"), Some("k"));
    assert_eq!(received.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(received.header("authorization"), None);
    assert_eq!(
        received.body,
        json!({
            "model": MODEL,
            "system": "Be brief.",
            "max_tokens": 1024,
            "temperature": 0.2,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hello there"}]}],
        })
    );
}

#[tokio::test]
async fn tool_call_round_trip() {
    let upstream = MockUpstream::start(Script::new()).await;
    let model = adapter(&upstream);
    let mut body = json!({
        "model": "m", "tools": weather_tools(),
        "messages": [{"role": "user", "content": "Paris"}],
    });
    let response = model.chat(&request(body.clone()), MODEL).await.unwrap();
    let choice = &response.choices[0];
    assert_eq!(choice.finish_reason.as_deref(), Some("tool_calls"));
    let calls = choice.message.tool_calls.clone().unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].function.name, "weather");
    let arguments: Value = serde_json::from_str(&calls[0].function.arguments).unwrap();
    assert_eq!(arguments, json!({"query": "Paris"}));

    let messages = body["messages"].as_array_mut().unwrap();
    messages.push(serde_json::to_value(&choice.message).unwrap());
    messages.push(json!({"role": "tool", "tool_call_id": calls[0].id, "content": "sunny"}));
    let response = model.chat(&request(body), MODEL).await.unwrap();
    assert_eq!(
        response.choices[0].message.text_content(),
        "tool said: sunny"
    );
    assert_eq!(response.choices[0].finish_reason.as_deref(), Some("stop"));

    let recorded = upstream.requests();
    assert_eq!(
        recorded[1].body["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "Paris"}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": calls[0].id,
                "name": "weather", "input": {"query": "Paris"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": calls[0].id, "content": "sunny"}]},
        ])
    );
    assert_eq!(
        recorded[1].body["tools"],
        json!([{"name": "weather", "description": "Forecast",
            "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}}}])
    );
}

#[tokio::test]
async fn streamed_text_ends_with_a_usage_chunk() {
    let upstream = MockUpstream::start(Script::new()).await;
    let chunks = collect(adapter(&upstream).as_ref(), &hello()).await;
    assert!(chunks.iter().all(Result::is_ok), "{chunks:?}");
    let first = chunks[0].as_ref().unwrap();
    assert_eq!(
        first.choices[0].delta.role,
        Some(landfall_types::Role::Assistant)
    );
    assert_eq!(text_of(&chunks), "echo: hello there");
    assert_eq!(finish_reasons(&chunks), vec!["stop"]);
    let last = chunks.last().unwrap().as_ref().unwrap();
    assert!(last.choices.is_empty());
    let usage = last.usage.as_ref().unwrap();
    assert_eq!(usage.completion_tokens, 3);
    assert!(usage.prompt_tokens > 0);
    assert_eq!(usage.total_tokens, usage.prompt_tokens + 3);
    for chunk in &chunks {
        let chunk = chunk.as_ref().unwrap();
        assert_eq!((&chunk.id, &chunk.model), (&first.id, &first.model));
    }
    assert_eq!(upstream.requests()[0].body["stream"], true);
}

#[tokio::test]
async fn streamed_tool_use_becomes_tool_call_deltas() {
    let upstream = MockUpstream::start(Script::new()).await;
    let body = json!({
        "model": "m", "tools": weather_tools(), "tool_choice": "required",
        "messages": [{"role": "user", "content": "Rome"}],
    });
    let chunks = collect(adapter(&upstream).as_ref(), &request(body)).await;
    assert!(chunks.iter().all(Result::is_ok), "{chunks:?}");
    let deltas: Vec<_> = chunks
        .iter()
        .filter_map(|chunk| chunk.as_ref().ok())
        .flat_map(|chunk| &chunk.choices)
        .filter_map(|choice| choice.delta.tool_calls.as_ref())
        .flatten()
        .collect();
    assert!(deltas.iter().all(|delta| delta.index == 0));
    assert_eq!(deltas[0].kind.as_deref(), Some("function"));
    assert!(deltas[0].id.is_some());
    let function = deltas[0].function.as_ref().unwrap();
    assert_eq!(function.name.as_deref(), Some("weather"));
    let arguments: String = deltas
        .iter()
        .filter_map(|delta| delta.function.as_ref()?.arguments.as_deref())
        .collect();
    let arguments: Value = serde_json::from_str(&arguments).unwrap();
    assert_eq!(arguments, json!({"query": "Rome"}));
    assert_eq!(finish_reasons(&chunks), vec!["tool_calls"]);
    assert!(chunks.last().unwrap().as_ref().unwrap().usage.is_some());
    assert_eq!(
        upstream.requests()[0].body["tool_choice"],
        json!({"type": "any"})
    );
}

#[tokio::test]
async fn overloaded_is_transient() {
    let script = Script::new().messages([
        anthropic_error(529, "overloaded_error", "Overloaded"),
        anthropic_error(529, "overloaded_error", "Overloaded"),
    ]);
    let upstream = MockUpstream::start(script).await;
    let model = adapter(&upstream);
    let error = model.chat(&hello(), MODEL).await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Transient);
    match &error {
        ProviderError::Status {
            status,
            message,
            code,
            ..
        } => {
            assert_eq!(*status, 529);
            assert_eq!(message, "Overloaded");
            assert_eq!(code.as_deref(), Some("overloaded_error"));
        }
        other => panic!("expected a status error, got {other:?}"),
    }
    let error = model.chat_stream(&hello(), MODEL).await.err().unwrap();
    assert_eq!(error.class(), ErrorClass::Transient);
}

#[tokio::test]
async fn prompt_too_long_is_context_too_long() {
    let script = Script::new().messages([anthropic_error(
        400,
        "invalid_request_error",
        "prompt is too long: 210000 tokens > 200000 maximum",
    )]);
    let upstream = MockUpstream::start(script).await;
    let error = adapter(&upstream).chat(&hello(), MODEL).await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::ContextTooLong, "{error}");
}

#[tokio::test]
async fn other_bad_requests_are_invalid_requests() {
    let script = Script::new().messages([anthropic_error(
        400,
        "invalid_request_error",
        "messages: roles must alternate",
    )]);
    let upstream = MockUpstream::start(script).await;
    let error = adapter(&upstream).chat(&hello(), MODEL).await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::InvalidRequest, "{error}");
}

#[tokio::test]
async fn malformed_bodies_are_invalid_responses() {
    let script = Script::new().messages([
        Reply::Raw {
            status: 200,
            content_type: "application/json".into(),
            body: "{\"id\": \"msg_1\", \"content\": [".into(),
        },
        Reply::Json {
            status: 200,
            body: json!({"choices": []}),
            headers: Vec::new(),
        },
    ]);
    let upstream = MockUpstream::start(script).await;
    let model = adapter(&upstream);
    for _ in 0..2 {
        let error = model.chat(&hello(), MODEL).await.unwrap_err();
        assert!(
            matches!(error, ProviderError::InvalidResponse { .. }),
            "{error:?}"
        );
        assert_eq!(error.class(), ErrorClass::Transient);
    }
}

#[tokio::test]
async fn cut_or_unfinished_streams_are_broken() {
    let script = Script::new().messages([
        Reply::Stream {
            events: text_events(),
            delay_ms: 0,
            done: false,
            cut: true,
        },
        Reply::Stream {
            events: text_events(),
            delay_ms: 0,
            done: false,
            cut: false,
        },
    ]);
    let upstream = MockUpstream::start(script).await;
    let model = adapter(&upstream);
    for _ in 0..2 {
        let chunks = collect(model.as_ref(), &hello()).await;
        assert_eq!(text_of(&chunks), "Hel");
        let last = chunks.last().unwrap();
        assert!(
            matches!(last, Err(ProviderError::StreamBroken { .. })),
            "{last:?}"
        );
    }
}

#[tokio::test]
async fn error_event_mid_stream_is_a_stream_error() {
    let mut events = text_events();
    events.push(sse(json!({"type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"}})));
    let script = Script::new().messages([Reply::Stream {
        events,
        delay_ms: 0,
        done: false,
        cut: false,
    }]);
    let upstream = MockUpstream::start(script).await;
    let chunks = collect(adapter(&upstream).as_ref(), &hello()).await;
    let last = chunks.last().unwrap();
    let Err(error @ ProviderError::StreamError { message }) = last else {
        panic!("expected a stream error, got {last:?}");
    };
    assert!(message.contains("Overloaded"), "{message}");
    assert_eq!(error.class(), ErrorClass::Transient);
}

#[tokio::test]
async fn untranslatable_requests_never_reach_upstream() {
    let upstream = MockUpstream::start(Script::new()).await;
    let mut request = hello();
    request.extra.insert("n".into(), json!(2));
    let error = adapter(&upstream).chat(&request, MODEL).await.unwrap_err();
    assert!(
        matches!(error, ProviderError::Untranslatable { .. }),
        "{error:?}"
    );
    assert_eq!(error.class(), ErrorClass::Permanent);
    assert!(upstream.requests().is_empty());
}
