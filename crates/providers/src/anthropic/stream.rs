//! Messages API stream events as OpenAI-shaped chunks.
//!
//! Anthropic streams a message as `message_start`, then per content block a
//! `content_block_start`, deltas and a `content_block_stop`, then `message_delta` (stop reason,
//! output tokens) and `message_stop`. OpenAI clients expect a role chunk, content and tool call
//! deltas, a finish reason chunk and a usage chunk; this module maps one onto the other, one
//! event at a time.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use landfall_types::{
    ChatChunk, ChunkChoice, Delta, Extra, FunctionCallDelta, Role, ToolCallDelta,
};
use serde::Deserialize;

use super::convert::{AnthropicUsage, finish_reason, unix_now};
use crate::ProviderError;
use crate::http::parse_json;
use crate::sse::SseEvent;

/// The events this adapter reads. Unknown event types are skipped, as Anthropic's versioning
/// policy asks, since new ones may be added at any time.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StreamEvent {
    MessageStart {
        message: StartMessage,
    },
    ContentBlockStart {
        index: u64,
        content_block: StartBlock,
    },
    ContentBlockDelta {
        index: u64,
        delta: BlockDelta,
    },
    ContentBlockStop,
    MessageDelta {
        delta: MessageDeltaBody,
        #[serde(default)]
        usage: AnthropicUsage,
    },
    MessageStop,
    Ping,
    Error {
        error: ErrorBody,
    },
    #[serde(other)]
    Unknown,
}

/// The message shell `message_start` carries; its content is always empty.
#[derive(Debug, Deserialize)]
struct StartMessage {
    id: String,
    model: String,
    #[serde(default)]
    usage: AnthropicUsage,
}

/// The opening of a content block.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StartBlock {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
    },
    /// Thinking, server tool use and blocks added later: nothing a chat chunk can carry.
    #[serde(other)]
    Other,
}

/// A fragment of a content block.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockDelta {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    /// Thinking, signature and citation deltas.
    #[serde(other)]
    Other,
}

/// The message-level change `message_delta` carries.
#[derive(Debug, Deserialize)]
struct MessageDeltaBody {
    #[serde(default)]
    stop_reason: Option<String>,
}

/// The `error` of an `error` event, as in an error response body.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// Turns Messages API events into chunks: a role chunk, content and tool call deltas, a finish
/// reason chunk, then a usage chunk (with no choices) once `message_stop` arrives. The stream
/// ends after an error, which is its last item; ending without `message_stop` is
/// [`ProviderError::StreamBroken`].
pub(super) fn chunks<E>(
    events: E,
) -> impl Stream<Item = Result<ChatChunk, ProviderError>> + Send + 'static
where
    E: Stream<Item = Result<SseEvent, ProviderError>> + Send + 'static,
{
    struct State<E> {
        events: Pin<Box<E>>,
        translator: Translator,
        done: bool,
    }
    let state = State {
        events: Box::pin(events),
        translator: Translator::new(),
        done: false,
    };
    futures::stream::unfold(state, |mut state| async move {
        while !state.done {
            let Some(event) = state.events.next().await else {
                state.done = true;
                let error = ProviderError::StreamBroken {
                    message: "the stream ended before message_stop".to_owned(),
                };
                return Some((Err(error), state));
            };
            let chunk = event.and_then(|event| state.translator.translate(&event));
            state.done = state.translator.finished || chunk.is_err();
            match chunk {
                Ok(None) => {}
                Ok(Some(chunk)) => return Some((Ok(chunk), state)),
                Err(error) => return Some((Err(error), state)),
            }
        }
        None
    })
}

/// What the events so far have said about the message.
struct Translator {
    id: String,
    model: String,
    created: u64,
    started: bool,
    finished: bool,
    usage: AnthropicUsage,
    /// Content block index → OpenAI tool call index, counting `tool_use` blocks from 0.
    tool_indices: Vec<(u64, u32)>,
}

impl Translator {
    /// A translator that has seen no event yet.
    fn new() -> Self {
        Self {
            id: String::new(),
            model: String::new(),
            created: unix_now(),
            started: false,
            finished: false,
            usage: AnthropicUsage::default(),
            tool_indices: Vec::new(),
        }
    }

    /// The chunk one event becomes, if any.
    fn translate(&mut self, event: &SseEvent) -> Result<Option<ChatChunk>, ProviderError> {
        let data = event.data.trim();
        if data.is_empty() {
            return Ok(None);
        }
        let event: StreamEvent = parse_json(data.as_bytes())?;
        let before_start = matches!(
            event,
            StreamEvent::ContentBlockStart { .. }
                | StreamEvent::ContentBlockDelta { .. }
                | StreamEvent::ContentBlockStop
                | StreamEvent::MessageDelta { .. }
                | StreamEvent::MessageStop
        ) && !self.started;
        if before_start {
            // Chunks need the message's id and model, which only message_start carries.
            return Err(ProviderError::invalid_response(
                "a message event arrived before message_start",
            ));
        }
        match event {
            StreamEvent::MessageStart { message } => self.start(message),
            StreamEvent::ContentBlockStart {
                index,
                content_block,
            } => Ok(self.start_block(index, content_block)),
            StreamEvent::ContentBlockDelta { index, delta } => Ok(self.block_delta(index, delta)),
            StreamEvent::MessageDelta { delta, usage } => {
                self.usage.update(&usage);
                Ok(delta.stop_reason.map(|reason| {
                    let reason = finish_reason(Some(&reason)).to_owned();
                    self.chunk(Delta::default(), Some(reason))
                }))
            }
            StreamEvent::MessageStop => {
                self.finished = true;
                Ok(Some(ChatChunk {
                    choices: Vec::new(),
                    usage: Some(self.usage.to_openai()),
                    ..self.chunk(Delta::default(), None)
                }))
            }
            StreamEvent::Error { error } => Err(stream_error(error)),
            StreamEvent::ContentBlockStop | StreamEvent::Ping | StreamEvent::Unknown => Ok(None),
        }
    }

    /// Records the message's id, model and prompt usage; the role chunk opens the stream.
    fn start(&mut self, message: StartMessage) -> Result<Option<ChatChunk>, ProviderError> {
        if self.started {
            return Err(ProviderError::invalid_response("a second message_start"));
        }
        self.started = true;
        self.id = message.id;
        self.model = message.model;
        self.usage = message.usage;
        let delta = Delta {
            role: Some(Role::Assistant),
            content: Some(String::new()),
            ..Delta::default()
        };
        Ok(Some(self.chunk(delta, None)))
    }

    /// A text block's initial text, or a tool call's id and name with empty arguments.
    fn start_block(&mut self, index: u64, block: StartBlock) -> Option<ChatChunk> {
        match block {
            StartBlock::Text { text } => self.text(text),
            StartBlock::ToolUse { id, name } => {
                let tool_index = u32::try_from(self.tool_indices.len()).unwrap_or(u32::MAX);
                self.tool_indices.push((index, tool_index));
                let call = ToolCallDelta {
                    index: tool_index,
                    id: Some(id),
                    kind: Some("function".to_owned()),
                    function: Some(FunctionCallDelta {
                        name: Some(name),
                        arguments: Some(String::new()),
                    }),
                };
                Some(self.tool_call_chunk(call))
            }
            StartBlock::Other => None,
        }
    }

    /// A content or arguments fragment.
    fn block_delta(&self, index: u64, delta: BlockDelta) -> Option<ChatChunk> {
        match delta {
            BlockDelta::TextDelta { text } => self.text(text),
            BlockDelta::InputJsonDelta { partial_json } if !partial_json.is_empty() => {
                // Input deltas of blocks that are not client tool calls (server tools) have no
                // tool call to extend.
                let (_, tool_index) = self
                    .tool_indices
                    .iter()
                    .find(|(block, _)| *block == index)?;
                let call = ToolCallDelta {
                    index: *tool_index,
                    id: None,
                    kind: None,
                    function: Some(FunctionCallDelta {
                        name: None,
                        arguments: Some(partial_json),
                    }),
                };
                Some(self.tool_call_chunk(call))
            }
            BlockDelta::InputJsonDelta { .. } | BlockDelta::Other => None,
        }
    }

    /// A content chunk, or nothing for empty text.
    fn text(&self, text: String) -> Option<ChatChunk> {
        (!text.is_empty()).then(|| {
            let delta = Delta {
                content: Some(text),
                ..Delta::default()
            };
            self.chunk(delta, None)
        })
    }

    /// A chunk carrying one tool call fragment.
    fn tool_call_chunk(&self, call: ToolCallDelta) -> ChatChunk {
        let delta = Delta {
            tool_calls: Some(vec![call]),
            ..Delta::default()
        };
        self.chunk(delta, None)
    }

    /// A one-choice chunk with the message's id, creation time and model.
    fn chunk(&self, delta: Delta, finish_reason: Option<String>) -> ChatChunk {
        ChatChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".to_owned(),
            created: self.created,
            model: self.model.clone(),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason,
                logprobs: None,
                extra: Extra::new(),
            }],
            usage: None,
            extra: Extra::new(),
        }
    }
}

/// An `error` event as the error ending the stream.
fn stream_error(error: ErrorBody) -> ProviderError {
    let message = match (error.message, error.kind) {
        (Some(message), Some(kind)) => format!("{message} ({kind})"),
        (Some(text), None) | (None, Some(text)) => text,
        (None, None) => "unknown error".to_owned(),
    };
    ProviderError::StreamError { message }
}

// The tests live in `stream/tests.rs`, like `convert`'s.
#[cfg(test)]
mod tests;
