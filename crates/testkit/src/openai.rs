//! Default OpenAI behaviours: chat completions (plain and streamed), embeddings, models.
//!
//! The chat paths are the benchmark's hot path: responses are serialized from borrowed structs
//! straight into one buffer, with no intermediate `Value`.

use std::borrow::Cow;

use http::{Response, StatusCode};
use serde::Serialize;
use serde_json::{Value, json};

use crate::{
    body::{EventBuffer, MockBody, StreamEnd},
    script::Scripted,
    server::{Shared, error_response, json_bytes_response, json_response, sse_response},
};

const TOOL_CALL_ID: &str = "call_mock_1";
/// Largest `n` honoured, so a typo cannot make the mock allocate gigabytes.
const MAX_CHOICES: u64 = 128;

/// What the default chat reply says, decided from the request.
struct ChatPlan<'a> {
    model: &'a str,
    /// The assistant text, or `None` for a tool call.
    text: Option<Cow<'a, str>>,
    tool_call: Option<PlannedCall<'a>>,
    choices: usize,
    usage: Usage,
}

struct PlannedCall<'a> {
    id: &'a str,
    name: &'a str,
    /// JSON text.
    arguments: Cow<'a, str>,
}

impl ChatPlan<'_> {
    fn finish_reason(&self) -> &'static str {
        if self.tool_call.is_some() {
            "tool_calls"
        } else {
            "stop"
        }
    }
}

fn plan_chat<'a>(request: &'a Value, scripted: Option<Scripted<'a>>) -> ChatPlan<'a> {
    let messages = messages(request);
    let prompt_tokens = messages
        .iter()
        .map(|message| word_count(&content_text(message.get("content"))) + 3)
        .sum();
    let last = messages.last();
    let last_role = last
        .and_then(|message| message.get("role"))
        .and_then(Value::as_str);
    let last_user = || {
        messages
            .iter()
            .rev()
            .find(|message| message.get("role").and_then(Value::as_str) == Some("user"))
            .map(|message| content_text(message.get("content")))
            .unwrap_or_default()
    };
    let first_tool = request
        .get("tools")
        .and_then(Value::as_array)
        .and_then(|tools| tools.first())
        .and_then(|tool| tool.pointer("/function/name"))
        .and_then(Value::as_str);
    let response_format = request
        .pointer("/response_format/type")
        .and_then(Value::as_str);

    let (text, tool_call) = match (scripted, last_role, first_tool) {
        (Some(Scripted::Text(text)), _, _) => (Some(Cow::Borrowed(text)), None),
        (
            Some(Scripted::ToolCall {
                id,
                name,
                arguments,
            }),
            _,
            _,
        ) => (
            None,
            Some(PlannedCall {
                id,
                name,
                arguments: Cow::Borrowed(arguments),
            }),
        ),
        (None, Some("tool"), _) => {
            let tool_text = content_text(last.and_then(|message| message.get("content")));
            (Some(Cow::Owned(format!("tool said: {tool_text}"))), None)
        }
        (None, Some("user"), Some(name)) => {
            let arguments = json!({ "query": last_user() }).to_string();
            (
                None,
                Some(PlannedCall {
                    id: TOOL_CALL_ID,
                    name,
                    arguments: Cow::Owned(arguments),
                }),
            )
        }
        (None, _, _) if matches!(response_format, Some("json_schema" | "json_object")) => (
            Some(Cow::Owned(json!({ "echo": last_user() }).to_string())),
            None,
        ),
        (None, _, _) => (Some(Cow::Owned(format!("echo: {}", last_user()))), None),
    };
    let choices = request
        .get("n")
        .and_then(Value::as_u64)
        .unwrap_or(1)
        .clamp(1, MAX_CHOICES) as usize;
    let completion_words = match (&text, &tool_call) {
        (Some(text), _) => word_count(text),
        (None, Some(call)) => word_count(&call.arguments),
        (None, None) => 0,
    };
    let completion_tokens = completion_words * choices;
    ChatPlan {
        model: request
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("mock-model"),
        text,
        tool_call,
        choices,
        usage: Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        },
    }
}

/// `POST /v1/chat/completions`, default behaviour (or the scripted text or tool call).
pub(crate) fn chat(
    shared: &Shared,
    request: &Value,
    scripted: Option<Scripted<'_>>,
) -> Response<MockBody> {
    let plan = plan_chat(request, scripted);
    let id = format!("chatcmpl-mock-{}", shared.next_id());
    let created = unix_secs();
    if request.get("stream").and_then(Value::as_bool) == Some(true) {
        let include_usage = request
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            == Some(true);
        let header = ChunkHeader {
            id: &id,
            created,
            model: plan.model,
            include_usage,
        };
        let events = chat_chunks(&plan, &header);
        return sse_response(shared.event_stream(events, shared.stream_delay_ms, StreamEnd::Clean));
    }
    let tool_calls = plan.tool_call.as_ref().map(|call| {
        [ToolCall {
            index: None,
            id: Some(call.id),
            kind: Some("function"),
            function: FunctionCall {
                name: Some(call.name),
                arguments: &call.arguments,
            },
        }]
    });
    let message = AssistantMessage {
        role: "assistant",
        content: plan.text.as_deref(),
        tool_calls,
        refusal: (),
    };
    let choices = (0..plan.choices)
        .map(|index| CompletionChoice {
            index,
            message: &message,
            logprobs: (),
            finish_reason: plan.finish_reason(),
        })
        .collect();
    let completion = Completion {
        id: &id,
        object: "chat.completion",
        created,
        model: plan.model,
        system_fingerprint: "fp_mock",
        choices,
        usage: &plan.usage,
    };
    let mut body = Vec::with_capacity(384);
    // Serializing plain structs of strings and numbers into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut body, &completion);
    json_bytes_response(StatusCode::OK, body)
}

struct ChunkHeader<'a> {
    id: &'a str,
    created: u64,
    model: &'a str,
    include_usage: bool,
}

impl ChunkHeader<'_> {
    fn chunk<'a>(&'a self, choices: &'a [ChunkChoice<'a>]) -> Chunk<'a> {
        Chunk {
            id: self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: self.model,
            system_fingerprint: "fp_mock",
            choices,
            usage: self.include_usage.then_some(None),
        }
    }
}

/// The whole `chat.completion.chunk` sequence, one SSE event per chunk, ending in `[DONE]`.
fn chat_chunks(plan: &ChatPlan<'_>, header: &ChunkHeader<'_>) -> EventBuffer {
    let words: Vec<&str> = plan
        .text
        .as_deref()
        .map(|text| text.split_whitespace().collect())
        .unwrap_or_default();
    let fragments = plan
        .tool_call
        .as_ref()
        .map(|call| fragments(&call.arguments, 8))
        .unwrap_or_default();
    let per_choice = 2 + words.len() + fragments.len();
    let events = plan.choices * per_choice + 2;
    let mut buffer = EventBuffer::with_capacity(events * (200 + header.model.len()), events);
    let push =
        |buffer: &mut EventBuffer, index: usize, delta: Delta<'_>, finish: Option<&'static str>| {
            let choice = [ChunkChoice {
                index,
                delta,
                logprobs: (),
                finish_reason: finish,
            }];
            buffer.push_json(&header.chunk(&choice));
        };
    let mut word = String::new();
    for index in 0..plan.choices {
        match &plan.tool_call {
            Some(call) => {
                let opening = Delta {
                    role: Some("assistant"),
                    content: Some(None),
                    tool_calls: Some([ToolCall {
                        index: Some(0),
                        id: Some(call.id),
                        kind: Some("function"),
                        function: FunctionCall {
                            name: Some(call.name),
                            arguments: "",
                        },
                    }]),
                };
                push(&mut buffer, index, opening, None);
                for fragment in &fragments {
                    let delta = Delta {
                        tool_calls: Some([ToolCall {
                            index: Some(0),
                            id: None,
                            kind: None,
                            function: FunctionCall {
                                name: None,
                                arguments: fragment,
                            },
                        }]),
                        ..Delta::default()
                    };
                    push(&mut buffer, index, delta, None);
                }
            }
            None => {
                let opening = Delta {
                    role: Some("assistant"),
                    content: Some(Some("")),
                    tool_calls: None,
                };
                push(&mut buffer, index, opening, None);
                for (position, text) in words.iter().enumerate() {
                    word.clear();
                    word.push_str(text);
                    if position + 1 < words.len() {
                        word.push(' ');
                    }
                    let delta = Delta {
                        content: Some(Some(&word)),
                        ..Delta::default()
                    };
                    push(&mut buffer, index, delta, None);
                }
            }
        }
        push(
            &mut buffer,
            index,
            Delta::default(),
            Some(plan.finish_reason()),
        );
    }
    if header.include_usage {
        let mut chunk = header.chunk(&[]);
        chunk.usage = Some(Some(&plan.usage));
        buffer.push_json(&chunk);
    }
    buffer.push_data("[DONE]");
    buffer
}

/// Splits `text` into pieces of at most `max_bytes` bytes (more for a wide char), on char
/// boundaries, like the argument fragments of a streamed tool call.
fn fragments(text: &str, max_bytes: usize) -> Vec<&str> {
    let mut pieces = Vec::with_capacity(text.len() / max_bytes + 1);
    let mut rest = text;
    while !rest.is_empty() {
        let mut end = max_bytes.min(rest.len());
        while !rest.is_char_boundary(end) {
            end += 1;
        }
        let (piece, tail) = rest.split_at(end);
        pieces.push(piece);
        rest = tail;
    }
    pieces
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: usize,
    completion_tokens: usize,
    total_tokens: usize,
}

#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    system_fingerprint: &'static str,
    choices: Vec<CompletionChoice<'a>>,
    usage: &'a Usage,
}

#[derive(Serialize)]
struct CompletionChoice<'a> {
    index: usize,
    message: &'a AssistantMessage<'a>,
    logprobs: (),
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct AssistantMessage<'a> {
    role: &'static str,
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCall<'a>; 1]>,
    refusal: (),
}

#[derive(Serialize)]
struct ToolCall<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
    function: FunctionCall<'a>,
}

#[derive(Serialize)]
struct FunctionCall<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    system_fingerprint: &'static str,
    choices: &'a [ChunkChoice<'a>],
    /// Absent without `include_usage`; with it, `null` except on the last chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<&'a Usage>>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: usize,
    delta: Delta<'a>,
    logprobs: (),
    finish_reason: Option<&'static str>,
}

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    /// `Some(None)` is an explicit `null` (the opening chunk of a tool call).
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCall<'a>; 1]>,
}

/// `POST /v1/embeddings`, default behaviour.
pub(crate) fn embeddings(request: &Value) -> Response<MockBody> {
    let Some(inputs) = request.get("input").and_then(embedding_inputs) else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "'input' must be a string, an array of strings, an array of integers or an array of \
             integer arrays",
        );
    };
    let dimensions = request
        .get("dimensions")
        .and_then(Value::as_u64)
        .unwrap_or(8)
        .clamp(1, 4096) as usize;
    let base64 = request.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let prompt_tokens: usize = inputs.iter().map(|(_, tokens)| tokens).sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, (text, _))| {
            let vector = embedding_vector(text, dimensions);
            let embedding = if base64 {
                let bytes: Vec<u8> = vector
                    .iter()
                    .flat_map(|value| value.to_le_bytes())
                    .collect();
                Value::from(crate::base64::encode(&bytes))
            } else {
                Value::from(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock-embedding");
    json_response(
        StatusCode::OK,
        &json!({
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
        }),
    )
}

/// Each input's text (token ids are spelled out) and token count; `None` if malformed.
fn embedding_inputs(input: &Value) -> Option<Vec<(Cow<'_, str>, usize)>> {
    let tokens = |items: &Vec<Value>| -> Option<(Cow<'_, str>, usize)> {
        let ids: Option<Vec<String>> = items
            .iter()
            .map(|item| item.as_u64().map(|id| id.to_string()))
            .collect();
        Some((Cow::Owned(ids?.join(" ")), items.len()))
    };
    match input {
        Value::String(text) => Some(vec![(Cow::Borrowed(text.as_str()), word_count(text))]),
        Value::Array(items) if items.iter().all(Value::is_string) => Some(
            items
                .iter()
                .filter_map(Value::as_str)
                .map(|text| (Cow::Borrowed(text), word_count(text)))
                .collect(),
        ),
        Value::Array(items) if items.iter().all(Value::is_number) => Some(vec![tokens(items)?]),
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_array().and_then(tokens))
            .collect(),
        _ => None,
    }
}

/// A deterministic unit-length vector derived from a hash of `text`.
pub(crate) fn embedding_vector(text: &str, dimensions: usize) -> Vec<f32> {
    // FNV-1a, then splitmix64 to spread the seed over the dimensions.
    let mut state = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let mut vector: Vec<f32> = (0..dimensions)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut mixed = state;
            mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            mixed ^= mixed >> 31;
            // Top 24 bits as a float in [-1, 1).
            ((mixed >> 40) as f32 / (1u64 << 23) as f32) - 1.0
        })
        .collect();
    let norm = vector.iter().map(|value| value * value).sum::<f32>().sqrt();
    if norm > f32::EPSILON {
        vector.iter_mut().for_each(|value| *value /= norm);
    } else if let Some(first) = vector.first_mut() {
        *first = 1.0;
    }
    vector
}

/// `GET /v1/models`.
pub(crate) fn models() -> Value {
    json!({
        "object": "list",
        "data": [{"id": "mock-model", "object": "model", "created": 0, "owned_by": "mock"}],
    })
}

pub(crate) fn messages(request: &Value) -> &[Value] {
    request
        .get("messages")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// The text of a message's content: a string, or the `text` fields of an array of parts joined
/// with a space.
pub(crate) fn content_text(content: Option<&Value>) -> Cow<'_, str> {
    match content {
        Some(Value::String(text)) => Cow::Borrowed(text),
        Some(Value::Array(parts)) => {
            let mut texts = parts
                .iter()
                .filter_map(|part| part.get("text").and_then(Value::as_str));
            match (texts.next(), texts.next()) {
                (None, _) => Cow::Borrowed(""),
                (Some(only), None) => Cow::Borrowed(only),
                (Some(first), Some(second)) => {
                    let mut joined = format!("{first} {second}");
                    for text in texts {
                        joined.push(' ');
                        joined.push_str(text);
                    }
                    Cow::Owned(joined)
                }
            }
        }
        _ => Cow::Borrowed(""),
    }
}

pub(crate) fn word_count(text: &str) -> usize {
    text.split_whitespace().count()
}

pub(crate) fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_cover_the_text_on_char_boundaries() {
        let text = r#"{"query":"héllo wörld, a longer one"}"#;
        let pieces = fragments(text, 8);
        assert!(pieces.len() > 2);
        assert_eq!(pieces.concat(), text);
    }

    #[test]
    fn embedding_is_deterministic_and_unit_length() {
        let first = embedding_vector("hello", 8);
        assert_eq!(first, embedding_vector("hello", 8));
        assert_ne!(first, embedding_vector("hellp", 8));
        let norm: f32 = first.iter().map(|value| value * value).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
        assert_eq!(embedding_vector("x", 32).len(), 32);
    }

    #[test]
    fn content_text_joins_parts() {
        let parts = json!([{"type": "text", "text": "a b"}, {"type": "image_url"}, {"type": "text", "text": "c"}]);
        assert_eq!(content_text(Some(&parts)), "a b c");
        assert_eq!(content_text(Some(&json!("x"))), "x");
        assert_eq!(content_text(None), "");
    }
}
