//! Default Anthropic Messages API behaviour (`POST /v1/messages`), plain and streamed.

use std::borrow::Cow;

use http::{Response, StatusCode};
use serde_json::{Value, json};

use crate::{
    body::{EventBuffer, MockBody, StreamEnd},
    openai::{self, content_text, word_count},
    script::Scripted,
    server::{Shared, json_response, sse_response},
};

const TOOL_USE_ID: &str = "toolu_mock_1";

enum Answer<'a> {
    Text(Cow<'a, str>),
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: Value,
    },
}

/// `POST /v1/messages`, default behaviour (or the scripted text or tool call).
pub(crate) fn messages(
    shared: &Shared,
    request: &Value,
    scripted: Option<Scripted<'_>>,
) -> Response<MockBody> {
    let messages = openai::messages(request);
    let prompt_tokens = word_count(&content_text(request.get("system")))
        + messages
            .iter()
            .map(|message| word_count(&message_text(message)) + 3)
            .sum::<usize>();
    let answer = answer(request, messages, scripted);
    let output_tokens = match &answer {
        Answer::Text(text) => word_count(text),
        Answer::ToolUse { input, .. } => word_count(&input.to_string()),
    };
    let stop_reason = match answer {
        Answer::Text(_) => "end_turn",
        Answer::ToolUse { .. } => "tool_use",
    };
    let id = format!("msg_mock_{}", shared.next_id());
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock-model");
    if request.get("stream").and_then(Value::as_bool) == Some(true) {
        let mut events = EventBuffer::default();
        let start = json!({
            "type": "message_start",
            "message": {
                "id": id, "type": "message", "role": "assistant", "model": model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": prompt_tokens, "output_tokens": 1},
            },
        });
        events.push_named("message_start", &start);
        push_block(&mut events, &answer);
        let delta = json!({
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": null},
            "usage": {"output_tokens": output_tokens},
        });
        events.push_named("message_delta", &delta);
        events.push_named("message_stop", &json!({"type": "message_stop"}));
        return sse_response(shared.event_stream(events, shared.stream_delay_ms, StreamEnd::Clean));
    }
    let block = match answer {
        Answer::Text(text) => json!({"type": "text", "text": text}),
        Answer::ToolUse { id, name, input } => {
            json!({"type": "tool_use", "id": id, "name": name, "input": input})
        }
    };
    json_response(
        StatusCode::OK,
        &json!({
            "id": id, "type": "message", "role": "assistant", "model": model,
            "content": [block], "stop_reason": stop_reason, "stop_sequence": null,
            "usage": {"input_tokens": prompt_tokens, "output_tokens": output_tokens},
        }),
    )
}

fn answer<'a>(
    request: &'a Value,
    messages: &'a [Value],
    scripted: Option<Scripted<'a>>,
) -> Answer<'a> {
    match scripted {
        Some(Scripted::Text(text)) => return Answer::Text(Cow::Borrowed(text)),
        Some(Scripted::ToolCall {
            id,
            name,
            arguments,
        }) => {
            return Answer::ToolUse {
                id,
                name,
                input: serde_json::from_str(arguments).unwrap_or_else(|_| json!({})),
            };
        }
        None => {}
    }
    let last_user = messages
        .iter()
        .rev()
        .find(|message| message.get("role").and_then(Value::as_str) == Some("user"));
    let last_is_user = messages
        .last()
        .and_then(|message| message.get("role"))
        .and_then(Value::as_str)
        == Some("user");
    let user_text = last_user.map(message_text).unwrap_or_default();
    if last_is_user && let Some(result) = last_user.and_then(tool_result) {
        return Answer::Text(Cow::Owned(format!(
            "tool said: {}",
            content_text(result.get("content"))
        )));
    }
    let first_tool = request
        .get("tools")
        .and_then(Value::as_array)
        .and_then(|tools| tools.first())
        .and_then(|tool| tool.get("name"))
        .and_then(Value::as_str);
    if last_is_user && let Some(name) = first_tool {
        return Answer::ToolUse {
            id: TOOL_USE_ID,
            name,
            input: json!({"query": user_text}),
        };
    }
    Answer::Text(Cow::Owned(format!("echo: {user_text}")))
}

/// The last `tool_result` block of a message, if any.
fn tool_result(message: &Value) -> Option<&Value> {
    message
        .get("content")
        .and_then(Value::as_array)?
        .iter()
        .rev()
        .find(|block| block.get("type").and_then(Value::as_str) == Some("tool_result"))
}

/// The text blocks of a message (content is a string or an array of blocks).
fn message_text(message: &Value) -> Cow<'_, str> {
    content_text(message.get("content"))
}

/// `content_block_start`, a `ping`, the deltas and `content_block_stop` of the one block.
fn push_block(events: &mut EventBuffer, answer: &Answer<'_>) {
    let start_block = match answer {
        Answer::Text(_) => json!({"type": "text", "text": ""}),
        Answer::ToolUse { id, name, .. } => {
            json!({"type": "tool_use", "id": id, "name": name, "input": {}})
        }
    };
    events.push_named(
        "content_block_start",
        &json!({"type": "content_block_start", "index": 0, "content_block": start_block}),
    );
    events.push_named("ping", &json!({"type": "ping"}));
    let delta_event =
        |delta: Value| json!({"type": "content_block_delta", "index": 0, "delta": delta});
    match answer {
        Answer::Text(text) => {
            let words: Vec<&str> = text.split_whitespace().collect();
            for (position, word) in words.iter().enumerate() {
                let text = if position + 1 < words.len() {
                    format!("{word} ")
                } else {
                    (*word).to_owned()
                };
                events.push_named(
                    "content_block_delta",
                    &delta_event(json!({"type": "text_delta", "text": text})),
                );
            }
        }
        Answer::ToolUse { input, .. } => {
            let json = input.to_string();
            let middle = json.len() / 2;
            let split = (middle..json.len())
                .find(|&index| json.is_char_boundary(index))
                .unwrap_or(json.len());
            let (head, tail) = json.split_at(split);
            for partial in [head, tail] {
                events.push_named(
                    "content_block_delta",
                    &delta_event(json!({"type": "input_json_delta", "partial_json": partial})),
                );
            }
        }
    }
    events.push_named(
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": 0}),
    );
}
