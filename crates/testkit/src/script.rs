//! What a [`MockUpstream`](crate::MockUpstream) answers: per-route queues of [`Reply`]s.

use serde_json::{Value, json};

/// What the server does.
///
/// Each route has a queue of scripted replies consumed in order; when the queue is empty the
/// route's default behaviour answers (see the crate docs).
#[derive(Clone, Debug)]
pub struct Script {
    pub(crate) chat: Vec<Reply>,
    pub(crate) embeddings: Vec<Reply>,
    pub(crate) messages: Vec<Reply>,
    pub(crate) stream_delay_ms: u64,
    pub(crate) record: bool,
}

impl Default for Script {
    fn default() -> Self {
        Self {
            chat: Vec::new(),
            embeddings: Vec::new(),
            messages: Vec::new(),
            stream_delay_ms: 0,
            record: true,
        }
    }
}

impl Script {
    /// An empty script: every route answers with its default behaviour, requests are recorded.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues replies for `POST /v1/chat/completions`.
    #[must_use]
    pub fn chat(mut self, replies: impl IntoIterator<Item = Reply>) -> Self {
        self.chat.extend(replies);
        self
    }

    /// Queues replies for `POST /v1/embeddings`.
    #[must_use]
    pub fn embeddings(mut self, replies: impl IntoIterator<Item = Reply>) -> Self {
        self.embeddings.extend(replies);
        self
    }

    /// Queues replies for `POST /v1/messages` (Anthropic Messages API).
    #[must_use]
    pub fn messages(mut self, replies: impl IntoIterator<Item = Reply>) -> Self {
        self.messages.extend(replies);
        self
    }

    /// Delay before each event of the default streaming replies (OpenAI and Anthropic).
    /// Defaults to 0.
    #[must_use]
    pub fn stream_delay_ms(mut self, delay_ms: u64) -> Self {
        self.stream_delay_ms = delay_ms;
        self
    }

    /// Whether requests are recorded for [`MockUpstream::requests`](crate::MockUpstream::requests).
    /// Defaults to `true`; the benchmark binary turns it off.
    #[must_use]
    pub fn record(mut self, record: bool) -> Self {
        self.record = record;
        self
    }
}

/// One scripted answer.
#[derive(Clone, Debug)]
pub enum Reply {
    /// The default, well-formed behaviour of the route.
    Default,
    /// The default behaviour of the route, with this assistant text instead of the echo (no tool
    /// call). Honours `"stream": true` on chat and messages routes; the embeddings route ignores
    /// the text.
    Text(String),
    /// The default reply shape, calling tool `name` with `arguments` (JSON text) under call id
    /// `id`, whatever the request's tools. Honours `"stream": true` on chat and messages
    /// routes. This is how tests script an agent's steps.
    ToolCall {
        id: String,
        name: String,
        arguments: String,
    },
    /// A JSON body with a status and extra headers.
    Json {
        status: u16,
        body: Value,
        headers: Vec<(String, String)>,
    },
    /// Any bytes with a content type (garbage, HTML, truncated JSON...).
    Raw {
        status: u16,
        content_type: String,
        body: String,
    },
    /// A 200 `text/event-stream` response made of `events`, with `delay_ms` before each.
    ///
    /// An event is written as `data: {event}\n\n`, unless it already starts with a field name
    /// (`event:`, `data:`, `id:`, `retry:`) or a comment (`:`), in which case it is written as is,
    /// followed by `\n\n`. If `done`, `data: [DONE]\n\n` follows. If `cut`, the connection is
    /// aborted after the events instead of ending the body cleanly.
    Stream {
        events: Vec<String>,
        delay_ms: u64,
        done: bool,
        cut: bool,
    },
    /// Waits, then sends the inner reply.
    Delay { ms: u64, then: Box<Reply> },
    /// Never answers; holds the connection open until the client gives up.
    Hang,
}

impl Reply {
    /// `status` with an OpenAI-shaped error body
    /// `{"error":{"message","type","param":null,"code":null}}`.
    pub fn status(status: u16, message: &str) -> Reply {
        Reply::Json {
            status,
            body: error_body(message, error_type(status), Value::Null),
            headers: Vec::new(),
        }
    }

    /// 429 with a `Retry-After` header and an OpenAI rate-limit error body.
    pub fn rate_limited(retry_after_secs: u64) -> Reply {
        Reply::Json {
            status: 429,
            body: error_body(
                "Rate limit reached for requests. Please try again later.",
                "requests",
                Value::from("rate_limit_exceeded"),
            ),
            headers: vec![
                ("retry-after".to_owned(), retry_after_secs.to_string()),
                ("x-ratelimit-remaining-requests".to_owned(), "0".to_owned()),
            ],
        }
    }

    /// 400 with OpenAI's `context_length_exceeded` error body.
    pub fn context_too_long() -> Reply {
        Reply::Json {
            status: 400,
            body: error_body(
                "This model's maximum context length is 4096 tokens. However, your messages \
                 resulted in 5000 tokens.",
                "invalid_request_error",
                Value::from("context_length_exceeded"),
            ),
            headers: Vec::new(),
        }
    }

    /// A 200 `chat.completion` with this text and realistic usage (a streamed one if the request
    /// asks for a stream). Same as [`Reply::Text`].
    pub fn chat_text(text: &str) -> Reply {
        Reply::Text(text.to_owned())
    }

    /// A call to tool `name` with `arguments` under call id `id`. Same as [`Reply::ToolCall`].
    pub fn tool_call(id: &str, name: &str, arguments: &Value) -> Reply {
        Reply::ToolCall {
            id: id.to_owned(),
            name: name.to_owned(),
            arguments: arguments.to_string(),
        }
    }

    /// Waits `ms`, then sends `self`.
    #[must_use]
    pub fn delayed(self, ms: u64) -> Reply {
        Reply::Delay {
            ms,
            then: Box::new(self),
        }
    }
}

/// OpenAI's error `type` for a status, as the real API reports it.
fn error_type(status: u16) -> &'static str {
    match status {
        429 => "requests",
        500..=599 => "server_error",
        _ => "invalid_request_error",
    }
}

/// What a scripted reply puts in the default reply shape.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Scripted<'a> {
    Text(&'a str),
    ToolCall {
        id: &'a str,
        name: &'a str,
        arguments: &'a str,
    },
}

pub(crate) fn error_body(message: &str, kind: &str, code: Value) -> Value {
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}
