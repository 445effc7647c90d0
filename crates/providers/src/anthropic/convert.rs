//! Translation between Landfall's OpenAI-shaped chat types and the Messages API wire format:
//! requests one way, whole responses the other. Pure functions, no I/O.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use landfall_types::{
    ChatMessage, ChatRequest, ChatResponse, Choice, Extra, FunctionCall, MessageContent, Role,
    Stop, Tool, ToolCall, Usage,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::ProviderError;

/// A Messages API request body, borrowing from the chat request it was translated from so that
/// large contents (base64 images) are not copied before serialization.
#[derive(Debug, Serialize)]
pub(super) struct MessagesRequest<'a> {
    model: &'a str,
    messages: Vec<Message<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<&'a Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stop_sequences: Vec<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<ToolDefinition<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Metadata<'a>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
}

/// The two roles the Messages API knows; everything else is folded into them or into `system`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Speaker {
    User,
    Assistant,
}

/// One turn of the conversation.
#[derive(Debug, Serialize)]
struct Message<'a> {
    role: Speaker,
    content: Vec<Block<'a>>,
}

/// A content block of a request turn.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block<'a> {
    Text {
        text: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<&'a Value>,
    },
    Image {
        source: ImageSource<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<&'a Value>,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: Value,
    },
    ToolResult {
        tool_use_id: &'a str,
        // `content` is optional upstream, while an empty text is rejected.
        #[serde(skip_serializing_if = "str::is_empty")]
        content: Cow<'a, str>,
    },
}

/// Where an image block's bytes come from.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ImageSource<'a> {
    Base64 { media_type: &'a str, data: &'a str },
    Url { url: &'a str },
}

/// A client tool the model may call.
#[derive(Debug, Serialize)]
struct ToolDefinition<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    input_schema: Cow<'a, Value>,
}

/// Request metadata: only the end user's id, which Anthropic uses for abuse detection.
#[derive(Debug, Serialize)]
struct Metadata<'a> {
    user_id: &'a str,
}

/// Translates a chat request into a Messages API body for `upstream_model`.
///
/// # Errors
/// [`ProviderError::Untranslatable`] when the request asks for something the Messages API cannot
/// express: several choices (`n` > 1), unknown content parts or tool choices, tool call
/// arguments that are not a JSON object, legacy `function` messages.
pub(super) fn request<'a>(
    request: &'a ChatRequest,
    upstream_model: &'a str,
    default_max_tokens: u32,
    stream: bool,
) -> Result<MessagesRequest<'a>, ProviderError> {
    if let Some(n) = request.extra.get("n").and_then(Value::as_u64)
        && n > 1
    {
        return Err(untranslatable(format!(
            "n = {n}: the Messages API returns one completion per request"
        )));
    }
    let (system, messages) = conversation(&request.messages)?;
    let system = with_format_instruction(system, request.extra.get("response_format"))?;
    let tools = request
        .tools
        .iter()
        .flatten()
        .map(tool_definition)
        .collect::<Result<Vec<_>, _>>()?;
    // A tool choice without tools means nothing, and the Messages API rejects it.
    let tool_choice = if tools.is_empty() {
        None
    } else {
        let serial = request.extra.get("parallel_tool_calls") == Some(&Value::Bool(false));
        match &request.tool_choice {
            Some(choice) => Some(tool_choice(choice, serial)?),
            None if serial => Some(json!({"type": "auto", "disable_parallel_tool_use": true})),
            None => None,
        }
    };
    let stop_sequences = match &request.stop {
        None => Vec::new(),
        Some(Stop::One(sequence)) => vec![sequence.as_str()],
        Some(Stop::Many(sequences)) => sequences.iter().map(String::as_str).collect(),
    };
    let metadata = request
        .extra
        .get("user")
        .and_then(Value::as_str)
        .map(|user_id| Metadata { user_id });
    Ok(MessagesRequest {
        model: upstream_model,
        messages,
        system: (!system.is_empty()).then_some(system),
        max_tokens: request.max_output_tokens().unwrap_or(default_max_tokens),
        temperature: request.temperature,
        top_p: request.top_p,
        // Not an OpenAI field, but clients that know they talk to Claude send it.
        top_k: request.extra.get("top_k").filter(|value| value.is_number()),
        stop_sequences,
        tools,
        tool_choice,
        metadata,
        stream,
    })
}

/// Splits the conversation into the system prompt and alternating user/assistant turns.
///
/// System and developer messages may appear anywhere; the Messages API has one top-level
/// `system`, so they are joined in order and lose their position. Consecutive messages of the
/// same speaker (a run of tool results, a tool result followed by user text) are merged
/// because the API requires strict alternation.
fn conversation(messages: &[ChatMessage]) -> Result<(String, Vec<Message<'_>>), ProviderError> {
    let mut system: Vec<Cow<'_, str>> = Vec::new();
    let mut turns: Vec<Message<'_>> = Vec::new();
    for message in messages {
        let (speaker, blocks) = match message.role {
            Role::System | Role::Developer => {
                let text = text_of(message);
                if !text.is_empty() {
                    system.push(text);
                }
                continue;
            }
            Role::User => (Speaker::User, content_blocks(message.content.as_ref())?),
            Role::Assistant => (Speaker::Assistant, assistant_blocks(message)?),
            Role::Tool => (Speaker::User, vec![tool_result(message)?]),
            Role::Function => {
                return Err(untranslatable(
                    "legacy `function` messages (send `tool` messages instead)",
                ));
            }
        };
        // The API rejects empty turns; dropping one may join its neighbours, which is fine.
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some(last) if last.role == speaker => last.content.extend(blocks),
            _ => turns.push(Message {
                role: speaker,
                content: blocks,
            }),
        }
    }
    for turn in &mut turns {
        // Tool results must open the user turn that answers the tool calls; the sort is stable.
        turn.content
            .sort_by_key(|block| !matches!(block, Block::ToolResult { .. }));
    }
    Ok((system.join("\n\n"), turns))
}

/// The text of a message, borrowed when it is a plain string.
fn text_of(message: &ChatMessage) -> Cow<'_, str> {
    match &message.content {
        Some(MessageContent::Text(text)) => Cow::Borrowed(text),
        _ => Cow::Owned(message.text_content()),
    }
}

/// The blocks of a user or assistant message's content.
fn content_blocks(content: Option<&MessageContent>) -> Result<Vec<Block<'_>>, ProviderError> {
    match content {
        None => Ok(Vec::new()),
        Some(MessageContent::Text(text)) => Ok(text_block(text, None).into_iter().collect()),
        Some(MessageContent::Parts(parts)) => parts
            .iter()
            .filter_map(|part| part_block(part).transpose())
            .collect(),
    }
}

/// A text block, or nothing for empty text, which the API rejects.
fn text_block<'a>(text: &'a str, cache_control: Option<&'a Value>) -> Option<Block<'a>> {
    (!text.is_empty()).then_some(Block::Text {
        text,
        cache_control,
    })
}

/// One OpenAI content part as a block. `cache_control` on a part (a convention of clients
/// that target Claude through OpenAI-shaped APIs) is carried over.
fn part_block(part: &Value) -> Result<Option<Block<'_>>, ProviderError> {
    let cache_control = part.get("cache_control");
    let field = |name: &str| part.get(name).and_then(Value::as_str);
    match part.get("type").and_then(Value::as_str) {
        Some("text") => {
            let text = field("text").ok_or_else(|| untranslatable("a text part without `text`"))?;
            Ok(text_block(text, cache_control))
        }
        // An assistant refusal replayed in the history is what the model said.
        Some("refusal") => Ok(field("refusal").and_then(|text| text_block(text, None))),
        Some("image_url") => image_block(part.get("image_url"), cache_control).map(Some),
        Some(other) => Err(untranslatable(format!("content parts of type `{other}`"))),
        None => Err(untranslatable("a content part without `type`")),
    }
}

/// `image_url` (an object with `url`, or a bare string) as an image block: data URLs become
/// base64 sources, http(s) URLs URL sources.
fn image_block<'a>(
    image_url: Option<&'a Value>,
    cache_control: Option<&'a Value>,
) -> Result<Block<'a>, ProviderError> {
    let url = image_url
        .and_then(|image| image.get("url").unwrap_or(image).as_str())
        .ok_or_else(|| untranslatable("an image_url part without `url`"))?;
    let source = if let Some(data_url) = url.strip_prefix("data:") {
        let (header, data) = data_url
            .split_once(',')
            .ok_or_else(|| untranslatable("an image data URL without `,`"))?;
        let media_type = header
            .strip_suffix(";base64")
            .ok_or_else(|| untranslatable("image data URLs that are not base64"))?;
        ImageSource::Base64 { media_type, data }
    } else if url.starts_with("https://") || url.starts_with("http://") {
        ImageSource::Url { url }
    } else {
        let scheme: String = url.chars().take_while(|&c| c != ':').take(16).collect();
        return Err(untranslatable(format!("image URLs of scheme `{scheme}`")));
    };
    Ok(Block::Image {
        source,
        cache_control,
    })
}

/// An assistant turn: its text, then one `tool_use` block per tool call.
fn assistant_blocks(message: &ChatMessage) -> Result<Vec<Block<'_>>, ProviderError> {
    let mut blocks = content_blocks(message.content.as_ref())?;
    for call in message.tool_calls.iter().flatten() {
        blocks.push(Block::ToolUse {
            id: &call.id,
            name: &call.function.name,
            input: tool_input(call)?,
        });
    }
    Ok(blocks)
}

/// Tool call arguments as the JSON object `tool_use.input` must be. Empty arguments, which some
/// clients send for functions without parameters, mean `{}`.
fn tool_input(call: &ToolCall) -> Result<Value, ProviderError> {
    let arguments = call.function.arguments.trim();
    if arguments.is_empty() {
        return Ok(json!({}));
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(input @ Value::Object(_)) => Ok(input),
        Ok(_) => Err(untranslatable(format!(
            "arguments of tool call `{}` are not a JSON object",
            call.id
        ))),
        Err(error) => Err(untranslatable(format!(
            "arguments of tool call `{}` are not valid JSON: {error}",
            call.id
        ))),
    }
}

/// A `tool` message as the `tool_result` block answering its call.
fn tool_result(message: &ChatMessage) -> Result<Block<'_>, ProviderError> {
    let tool_use_id = message
        .tool_call_id
        .as_deref()
        .ok_or_else(|| untranslatable("a tool message without `tool_call_id`"))?;
    Ok(Block::ToolResult {
        tool_use_id,
        content: text_of(message),
    })
}

/// An OpenAI function tool as an Anthropic tool; tools without parameters get an empty
/// object schema, since `input_schema` is required.
fn tool_definition(tool: &Tool) -> Result<ToolDefinition<'_>, ProviderError> {
    if tool.kind != "function" {
        return Err(untranslatable(format!("tools of type `{}`", tool.kind)));
    }
    let function = &tool.function;
    Ok(ToolDefinition {
        name: &function.name,
        description: function.description.as_deref(),
        input_schema: function.parameters.as_ref().map_or_else(
            || Cow::Owned(json!({"type": "object", "properties": {}})),
            Cow::Borrowed,
        ),
    })
}

/// OpenAI's `tool_choice` as Anthropic's; `serial` is `parallel_tool_calls: false`.
fn tool_choice(choice: &Value, serial: bool) -> Result<Value, ProviderError> {
    let mut mapped = match choice {
        Value::String(mode) => match mode.as_str() {
            "auto" => json!({"type": "auto"}),
            "required" => json!({"type": "any"}),
            // No tool will be called, so parallelism is moot (and not accepted with `none`).
            "none" => return Ok(json!({"type": "none"})),
            other => return Err(untranslatable(format!("tool_choice `{other}`"))),
        },
        Value::Object(object) => {
            let name = object
                .get("function")
                .and_then(|function| function.get("name"))
                .and_then(Value::as_str);
            match (object.get("type").and_then(Value::as_str), name) {
                (Some("function"), Some(name)) => json!({"type": "tool", "name": name}),
                _ => return Err(untranslatable(format!("tool_choice {choice}"))),
            }
        }
        _ => return Err(untranslatable(format!("tool_choice {choice}"))),
    };
    if serial && let Some(object) = mapped.as_object_mut() {
        object.insert("disable_parallel_tool_use".to_owned(), Value::Bool(true));
    }
    Ok(mapped)
}

/// Appends to the system prompt what `response_format` asks for.
///
/// The Messages API has no JSON mode available on every model and API version, but dropping
/// the field would hand a client that asked for JSON free text it cannot parse. So JSON modes
/// become an instruction in the system prompt, with the schema when there is one. The model
/// follows it reliably but without a guarantee; clients that need strict validity must still
/// validate.
fn with_format_instruction(
    mut system: String,
    response_format: Option<&Value>,
) -> Result<String, ProviderError> {
    let Some(format) = response_format.filter(|format| !format.is_null()) else {
        return Ok(system);
    };
    let instruction = match format.get("type").and_then(Value::as_str) {
        Some("text") => return Ok(system),
        Some("json_object") => {
            "Respond with a single JSON object only, with no text before or after it.".to_owned()
        }
        Some("json_schema") => {
            let schema = format
                .get("json_schema")
                .and_then(|json_schema| json_schema.get("schema"))
                .ok_or_else(|| untranslatable("a json_schema response_format without `schema`"))?;
            format!(
                "Respond with a single JSON object only, with no text before or after it. \
                 It must conform to this JSON schema:\n{schema}"
            )
        }
        _ => return Err(untranslatable(format!("response_format {format}"))),
    };
    if !system.is_empty() {
        system.push_str("\n\n");
    }
    system.push_str(&instruction);
    Ok(system)
}

/// The error for a request the Messages API cannot express; `message` names what.
fn untranslatable(message: impl Into<String>) -> ProviderError {
    ProviderError::Untranslatable {
        message: message.into(),
    }
}

/// A whole Messages API response. Only what the translation reads is named; a body without
/// these fields is not a message.
#[derive(Debug, Deserialize)]
pub(super) struct MessagesResponse {
    id: String,
    model: String,
    content: Vec<ResponseBlock>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: AnthropicUsage,
}

/// A content block of a response.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ResponseBlock {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    /// Thinking, server tool and other blocks OpenAI's schema has no place for.
    #[serde(other)]
    Other,
}

/// Token counts as the Messages API reports them, in a response, a `message_start` or a
/// `message_delta` (where only the counts that changed are present).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub(super) struct AnthropicUsage {
    pub(super) input_tokens: Option<u64>,
    pub(super) output_tokens: Option<u64>,
    pub(super) cache_creation_input_tokens: Option<u64>,
    pub(super) cache_read_input_tokens: Option<u64>,
}

impl AnthropicUsage {
    /// Takes the counts `newer` has, keeping the others.
    pub(super) fn update(&mut self, newer: &Self) {
        let fields = [
            (&mut self.input_tokens, newer.input_tokens),
            (&mut self.output_tokens, newer.output_tokens),
            (
                &mut self.cache_creation_input_tokens,
                newer.cache_creation_input_tokens,
            ),
            (
                &mut self.cache_read_input_tokens,
                newer.cache_read_input_tokens,
            ),
        ];
        for (field, newer) in fields {
            if newer.is_some() {
                *field = newer;
            }
        }
    }

    /// OpenAI's usage. Anthropic counts cached prompt tokens apart from `input_tokens`, OpenAI
    /// within `prompt_tokens`, so the three are added up; cache hits go in `cached_tokens`.
    pub(super) fn to_openai(&self) -> Usage {
        let prompt_tokens = self
            .input_tokens
            .unwrap_or(0)
            .saturating_add(self.cache_creation_input_tokens.unwrap_or(0))
            .saturating_add(self.cache_read_input_tokens.unwrap_or(0));
        let completion_tokens = self.output_tokens.unwrap_or(0);
        let mut extra = Extra::new();
        if let Some(cached_tokens) = self.cache_read_input_tokens {
            extra.insert(
                "prompt_tokens_details".to_owned(),
                json!({"cached_tokens": cached_tokens}),
            );
        }
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
            extra,
        }
    }
}

/// OpenAI's `finish_reason` for an Anthropic `stop_reason`.
pub(super) fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        // end_turn, stop_sequence, pause_turn and reasons added later.
        _ => "stop",
    }
}

/// Seconds since the Unix epoch, for `created`.
pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// Translates a whole Messages API response into a one-choice chat completion.
pub(super) fn response(message: MessagesResponse) -> ChatResponse {
    let mut text: Option<String> = None;
    let mut tool_calls = Vec::new();
    for block in message.content {
        match block {
            ResponseBlock::Text { text: part } => text.get_or_insert_default().push_str(&part),
            ResponseBlock::ToolUse { id, name, input } => tool_calls.push(ToolCall {
                id,
                kind: "function".to_owned(),
                function: FunctionCall {
                    name,
                    arguments: input.to_string(),
                },
            }),
            ResponseBlock::Other => {}
        }
    }
    let reply = ChatMessage {
        role: Role::Assistant,
        content: text.map(MessageContent::Text),
        name: None,
        tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
        tool_call_id: None,
        extra: Extra::new(),
    };
    ChatResponse {
        id: message.id,
        object: "chat.completion".to_owned(),
        created: unix_now(),
        model: message.model,
        choices: vec![Choice {
            index: 0,
            message: reply,
            finish_reason: Some(finish_reason(message.stop_reason.as_deref()).to_owned()),
            logprobs: None,
            extra: Extra::new(),
        }],
        usage: Some(message.usage.to_openai()),
        extra: Extra::new(),
    }
}

// The tests live in `convert/tests.rs`: with them this file would pass the size limit.
#[cfg(test)]
mod tests;
