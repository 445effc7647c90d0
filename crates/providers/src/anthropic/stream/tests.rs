use super::*;
use serde_json::{Value, json};

/// A named event as Anthropic sends it: the name repeated as the data's `type`.
fn event(data: Value) -> SseEvent {
    SseEvent {
        event: data["type"].as_str().map(str::to_owned),
        data: data.to_string(),
    }
}

fn message_start() -> SseEvent {
    event(json!({"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [], "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": 12, "output_tokens": 1, "cache_read_input_tokens": 4}}}))
}

fn text_delta(index: u64, text: &str) -> SseEvent {
    event(json!({"type": "content_block_delta", "index": index,
        "delta": {"type": "text_delta", "text": text}}))
}

fn block_stop(index: u64) -> SseEvent {
    event(json!({"type": "content_block_stop", "index": index}))
}

fn message_end(stop_reason: &str, output_tokens: u64) -> [SseEvent; 2] {
    [
        event(json!({"type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": null},
            "usage": {"output_tokens": output_tokens}})),
        event(json!({"type": "message_stop"})),
    ]
}

async fn run(events: Vec<SseEvent>) -> Vec<Result<ChatChunk, ProviderError>> {
    run_results(events.into_iter().map(Ok).collect()).await
}

async fn run_results(
    events: Vec<Result<SseEvent, ProviderError>>,
) -> Vec<Result<ChatChunk, ProviderError>> {
    chunks(futures::stream::iter(events)).collect().await
}

/// Chunks without their id, object, created and model (checked separately), as JSON.
fn bodies(chunks: &[Result<ChatChunk, ProviderError>]) -> Vec<Value> {
    chunks
        .iter()
        .map(|chunk| {
            let chunk = chunk.as_ref().unwrap();
            let mut value = serde_json::to_value(chunk).unwrap();
            let object = value.as_object_mut().unwrap();
            for key in ["id", "object", "created", "model"] {
                object.remove(key);
            }
            value
        })
        .collect()
}

#[tokio::test]
async fn text_stream_becomes_role_content_finish_and_usage_chunks() {
    let mut events = vec![
        message_start(),
        event(json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}})),
        event(json!({"type": "ping"})),
        text_delta(0, "Hello"),
        text_delta(0, ", world"),
        block_stop(0),
    ];
    events.extend(message_end("end_turn", 5));
    let chunks = run(events).await;
    assert_eq!(
        bodies(&chunks),
        vec![
            json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                "finish_reason": null}]}),
            json!({"choices": [{"index": 0, "delta": {"content": "Hello"}, "finish_reason": null}]}),
            json!({"choices": [{"index": 0, "delta": {"content": ", world"},
                "finish_reason": null}]}),
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
            json!({"choices": [], "usage": {"prompt_tokens": 16, "completion_tokens": 5,
                "total_tokens": 21, "prompt_tokens_details": {"cached_tokens": 4}}}),
        ]
    );
    let first = chunks[0].as_ref().unwrap();
    assert_eq!(first.object, "chat.completion.chunk");
    for chunk in &chunks {
        let chunk = chunk.as_ref().unwrap();
        assert_eq!(
            (&chunk.id, chunk.created, &chunk.model),
            (&first.id, first.created, &first.model)
        );
    }
    assert_eq!(
        (first.id.as_str(), first.model.as_str()),
        ("msg_1", "claude-x")
    );
}

#[tokio::test]
async fn tool_use_blocks_become_indexed_tool_call_deltas() {
    let mut events = vec![
        message_start(),
        event(json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}})),
        text_delta(0, "Checking."),
        block_stop(0),
        event(
            json!({"type": "content_block_start", "index": 1, "content_block":
            {"type": "tool_use", "id": "toolu_a", "name": "weather", "input": {}}}),
        ),
        event(json!({"type": "content_block_delta", "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": ""}})),
        event(json!({"type": "content_block_delta", "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": "{\"city\":"}})),
        event(json!({"type": "content_block_delta", "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": "\"Paris\"}"}})),
        block_stop(1),
        event(
            json!({"type": "content_block_start", "index": 2, "content_block":
            {"type": "tool_use", "id": "toolu_b", "name": "time", "input": {}}}),
        ),
        event(json!({"type": "content_block_delta", "index": 2,
            "delta": {"type": "input_json_delta", "partial_json": "{}"}})),
        block_stop(2),
    ];
    events.extend(message_end("tool_use", 9));
    let chunks = bodies(&run(events).await);
    let tool_calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"].get("tool_calls"))
        .collect();
    assert_eq!(
        tool_calls,
        vec![
            &json!([{"index": 0, "id": "toolu_a", "type": "function",
                "function": {"name": "weather", "arguments": ""}}]),
            &json!([{"index": 0, "function": {"arguments": "{\"city\":"}}]),
            &json!([{"index": 0, "function": {"arguments": "\"Paris\"}"}}]),
            &json!([{"index": 1, "id": "toolu_b", "type": "function",
                "function": {"name": "time", "arguments": ""}}]),
            &json!([{"index": 1, "function": {"arguments": "{}"}}]),
        ]
    );
    assert_eq!(
        chunks[1]["choices"][0]["delta"],
        json!({"content": "Checking."})
    );
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(chunks.len(), 9);
}

#[tokio::test]
async fn thinking_and_unknown_events_are_skipped() {
    let mut events = vec![
        message_start(),
        event(json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "thinking", "thinking": ""}})),
        event(json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "hmm"}})),
        event(json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "signature_delta", "signature": "sig"}})),
        block_stop(0),
        event(json!({"type": "brand_new_event", "whatever": 1})),
        SseEvent {
            event: None,
            data: String::new(),
        },
        text_delta(1, "ok"),
    ];
    events.extend(message_end("max_tokens", 2));
    let chunks = bodies(&run(events).await);
    assert_eq!(chunks.len(), 4);
    assert_eq!(chunks[1]["choices"][0]["delta"], json!({"content": "ok"}));
    assert_eq!(chunks[2]["choices"][0]["finish_reason"], "length");
}

#[tokio::test]
async fn error_event_ends_the_stream_with_stream_error() {
    let events = vec![
        message_start(),
        text_delta(0, "Hel"),
        event(json!({"type": "error",
            "error": {"type": "overloaded_error", "message": "Overloaded"}})),
        text_delta(0, "never read"),
    ];
    let chunks = run(events).await;
    assert_eq!(chunks.len(), 3);
    match &chunks[2] {
        Err(ProviderError::StreamError { message }) => {
            assert_eq!(message, "Overloaded (overloaded_error)");
        }
        other => panic!("expected StreamError, got {other:?}"),
    }
}

#[tokio::test]
async fn missing_message_stop_is_stream_broken() {
    let events = vec![message_start(), text_delta(0, "Hel")];
    let chunks = run(events).await;
    assert_eq!(chunks.len(), 3);
    assert!(
        matches!(chunks[2], Err(ProviderError::StreamBroken { .. })),
        "{:?}",
        chunks[2]
    );
    let chunks = run(Vec::new()).await;
    assert!(matches!(
        chunks[..],
        [Err(ProviderError::StreamBroken { .. })]
    ));
}

#[tokio::test]
async fn events_after_message_stop_are_not_read() {
    let mut events = vec![message_start()];
    events.extend(message_end("end_turn", 1));
    events.push(text_delta(0, "late"));
    let chunks = run(events).await;
    assert_eq!(chunks.len(), 3);
    assert!(chunks.iter().all(Result::is_ok));
}

#[tokio::test]
async fn invalid_events_are_invalid_responses() {
    let cases = [
        vec![SseEvent {
            event: Some("message_start".into()),
            data: "{\"type\":".into(),
        }],
        vec![
            message_start(),
            event(json!({"type": "content_block_delta", "index": 0})),
        ],
        vec![text_delta(0, "before start")],
        vec![message_start(), message_start()],
    ];
    for events in cases {
        let chunks = run(events.clone()).await;
        let last = chunks.last().unwrap();
        assert!(
            matches!(last, Err(ProviderError::InvalidResponse { .. })),
            "{events:?}: {last:?}"
        );
    }
}

#[tokio::test]
async fn transport_errors_pass_through() {
    let events = vec![
        Ok(message_start()),
        Err(ProviderError::StreamBroken {
            message: "reset".into(),
        }),
        Ok(text_delta(0, "never read")),
    ];
    let chunks = run_results(events).await;
    assert_eq!(chunks.len(), 2);
    assert!(
        matches!(&chunks[1], Err(ProviderError::StreamBroken { message }) if message == "reset")
    );
}
