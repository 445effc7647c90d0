//! The `/v1/responses` request as OpenAI defines it, and its input items as chat messages.

use landfall_types::{
    ChatMessage, Extra, FunctionCall, FunctionDefinition, MessageContent, Role, Tool, ToolCall,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::ApiError;

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateResponse {
    #[serde(default)]
    pub(crate) model: Option<String>,
    #[serde(default)]
    pub(crate) input: Option<Input>,
    #[serde(default)]
    pub(crate) instructions: Option<String>,
    #[serde(default)]
    pub(crate) tools: Vec<Value>,
    #[serde(default)]
    pub(crate) tool_choice: Option<Value>,
    #[serde(default)]
    pub(crate) max_tool_calls: Option<u32>,
    #[serde(default)]
    pub(crate) parallel_tool_calls: Option<bool>,
    #[serde(default)]
    pub(crate) previous_response_id: Option<String>,
    #[serde(default)]
    pub(crate) store: Option<bool>,
    #[serde(default)]
    pub(crate) stream: Option<bool>,
    #[serde(default)]
    pub(crate) stream_options: Option<Value>,
    #[serde(default)]
    pub(crate) temperature: Option<f64>,
    #[serde(default)]
    pub(crate) top_p: Option<f64>,
    #[serde(default)]
    pub(crate) max_output_tokens: Option<u32>,
    #[serde(default)]
    pub(crate) metadata: Option<Map<String, Value>>,
    #[serde(default)]
    pub(crate) text: Option<Value>,
    #[serde(default)]
    pub(crate) user: Option<String>,
    #[serde(default)]
    pub(crate) safety_identifier: Option<String>,
    #[serde(default)]
    pub(crate) prompt_cache_key: Option<String>,
    #[serde(default)]
    pub(crate) include: Vec<String>,
    #[serde(default)]
    pub(crate) truncation: Option<String>,
    #[serde(default)]
    pub(crate) reasoning: Option<Value>,
    #[serde(default)]
    pub(crate) service_tier: Option<String>,
    #[serde(default)]
    pub(crate) background: Option<bool>,
    #[serde(default)]
    pub(crate) prompt: Option<Value>,
    #[serde(default)]
    pub(crate) conversation: Option<Value>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub(crate) enum Input {
    Text(String),
    Items(Vec<Value>),
}

fn invalid(param: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::InvalidValue {
        message: message.into(),
        param,
    }
}

/// The input as chat messages: a string is one user message; items map to messages, an
/// assistant's function calls to its `tool_calls`, their outputs to `tool` messages.
///
/// # Errors
/// `InvalidValue` naming the item that cannot be used.
pub(crate) fn input_messages(input: Option<Input>) -> Result<Vec<ChatMessage>, ApiError> {
    let items = match input {
        None => return Ok(Vec::new()),
        Some(Input::Text(text)) => return Ok(vec![ChatMessage::text(Role::User, text)]),
        Some(Input::Items(items)) => items,
    };
    let mut messages = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        push_item(&mut messages, &item)
            .map_err(|message| invalid("input", format!("input[{index}]: {message}")))?;
    }
    Ok(messages)
}

/// Chat messages as input items, the inverse of [`input_messages`]: what a conversation keeps
/// of a request's input (after guardrails masked it).
pub(crate) fn message_items(messages: &[ChatMessage]) -> Vec<Value> {
    let mut items = Vec::with_capacity(messages.len());
    for message in messages {
        match message.role {
            Role::Tool => items.push(json!({
                "type": "function_call_output",
                "call_id": message.tool_call_id.as_deref().unwrap_or_default(),
                "output": message.text_content(),
            })),
            role => {
                let text = message.text_content();
                let (role, part) = match role {
                    Role::Assistant => ("assistant", "output_text"),
                    Role::System | Role::Developer => ("system", "input_text"),
                    _ => ("user", "input_text"),
                };
                if !text.is_empty() || message.tool_calls.is_none() {
                    items.push(json!({
                        "type": "message",
                        "role": role,
                        "content": [{"type": part, "text": text}],
                    }));
                }
                for call in message.tool_calls.iter().flatten() {
                    items.push(json!({
                        "type": "function_call",
                        "call_id": call.id,
                        "name": call.function.name,
                        "arguments": call.function.arguments,
                    }));
                }
            }
        }
    }
    items
}

fn text_field<'a>(item: &'a Value, field: &str) -> Result<&'a str, String> {
    item.get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("`{field}` must be a string"))
}

/// Adds the chat message(s) of one input item to `messages`.
pub(crate) fn push_item(messages: &mut Vec<ChatMessage>, item: &Value) -> Result<(), String> {
    let kind = match item.get("type").and_then(Value::as_str) {
        Some(kind) => kind,
        None if item.get("role").is_some() => "message",
        None => return Err("an item needs a `type`".to_owned()),
    };
    match kind {
        "message" => {
            let role = match text_field(item, "role")? {
                "user" => Role::User,
                "assistant" => Role::Assistant,
                "system" | "developer" => Role::System,
                other => return Err(format!("unknown role `{other}`")),
            };
            let content = message_content(item.get("content"))?;
            messages.push(ChatMessage {
                content: Some(content),
                ..ChatMessage::text(role, "")
            });
        }
        "function_call" => {
            let call = ToolCall {
                id: text_field(item, "call_id")?.to_owned(),
                kind: "function".to_owned(),
                function: FunctionCall {
                    name: text_field(item, "name")?.to_owned(),
                    arguments: item
                        .get("arguments")
                        .and_then(Value::as_str)
                        .unwrap_or("{}")
                        .to_owned(),
                },
            };
            push_call(messages, call);
        }
        "function_call_output" => {
            let output = match item.get("output") {
                Some(Value::String(text)) => text.clone(),
                Some(Value::Array(parts)) => parts
                    .iter()
                    .filter_map(|part| part.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join(""),
                _ => return Err("`output` must be a string or an array of text parts".to_owned()),
            };
            messages.push(ChatMessage {
                tool_call_id: Some(text_field(item, "call_id")?.to_owned()),
                ..ChatMessage::text(Role::Tool, output)
            });
        }
        // A server tool call replayed from an earlier response: the call and what it returned.
        "mcp_call" => {
            let id = text_field(item, "id")?.to_owned();
            push_call(
                messages,
                ToolCall {
                    id: id.clone(),
                    kind: "function".to_owned(),
                    function: FunctionCall {
                        name: text_field(item, "name")?.to_owned(),
                        arguments: item
                            .get("arguments")
                            .and_then(Value::as_str)
                            .unwrap_or("{}")
                            .to_owned(),
                    },
                },
            );
            let output = match (item.get("output"), item.get("error")) {
                (Some(Value::String(output)), _) => output.clone(),
                (_, Some(Value::String(error))) => format!("error: {error}"),
                _ => String::new(),
            };
            messages.push(ChatMessage {
                tool_call_id: Some(id),
                ..ChatMessage::text(Role::Tool, output)
            });
        }
        // What the model thought and searched is not sent back to it, nor the approval
        // exchange: an approved call comes back as the `mcp_call` it became.
        "reasoning"
        | "file_search_call"
        | "mcp_list_tools"
        | "mcp_approval_request"
        | "mcp_approval_response" => {}
        "item_reference" => {
            return Err(
                "`item_reference` is not supported; continue with `previous_response_id`, or \
                 send the items themselves"
                    .to_owned(),
            );
        }
        other => return Err(format!("input items of type `{other}` are not supported")),
    }
    Ok(())
}

/// Adds a call to the assistant message just before it (one turn's text and calls are one
/// message), or starts an assistant message.
fn push_call(messages: &mut Vec<ChatMessage>, call: ToolCall) {
    if let Some(last) = messages.last_mut()
        && last.role == Role::Assistant
    {
        last.tool_calls.get_or_insert_with(Vec::new).push(call);
        return;
    }
    messages.push(ChatMessage {
        content: None,
        tool_calls: Some(vec![call]),
        ..ChatMessage::text(Role::Assistant, "")
    });
}

/// A message's content: a string, or parts (`input_text`, `output_text`, `input_image`).
fn message_content(content: Option<&Value>) -> Result<MessageContent, String> {
    let parts = match content {
        Some(Value::String(text)) => return Ok(MessageContent::Text(text.clone())),
        Some(Value::Array(parts)) => parts,
        _ => return Err("`content` must be a string or an array of parts".to_owned()),
    };
    let mut converted = Vec::with_capacity(parts.len());
    for part in parts {
        let kind = part.get("type").and_then(Value::as_str).unwrap_or_default();
        match kind {
            "input_text" | "output_text" | "text" | "refusal" => {
                let text = part
                    .get("text")
                    .or_else(|| part.get("refusal"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("a `{kind}` part needs its text"))?;
                converted.push(json!({"type": "text", "text": text}));
            }
            "input_image" => {
                let url = part
                    .get("image_url")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        "`input_image` needs an `image_url` (images by `file_id` are not supported)"
                            .to_owned()
                    })?;
                let detail = part.get("detail").cloned().unwrap_or(json!("auto"));
                converted.push(
                    json!({"type": "image_url", "image_url": {"url": url, "detail": detail}}),
                );
            }
            "input_file" => {
                return Err(
                    "`input_file` is not supported; add the file to a vector store and use the \
                     `file_search` tool"
                        .to_owned(),
                );
            }
            other => return Err(format!("content parts of type `{other}` are not supported")),
        }
    }
    let all_text = converted
        .iter()
        .all(|part| part.get("type").and_then(Value::as_str) == Some("text"));
    if all_text {
        let text: Vec<&str> = converted
            .iter()
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .collect();
        return Ok(MessageContent::Text(text.join("")));
    }
    Ok(MessageContent::Parts(converted))
}

/// A function tool of the request as a chat tool: the client runs it.
///
/// # Errors
/// When the definition has no name.
pub(crate) fn function_tool(tool: &Value) -> Result<Tool, ApiError> {
    let name = tool
        .get("name")
        .and_then(Value::as_str)
        .filter(|name| {
            !name.is_empty()
                && name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
        .ok_or_else(|| {
            invalid(
                "tools",
                "a function tool needs a `name` of 1 to 64 letters, digits, `_` or `-`",
            )
        })?;
    Ok(Tool {
        kind: "function".to_owned(),
        function: FunctionDefinition {
            name: name.to_owned(),
            description: tool
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_owned),
            parameters: tool.get("parameters").cloned().filter(|p| !p.is_null()),
            strict: tool.get("strict").and_then(Value::as_bool),
            extra: Extra::new(),
        },
        extra: Extra::new(),
    })
}

/// `tool_choice` in chat terms: `auto`, `none` and `required` as they are; a named function,
/// `file_search` or MCP tool as a forced function call.
///
/// # Errors
/// For a choice of another shape.
pub(crate) fn tool_choice(choice: &Value) -> Result<Value, ApiError> {
    match choice {
        Value::String(mode) if matches!(mode.as_str(), "auto" | "none" | "required") => {
            Ok(choice.clone())
        }
        Value::Object(object) => {
            let name = match object.get("type").and_then(Value::as_str) {
                Some("function" | "mcp") => object.get("name").and_then(Value::as_str),
                Some("file_search") => Some("file_search"),
                _ => None,
            };
            match name {
                Some(name) => Ok(json!({"type": "function", "function": {"name": name}})),
                None => Err(invalid(
                    "tool_choice",
                    "tool_choice must be `auto`, `none`, `required`, or name a function, MCP or \
                     file_search tool",
                )),
            }
        }
        _ => Err(invalid(
            "tool_choice",
            "tool_choice must be `auto`, `none` or `required`, or an object",
        )),
    }
}

/// `text.format` as a chat `response_format`.
///
/// # Errors
/// For a format other than `text`, `json_object` and `json_schema`.
pub(crate) fn response_format(text: &Value) -> Result<Option<Value>, ApiError> {
    let Some(format) = text.get("format") else {
        return Ok(None);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let mut schema = format.clone();
            if let Some(object) = schema.as_object_mut() {
                object.remove("type");
            }
            Ok(Some(json!({"type": "json_schema", "json_schema": schema})))
        }
        _ => Err(invalid(
            "text.format",
            "text.format.type must be `text`, `json_object` or `json_schema`",
        )),
    }
}

/// Which calls to a request's MCP server the client approves (`require_approval`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientApproval {
    /// Tools whose calls need no approval.
    never: Vec<String>,
    /// When given alone, only these tools need approval.
    only: Option<Vec<String>>,
}

impl ClientApproval {
    /// OpenAI's default: every call is approved by the client.
    const ALWAYS: Self = Self {
        never: Vec::new(),
        only: None,
    };

    pub(crate) fn needed(&self, tool: &str) -> bool {
        let named = |names: &[String]| names.iter().any(|name| name == tool);
        !named(&self.never) && self.only.as_deref().is_none_or(named)
    }

    /// `"always"` (the default), `"never"`, or `{"always": {"tool_names": […]}, "never":
    /// {"tool_names": […]}}` with either or both.
    fn parse(value: Option<&Value>) -> Result<Self, ApiError> {
        let names = |filter: Option<&Value>| -> Result<Option<Vec<String>>, ApiError> {
            let Some(filter) = filter else {
                return Ok(None);
            };
            filter
                .get("tool_names")
                .and_then(Value::as_array)
                .and_then(|names| {
                    names
                        .iter()
                        .map(|name| name.as_str().map(str::to_owned))
                        .collect::<Option<Vec<_>>>()
                })
                .map(Some)
                .ok_or_else(|| {
                    invalid(
                        "tools",
                        "a `require_approval` filter is {\"tool_names\": [names]}",
                    )
                })
        };
        match value {
            None | Some(Value::Null) => Ok(Self::ALWAYS),
            Some(Value::String(mode)) if mode == "always" => Ok(Self::ALWAYS),
            Some(Value::String(mode)) if mode == "never" => Ok(Self {
                never: Vec::new(),
                only: Some(Vec::new()),
            }),
            Some(Value::Object(filters))
                if filters.keys().all(|key| key == "always" || key == "never") =>
            {
                let always = names(filters.get("always"))?;
                let never = names(filters.get("never"))?;
                Ok(Self {
                    only: always.filter(|_| never.is_none()),
                    never: never.unwrap_or_default(),
                })
            }
            Some(_) => Err(invalid(
                "tools",
                "`require_approval` is \"always\", \"never\", or {\"always\": {\"tool_names\": \
                 […]}, \"never\": {\"tool_names\": […]}}",
            )),
        }
    }
}

/// A client's answer to an `mcp_approval_request` (an `mcp_approval_response` input item).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApprovalAnswer {
    pub(crate) request_id: String,
    pub(crate) approve: bool,
    pub(crate) reason: Option<String>,
}

/// Takes the `mcp_approval_response` items out of the input: they answer calls of an earlier
/// response rather than adding to the conversation.
///
/// # Errors
/// An answer without `approval_request_id` or a boolean `approve`.
pub(crate) fn take_approval_answers(
    input: Option<Input>,
) -> Result<(Option<Input>, Vec<ApprovalAnswer>), ApiError> {
    let Some(Input::Items(items)) = input else {
        return Ok((input, Vec::new()));
    };
    let mut answers = Vec::new();
    let mut rest = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        if item.get("type").and_then(Value::as_str) != Some("mcp_approval_response") {
            rest.push(item);
            continue;
        }
        let request_id = item.get("approval_request_id").and_then(Value::as_str);
        let approve = item.get("approve").and_then(Value::as_bool);
        let (Some(request_id), Some(approve)) = (request_id, approve) else {
            return Err(invalid(
                "input",
                format!(
                    "input[{index}]: an mcp_approval_response needs `approval_request_id` and a \
                     boolean `approve`"
                ),
            ));
        };
        answers.push(ApprovalAnswer {
            request_id: request_id.to_owned(),
            approve,
            reason: item
                .get("reason")
                .and_then(Value::as_str)
                .map(str::to_owned),
        });
    }
    Ok((Some(Input::Items(rest)), answers))
}

/// The MCP server a request's `{"type": "mcp", "server_label", "server_url", "allowed_tools",
/// "headers", "require_approval"}` tool names, and which of its calls the client approves.
///
/// # Errors
/// A missing label or URL, a URL the SSRF rule refuses, or an unusable `require_approval`.
pub(crate) fn mcp_server(
    tool: &Value,
    allow_private: &[String],
) -> Result<
    (
        std::sync::Arc<landfall_tools::mcp::McpServer>,
        ClientApproval,
    ),
    ApiError,
> {
    let text = |key: &str| tool.get(key).and_then(Value::as_str);
    let label = text("server_label")
        .filter(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
        .ok_or_else(|| {
            invalid(
                "tools",
                "an mcp tool needs a `server_label` of letters, digits, `_` or `-`",
            )
        })?;
    let url =
        text("server_url").ok_or_else(|| invalid("tools", "an mcp tool needs a `server_url`"))?;
    let approval = ClientApproval::parse(tool.get("require_approval"))?;
    let allowed_tools = match tool.get("allowed_tools") {
        None | Some(Value::Null) => None,
        Some(Value::Array(names)) => Some(names),
        Some(Value::Object(filter)) => filter.get("tool_names").and_then(Value::as_array),
        Some(_) => {
            return Err(invalid(
                "tools",
                "`allowed_tools` is a list of tool names or {\"tool_names\": […]}",
            ));
        }
    }
    .map(|names| {
        names
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect::<Vec<_>>()
    });
    let headers = match tool.get("headers") {
        None | Some(Value::Null) => std::collections::BTreeMap::new(),
        Some(Value::Object(headers)) => headers
            .iter()
            .map(|(name, value)| {
                value
                    .as_str()
                    .map(|value| (name.clone(), value.to_owned()))
                    .ok_or_else(|| invalid("tools", format!("header `{name}` must be a string")))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid("tools", "`headers` must be an object of strings")),
    };
    let server = landfall_tools::mcp::McpServer::for_request(
        label,
        url,
        &headers,
        allowed_tools,
        allow_private,
    )
    .map_err(|message| invalid("tools", format!("MCP server `{label}`: {message}")))?;
    Ok((server, approval))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn items(value: Value) -> Result<Vec<ChatMessage>, ApiError> {
        input_messages(Some(serde_json::from_value(value).unwrap()))
    }

    #[test]
    fn items_become_chat_messages() {
        let messages = items(json!([
            {"role": "developer", "content": "be brief"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "let me look", "annotations": []}]},
            {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": "{\"sku\":\"A\"}"},
            {"type": "function_call", "call_id": "c2", "name": "lookup", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "in stock"},
            {"type": "reasoning", "id": "rs_1", "summary": []},
        ]))
        .unwrap();
        assert_eq!(messages.len(), 4);
        assert_eq!(messages[0].role, Role::System);
        assert_eq!(messages[1].text_content(), "hi");
        assert_eq!(messages[2].text_content(), "let me look");
        let calls = messages[2].tool_calls.as_ref().unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[1].id, "c2");
        assert_eq!(messages[3].role, Role::Tool);
        assert_eq!(messages[3].tool_call_id.as_deref(), Some("c1"));
    }

    #[test]
    fn unusable_items_name_their_position() {
        let cases = [
            (
                json!([{"type": "item_reference", "id": "msg_1"}]),
                "input[0]: `item_reference`",
            ),
            (json!(["x", {"role": "tool", "content": "x"}]), "input[0]"),
            (
                json!([{"role": "user", "content": "a"}, {"role": "robot", "content": "x"}]),
                "input[1]: unknown role",
            ),
            (json!([{"type": "function_call", "name": "f"}]), "`call_id`"),
            (
                json!([{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]),
                "file_search",
            ),
        ];
        for (value, expected) in cases {
            let error = match serde_json::from_value::<Input>(value.clone()) {
                Ok(input) => input_messages(Some(input)).unwrap_err(),
                Err(_) => continue,
            };
            let ApiError::InvalidValue { message, .. } = error else {
                panic!("{value}: {error:?}")
            };
            assert!(message.contains(expected), "{value}: {message}");
        }
    }

    #[test]
    fn tool_choices_map_to_chat() {
        assert_eq!(tool_choice(&json!("required")).unwrap(), json!("required"));
        assert_eq!(
            tool_choice(&json!({"type": "file_search"})).unwrap(),
            json!({"type": "function", "function": {"name": "file_search"}})
        );
        assert!(tool_choice(&json!("sometimes")).is_err());
        assert!(tool_choice(&json!({"type": "web_search"})).is_err());
    }

    #[test]
    fn require_approval_says_which_calls_the_client_approves() {
        let needed =
            |value: Value, tool: &str| ClientApproval::parse(Some(&value)).unwrap().needed(tool);
        assert!(ClientApproval::parse(None).unwrap().needed("any"));
        assert!(needed(json!("always"), "any"));
        assert!(!needed(json!("never"), "any"));
        let except = json!({"never": {"tool_names": ["read"]}});
        assert!(!needed(except.clone(), "read") && needed(except, "write"));
        let only = json!({"always": {"tool_names": ["write"]}});
        assert!(needed(only.clone(), "write") && !needed(only, "read"));
        let both = json!({"always": {"tool_names": ["write"]}, "never": {"tool_names": ["read"]}});
        assert!(
            needed(both.clone(), "write") && !needed(both.clone(), "read") && needed(both, "other")
        );
        for bad in [
            json!("sometimes"),
            json!({"never": ["read"]}),
            json!({"maybe": {}}),
            json!(3),
        ] {
            assert!(ClientApproval::parse(Some(&bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn approval_answers_leave_the_input() {
        let input: Input = serde_json::from_value(json!([
            {"type": "mcp_approval_response", "approval_request_id": "mcpr_1", "approve": true},
            {"role": "user", "content": "and then?"},
            {"type": "mcp_approval_response", "approval_request_id": "mcpr_2", "approve": false,
             "reason": "no"},
        ]))
        .unwrap();
        let (rest, answers) = take_approval_answers(Some(input)).unwrap();
        assert_eq!(input_messages(rest).unwrap().len(), 1);
        assert_eq!(
            answers,
            [
                ApprovalAnswer {
                    request_id: "mcpr_1".to_owned(),
                    approve: true,
                    reason: None
                },
                ApprovalAnswer {
                    request_id: "mcpr_2".to_owned(),
                    approve: false,
                    reason: Some("no".to_owned())
                },
            ]
        );
        let bad: Input =
            serde_json::from_value(json!([{"type": "mcp_approval_response", "approve": "yes"}]))
                .unwrap();
        assert!(take_approval_answers(Some(bad)).is_err());
    }
}
