use super::*;
use serde_json::json;

/// A chat request from its JSON form, as a client would send it.
fn chat(body: Value) -> ChatRequest {
    serde_json::from_value(body).unwrap()
}

/// The Messages API body `body` translates to, with a default `max_tokens` of 1024.
fn translate(body: Value) -> Result<Value, ProviderError> {
    let request = chat(body);
    let translated = super::request(&request, "claude-x", 1024, false)?;
    Ok(serde_json::to_value(translated).unwrap())
}

fn untranslatable_message(body: Value) -> String {
    match translate(body) {
        Err(ProviderError::Untranslatable { message }) => message,
        other => panic!("expected Untranslatable, got {other:?}"),
    }
}

#[test]
fn minimal_request_gets_model_and_default_max_tokens() {
    let body = translate(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}));
    assert_eq!(
        body.unwrap(),
        json!({
            "model": "claude-x",
            "max_tokens": 1024,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        })
    );
}

#[test]
fn sampling_fields_and_user_are_translated_and_the_rest_dropped() {
    let body = translate(json!({
        "model": "m", "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 50, "max_completion_tokens": 70, "temperature": 0.5, "top_p": 0.9,
        "stop": "END", "user": "u-1", "seed": 3, "logprobs": true, "frequency_penalty": 1,
        "presence_penalty": 1, "n": 1, "top_k": 5,
    }))
    .unwrap();
    assert_eq!(body["max_tokens"], 70);
    assert_eq!(body["temperature"], 0.5);
    assert_eq!(body["top_p"], 0.9);
    assert_eq!(body["top_k"], 5);
    assert_eq!(body["stop_sequences"], json!(["END"]));
    assert_eq!(body["metadata"], json!({"user_id": "u-1"}));
    for dropped in [
        "seed",
        "logprobs",
        "frequency_penalty",
        "presence_penalty",
        "n",
        "user",
    ] {
        assert!(body.get(dropped).is_none(), "{dropped} was sent");
    }
    let body = translate(json!({
        "model": "m", "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 50, "stop": ["a", "b"],
    }))
    .unwrap();
    assert_eq!(body["max_tokens"], 50);
    assert_eq!(body["stop_sequences"], json!(["a", "b"]));
}

#[test]
fn system_and_developer_messages_join_into_system() {
    let body = translate(json!({"model": "m", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
        {"role": "user", "content": "hi"},
        {"role": "system", "content": ""},
        {"role": "system", "content": "Late rule."},
    ]}))
    .unwrap();
    assert_eq!(body["system"], "Be brief.\n\nUse French.\n\nLate rule.");
    assert_eq!(body["messages"].as_array().unwrap().len(), 1);
}

#[test]
fn tool_round_trip_messages_become_tool_use_and_merged_tool_results() {
    let body = translate(json!({"model": "m", "messages": [
        {"role": "user", "content": "weather in Paris and Rome?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "call_1", "type": "function",
                "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"id": "call_2", "type": "function",
                "function": {"name": "weather", "arguments": "{\"city\":\"Rome\"}"}},
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2",
            "content": [{"type": "text", "text": "rainy"}]},
        {"role": "user", "content": "thanks"},
    ]}))
    .unwrap();
    assert_eq!(
        body["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "weather in Paris and Rome?"}]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "call_2", "name": "weather", "input": {"city": "Rome"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": "rainy"},
                {"type": "text", "text": "thanks"},
            ]},
        ])
    );
}

#[test]
fn consecutive_turns_merge_and_tool_results_come_first() {
    let body = translate(json!({"model": "m", "messages": [
        {"role": "user", "content": "a"},
        {"role": "user", "content": "b"},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "t", "type": "function", "function": {"name": "f", "arguments": ""}}]},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "note"},
        {"role": "tool", "tool_call_id": "t", "content": ""},
    ]}))
    .unwrap();
    assert_eq!(
        body["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "t", "name": "f", "input": {}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t"},
                {"type": "text", "text": "note"},
            ]},
        ])
    );
}

#[test]
fn images_become_base64_or_url_sources() {
    let body = translate(json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?", "cache_control": {"type": "ephemeral"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}},
    ]}]}))
    .unwrap();
    assert_eq!(
        body["messages"][0]["content"],
        json!([
            {"type": "text", "text": "what is this?", "cache_control": {"type": "ephemeral"}},
            {"type": "image", "source":
                {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        ])
    );
}

#[test]
fn tools_and_tool_choice_map() {
    let tools = json!([
        {"type": "function", "function": {"name": "weather", "description": "Forecast",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
        {"type": "function", "function": {"name": "now"}},
    ]);
    let cases = [
        (json!(null), json!(null)),
        (json!("auto"), json!({"type": "auto"})),
        (json!("required"), json!({"type": "any"})),
        (json!("none"), json!({"type": "none"})),
        (
            json!({"type": "function", "function": {"name": "weather"}}),
            json!({"type": "tool", "name": "weather"}),
        ),
    ];
    for (choice, expected) in cases {
        let body = translate(json!({
            "model": "m", "messages": [{"role": "user", "content": "hi"}],
            "tools": tools, "tool_choice": choice,
        }))
        .unwrap();
        assert_eq!(
            body.get("tool_choice").unwrap_or(&Value::Null),
            &expected,
            "{choice}"
        );
        assert_eq!(
            body["tools"],
            json!([
                {"name": "weather", "description": "Forecast", "input_schema":
                    {"type": "object", "properties": {"city": {"type": "string"}}}},
                {"name": "now", "input_schema": {"type": "object", "properties": {}}},
            ])
        );
    }
}

#[test]
fn parallel_tool_calls_false_disables_parallel_use() {
    let request = |choice: Value| {
        json!({
            "model": "m", "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": choice, "parallel_tool_calls": false,
        })
    };
    let body = translate(request(json!(null))).unwrap();
    assert_eq!(
        body["tool_choice"],
        json!({"type": "auto", "disable_parallel_tool_use": true})
    );
    let body = translate(request(json!("required"))).unwrap();
    assert_eq!(
        body["tool_choice"],
        json!({"type": "any", "disable_parallel_tool_use": true})
    );
    let body = translate(request(json!("none"))).unwrap();
    assert_eq!(body["tool_choice"], json!({"type": "none"}));
}

#[test]
fn tool_choice_without_tools_is_dropped() {
    let body = translate(json!({
        "model": "m", "messages": [{"role": "user", "content": "hi"}],
        "tools": [], "tool_choice": "none",
    }))
    .unwrap();
    assert!(body.get("tool_choice").is_none());
    assert!(body.get("tools").is_none());
}

#[test]
fn response_format_becomes_a_system_instruction() {
    let body = translate(json!({
        "model": "m",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "answer",
            "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}},
    }))
    .unwrap();
    let system = body["system"].as_str().unwrap();
    assert!(
        system.starts_with("Be brief.\n\nRespond with a single JSON object"),
        "{system}"
    );
    assert!(
        system.ends_with(r#"{"properties":{"a":{"type":"string"}},"type":"object"}"#),
        "{system}"
    );
    assert!(body.get("response_format").is_none());

    let body = translate(json!({
        "model": "m", "messages": [{"role": "user", "content": "hi"}],
        "response_format": {"type": "json_object"},
    }))
    .unwrap();
    assert!(
        body["system"]
            .as_str()
            .unwrap()
            .starts_with("Respond with a single JSON object")
    );

    let body = translate(json!({
        "model": "m", "messages": [{"role": "user", "content": "hi"}],
        "response_format": {"type": "text"},
    }))
    .unwrap();
    assert!(body.get("system").is_none());
}

#[test]
fn inexpressible_requests_are_untranslatable() {
    let user = json!({"role": "user", "content": "hi"});
    let call = |arguments: &str| {
        json!({"role": "assistant", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}]})
    };
    let cases = [
        (json!({"model": "m", "messages": [user], "n": 2}), "n = 2"),
        (
            json!({"model": "m", "messages": [user, call("{not json")]}),
            "not valid JSON",
        ),
        (
            json!({"model": "m", "messages": [user, call("[1]")]}),
            "not a JSON object",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]}]}),
            "input_audio",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}]}),
            "ftp",
        ),
        (
            json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}),
            "tool_call_id",
        ),
        (
            json!({"model": "m", "messages": [{"role": "function", "name": "f", "content": "x"}]}),
            "function",
        ),
        (
            json!({"model": "m", "messages": [user], "tool_choice": "sometimes",
                "tools": [{"type": "function", "function": {"name": "f"}}]}),
            "sometimes",
        ),
        (
            json!({"model": "m", "messages": [user],
                "response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}),
            "schema",
        ),
    ];
    for (body, needle) in cases {
        let message = untranslatable_message(body.clone());
        assert!(message.contains(needle), "{body}: {message}");
    }
}

#[test]
fn streaming_request_sets_stream() {
    let request = chat(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}));
    let body = serde_json::to_value(super::request(&request, "c", 8, true).unwrap()).unwrap();
    assert_eq!(body["stream"], true);
}

fn message(body: Value) -> ChatResponse {
    response(serde_json::from_value(body).unwrap())
}

#[test]
fn text_response_translates() {
    let response = message(json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": ", world"}],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 10, "output_tokens": 3},
    }));
    assert_eq!(response.id, "msg_1");
    assert_eq!(response.object, "chat.completion");
    assert_eq!(response.model, "claude-x");
    assert!(response.created > 1_600_000_000);
    let choice = &response.choices[0];
    assert_eq!(choice.message.role, Role::Assistant);
    assert_eq!(choice.message.text_content(), "Hello, world");
    assert_eq!(choice.message.tool_calls, None);
    assert_eq!(choice.finish_reason.as_deref(), Some("stop"));
    let usage = response.usage.unwrap();
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens
        ),
        (10, 3, 13)
    );
    assert!(usage.extra.is_empty());
}

#[test]
fn tool_use_response_translates() {
    let response = message(json!({
        "id": "msg_2", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "s"},
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 10, "output_tokens": 3},
    }));
    let serialized = serde_json::to_value(&response.choices[0]).unwrap();
    assert_eq!(
        serialized,
        json!({
            "index": 0, "finish_reason": "tool_calls", "logprobs": null,
            "message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": "toolu_1", "type": "function",
                    "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
            ]},
        })
    );
}

#[test]
fn usage_counts_cache_tokens_as_prompt_tokens() {
    let response = message(json!({
        "id": "m", "model": "c", "content": [], "stop_reason": "end_turn",
        "usage": {"input_tokens": 5, "output_tokens": 7, "cache_creation_input_tokens": 100,
            "cache_read_input_tokens": 1000},
    }));
    let usage = serde_json::to_value(response.usage.unwrap()).unwrap();
    assert_eq!(
        usage,
        json!({"prompt_tokens": 1105, "completion_tokens": 7, "total_tokens": 1112,
            "prompt_tokens_details": {"cached_tokens": 1000}})
    );
    assert_eq!(response.choices[0].message.content, None);
}

#[test]
fn stop_reasons_map_to_finish_reasons() {
    let cases = [
        (Some("end_turn"), "stop"),
        (Some("stop_sequence"), "stop"),
        (Some("max_tokens"), "length"),
        (Some("tool_use"), "tool_calls"),
        (Some("refusal"), "content_filter"),
        (Some("pause_turn"), "stop"),
        (Some("something_new"), "stop"),
        (None, "stop"),
    ];
    for (stop_reason, expected) in cases {
        assert_eq!(finish_reason(stop_reason), expected, "{stop_reason:?}");
    }
}

#[test]
fn wrong_shaped_responses_are_invalid() {
    let bodies: [&[u8]; 3] = [
        b"not json",
        br#"{"type": "error", "error": {"type": "x", "message": "y"}}"#,
        br#"{"id": "m", "model": "c", "content": [{"type": "text"}]}"#,
    ];
    for body in bodies {
        let parsed = crate::http::parse_json::<MessagesResponse>(body);
        assert!(
            matches!(parsed, Err(ProviderError::InvalidResponse { .. })),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}
