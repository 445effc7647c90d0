//! Chat requests to generations, and generations back to chat responses and chunks.

use std::sync::atomic::{AtomicU64, Ordering};

use landfall_config::LocalModelConfig;
use landfall_models::{
    FinishReason, GenerationEvent, GenerationParams, LocalChatModel, SamplingParams,
    TemplateMessage,
};
use landfall_types::{
    ChatChunk, ChatMessage, ChatRequest, ChatResponse, Choice, ChunkChoice, Delta, ErrorClass,
    Extra, MessageContent, Role, Usage,
};
use serde_json::Value;

use super::now_seconds;
use crate::ProviderError;

fn invalid(message: String) -> ProviderError {
    ProviderError::Local {
        class: ErrorClass::InvalidRequest,
        message,
    }
}

fn untranslatable(message: &str) -> ProviderError {
    ProviderError::Untranslatable {
        message: message.to_owned(),
    }
}

/// The prompt tokens and generation settings for `request`.
pub(super) fn generation(
    request: &ChatRequest,
    model: &LocalChatModel,
    config: &LocalModelConfig,
) -> Result<(Vec<u32>, GenerationParams), ProviderError> {
    refuse_unsupported(request)?;
    let messages = request
        .messages
        .iter()
        .map(template_message)
        .collect::<Result<Vec<_>, _>>()?;
    let prompt = model
        .prompt(&messages)
        .map_err(|error| invalid(error.to_string()))?;
    let max_tokens = request
        .max_output_tokens()
        .unwrap_or(config.default_max_tokens);
    if max_tokens == 0 {
        return Err(invalid("max_tokens must be at least 1".to_owned()));
    }
    let params = GenerationParams {
        max_tokens: usize::try_from(max_tokens).unwrap_or(usize::MAX),
        sampling: sampling(request)?,
        stop: request
            .stop
            .as_ref()
            .map(landfall_types::Stop::sequences)
            .unwrap_or_default(),
    };
    Ok((prompt, params))
}

/// What a local model cannot do is refused as untranslatable, so the gateway tries the next
/// target (and the client learns why when there is none).
fn refuse_unsupported(request: &ChatRequest) -> Result<(), ProviderError> {
    let wants_tools = request
        .tools
        .as_ref()
        .is_some_and(|tools| !tools.is_empty())
        && request.tool_choice.as_ref().and_then(Value::as_str) != Some("none");
    if wants_tools {
        return Err(untranslatable("local models do not call tools"));
    }
    if request
        .extra
        .get("n")
        .and_then(Value::as_u64)
        .is_some_and(|n| n > 1)
    {
        return Err(untranslatable("local models generate one choice (n = 1)"));
    }
    if request.extra.get("logprobs").and_then(Value::as_bool) == Some(true) {
        return Err(untranslatable("local models do not return logprobs"));
    }
    let format = request
        .extra
        .get("response_format")
        .and_then(|format| format.get("type"))
        .and_then(Value::as_str);
    if matches!(format, Some("json_object" | "json_schema")) {
        return Err(untranslatable(
            "local models do not constrain output to JSON",
        ));
    }
    Ok(())
}

fn template_message(message: &ChatMessage) -> Result<TemplateMessage, ProviderError> {
    if message
        .tool_calls
        .as_ref()
        .is_some_and(|calls| !calls.is_empty())
    {
        return Err(untranslatable("local models do not call tools"));
    }
    if let Some(MessageContent::Parts(parts)) = &message.content
        && parts
            .iter()
            .any(|part| part.get("type").and_then(Value::as_str) != Some("text"))
    {
        return Err(untranslatable("local models read text only"));
    }
    let role = match message.role {
        Role::System | Role::Developer => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool | Role::Function => "tool",
    };
    Ok(TemplateMessage {
        role: role.to_owned(),
        content: message.text_content(),
    })
}

/// A number in the request's extra fields, checked against a range.
fn extra_number(
    extra: &Extra,
    key: &str,
    range: std::ops::RangeInclusive<f64>,
) -> Result<Option<f64>, ProviderError> {
    let Some(value) = extra.get(key).filter(|value| !value.is_null()) else {
        return Ok(None);
    };
    match value.as_f64() {
        Some(number) if range.contains(&number) => Ok(Some(number)),
        _ => Err(invalid(format!(
            "{key} must be a number from {} to {}",
            range.start(),
            range.end()
        ))),
    }
}

fn sampling(request: &ChatRequest) -> Result<SamplingParams, ProviderError> {
    let temperature = request.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(invalid("temperature must be from 0 to 2".to_owned()));
    }
    let top_p = request.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(invalid(
            "top_p must be greater than 0 and at most 1".to_owned(),
        ));
    }
    let extra = &request.extra;
    let top_k = match extra.get("top_k").filter(|value| !value.is_null()) {
        None => 0,
        Some(value) => value
            .as_u64()
            .and_then(|k| usize::try_from(k).ok())
            .ok_or_else(|| invalid("top_k must be a whole number, 0 or more".to_owned()))?,
    };
    let seed = match extra.get("seed").filter(|value| !value.is_null()) {
        None => random_seed(),
        Some(value) => value
            .as_i64()
            .map(i64::cast_unsigned)
            .or_else(|| value.as_u64())
            .ok_or_else(|| invalid("seed must be an integer".to_owned()))?,
    };
    #[expect(
        clippy::cast_possible_truncation,
        reason = "penalties are small numbers"
    )]
    let penalty = |key: &str, range| -> Result<Option<f32>, ProviderError> {
        Ok(extra_number(extra, key, range)?.map(|number| number as f32))
    };
    Ok(SamplingParams {
        temperature,
        top_p,
        top_k,
        repetition_penalty: penalty("repetition_penalty", 0.01..=10.0)?.unwrap_or(1.0),
        frequency_penalty: penalty("frequency_penalty", -2.0..=2.0)?.unwrap_or(0.0),
        presence_penalty: penalty("presence_penalty", -2.0..=2.0)?.unwrap_or(0.0),
        seed,
        ..SamplingParams::default()
    })
}

/// A seed for requests that give none: different for every request.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(NEXT_ID.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn completion_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    format!(
        "chatcmpl-local-{nanos:x}{:04x}",
        NEXT_ID.fetch_add(1, Ordering::Relaxed) & 0xffff
    )
}

fn finish_reason(reason: FinishReason) -> String {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
    .to_owned()
}

fn usage(prompt_tokens: usize, completion_tokens: usize) -> Usage {
    let prompt_tokens = prompt_tokens as u64;
    let completion_tokens = completion_tokens as u64;
    Usage {
        prompt_tokens,
        completion_tokens,
        total_tokens: prompt_tokens + completion_tokens,
        extra: Extra::new(),
    }
}

pub(super) fn response(
    upstream_model: &str,
    text: String,
    reason: FinishReason,
    prompt_tokens: usize,
    completion_tokens: usize,
) -> ChatResponse {
    ChatResponse {
        id: completion_id(),
        object: "chat.completion".to_owned(),
        created: now_seconds(),
        model: upstream_model.to_owned(),
        choices: vec![Choice {
            index: 0,
            message: ChatMessage::text(Role::Assistant, text),
            finish_reason: Some(finish_reason(reason)),
            logprobs: None,
            extra: Extra::new(),
        }],
        usage: Some(usage(prompt_tokens, completion_tokens)),
        extra: Extra::new(),
    }
}

/// Builds the chunks of one streamed completion, all with the same id.
pub(super) struct Chunks {
    id: String,
    created: u64,
    model: String,
}

impl Chunks {
    pub(super) fn new(upstream_model: &str) -> Self {
        Self {
            id: completion_id(),
            created: now_seconds(),
            model: upstream_model.to_owned(),
        }
    }

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

    /// The first chunk: the assistant's role, as OpenAI sends it.
    pub(super) fn opening(&self) -> ChatChunk {
        self.chunk(
            Delta {
                role: Some(Role::Assistant),
                content: Some(String::new()),
                ..Delta::default()
            },
            None,
        )
    }

    /// The chunks for one generation event: a text delta, or the finish and usage chunks.
    pub(super) fn of(&mut self, event: GenerationEvent) -> Vec<ChatChunk> {
        match event {
            GenerationEvent::Text(text) => vec![self.chunk(
                Delta {
                    content: Some(text),
                    ..Delta::default()
                },
                None,
            )],
            GenerationEvent::Finished {
                reason,
                prompt_tokens,
                completion_tokens,
            } => {
                let finish = self.chunk(Delta::default(), Some(finish_reason(reason)));
                let mut usage_chunk = self.chunk(Delta::default(), None);
                usage_chunk.choices.clear();
                usage_chunk.usage = Some(usage(prompt_tokens, completion_tokens));
                vec![finish, usage_chunk]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: Value) -> ChatRequest {
        let mut body =
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), json.as_object()) {
            body.extend(extra.clone());
        }
        serde_json::from_value(body).unwrap_or_else(|error| unreachable!("{error}"))
    }

    fn class(result: Result<SamplingParams, ProviderError>) -> Option<ErrorClass> {
        result.err().map(|error| error.class())
    }

    #[test]
    fn sampling_parameters_are_read_and_checked() {
        let params = sampling(&request(serde_json::json!({
            "temperature": 0.2, "top_p": 0.9, "top_k": 40, "seed": -1,
            "repetition_penalty": 1.1, "frequency_penalty": 0.5, "presence_penalty": -0.5
        })));
        let params = params.unwrap_or_else(|error| unreachable!("{error}"));
        assert_eq!(params.top_k, 40);
        assert_eq!(params.seed, u64::MAX, "-1 as unsigned");
        assert!((params.repetition_penalty - 1.1).abs() < 1e-6);
        for bad in [
            serde_json::json!({"temperature": 2.5}),
            serde_json::json!({"top_p": 0}),
            serde_json::json!({"top_k": -3}),
            serde_json::json!({"seed": "x"}),
            serde_json::json!({"presence_penalty": 3}),
            serde_json::json!({"repetition_penalty": 0}),
        ] {
            assert_eq!(
                class(sampling(&request(bad.clone()))),
                Some(ErrorClass::InvalidRequest),
                "{bad}"
            );
        }
    }

    #[test]
    fn what_a_local_model_cannot_do_goes_to_the_next_target() {
        for unsupported in [
            serde_json::json!({"tools": [{"type": "function", "function": {"name": "f"}}]}),
            serde_json::json!({"n": 2}),
            serde_json::json!({"logprobs": true}),
            serde_json::json!({"response_format": {"type": "json_object"}}),
            serde_json::json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
        ] {
            let request = request(unsupported.clone());
            let outcome = refuse_unsupported(&request).and_then(|()| {
                request
                    .messages
                    .iter()
                    .map(template_message)
                    .collect::<Result<Vec<_>, _>>()
                    .map(drop)
            });
            assert_eq!(
                outcome.err().map(|error| error.class()),
                Some(ErrorClass::Permanent),
                "{unsupported}"
            );
        }
        let fine = request(
            serde_json::json!({"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "none"}),
        );
        assert!(refuse_unsupported(&fine).is_ok());
    }

    #[test]
    fn a_stream_opens_with_the_role_and_ends_with_finish_and_usage() {
        let mut chunks = Chunks::new("smollm2");
        let opening = chunks.opening();
        assert_eq!(opening.choices[0].delta.role, Some(Role::Assistant));
        let text = chunks.of(GenerationEvent::Text("Hi".to_owned()));
        assert_eq!(text[0].choices[0].delta.content.as_deref(), Some("Hi"));
        let end = chunks.of(GenerationEvent::Finished {
            reason: FinishReason::Length,
            prompt_tokens: 7,
            completion_tokens: 3,
        });
        assert_eq!(end[0].choices[0].finish_reason.as_deref(), Some("length"));
        assert!(end[1].choices.is_empty());
        assert_eq!(
            end[1].usage.as_ref().map(|usage| usage.total_tokens),
            Some(10)
        );
        assert!(end.iter().all(|chunk| chunk.id == opening.id));
    }
}
