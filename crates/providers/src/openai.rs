//! Any OpenAI-compatible API: OpenAI, DeepSeek, Qwen/DashScope compatible mode, Moonshot,
//! vLLM, Ollama's `/v1`, llama.cpp's server. Requests go up as they came, with the upstream
//! model name; responses come back parsed, so a malformed one is caught here.

use async_trait::async_trait;
use futures::StreamExt;
use http::HeaderMap;
use landfall_config::HttpSettings;
use landfall_types::{
    ChatChunk, ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse, StreamOptions,
};
use serde_json::Value;
use tokio::time::Instant;

use crate::http::{HttpClient, error_fields, header_value, parse_json};
use crate::{BuildError, ChatModel, ChatStream, EmbeddingModel, ProviderError};

pub(crate) struct OpenAi {
    http: HttpClient,
    chat_url: http::Uri,
    embeddings_url: http::Uri,
}

impl OpenAi {
    pub(crate) fn new(settings: &HttpSettings) -> Result<Self, BuildError> {
        let mut headers = HeaderMap::new();
        if let Some(key) = &settings.api_key {
            let mut value = header_value("authorization", &format!("Bearer {}", key.expose()))?;
            value.set_sensitive(true);
            headers.insert(http::header::AUTHORIZATION, value);
        }
        let http = HttpClient::new(settings, headers)?;
        Ok(Self {
            chat_url: http.endpoint("chat/completions")?,
            embeddings_url: http.endpoint("embeddings")?,
            http,
        })
    }

    async fn exchange<T: serde::de::DeserializeOwned>(
        &self,
        url: &http::Uri,
        body: Vec<u8>,
    ) -> Result<T, ProviderError> {
        let started = Instant::now();
        let response = self.http.post(url, body).await?;
        self.http.read_json(response, started).await
    }
}

fn serialize(value: &impl serde::Serialize) -> Result<Vec<u8>, ProviderError> {
    serde_json::to_vec(value).map_err(|error| ProviderError::Untranslatable {
        message: error.to_string(),
    })
}

#[async_trait]
impl ChatModel for OpenAi {
    async fn chat(
        &self,
        request: &ChatRequest,
        upstream_model: &str,
    ) -> Result<ChatResponse, ProviderError> {
        let mut body = request.clone();
        upstream_model.clone_into(&mut body.model);
        body.stream = None;
        body.stream_options = None;
        self.exchange(&self.chat_url, serialize(&body)?).await
    }

    async fn chat_stream(
        &self,
        request: &ChatRequest,
        upstream_model: &str,
    ) -> Result<ChatStream, ProviderError> {
        let mut body = request.clone();
        upstream_model.clone_into(&mut body.model);
        body.stream = Some(true);
        // Always ask for usage so accounting is exact; the server hides it from clients that
        // did not ask.
        body.stream_options
            .get_or_insert_with(StreamOptions::default)
            .include_usage = Some(true);
        let response = self.http.post(&self.chat_url, serialize(&body)?).await?;
        Ok(chunks(self.http.events(response)).boxed())
    }
}

#[async_trait]
impl EmbeddingModel for OpenAi {
    async fn embed(
        &self,
        request: &EmbeddingRequest,
        upstream_model: &str,
    ) -> Result<EmbeddingResponse, ProviderError> {
        let mut body = request.clone();
        upstream_model.clone_into(&mut body.model);
        let response: EmbeddingResponse = self
            .exchange(&self.embeddings_url, serialize(&body)?)
            .await?;
        if response.data.len() != request.input.len() {
            return Err(ProviderError::invalid_response(format!(
                "{} embeddings for {} inputs",
                response.data.len(),
                request.input.len()
            )));
        }
        Ok(response)
    }
}

/// Turns OpenAI stream events into chunks. The stream must end with `[DONE]` or at least have
/// delivered a finish reason; otherwise it was cut off.
fn chunks(
    events: impl futures::Stream<Item = Result<crate::sse::SseEvent, ProviderError>> + Send + 'static,
) -> impl futures::Stream<Item = Result<ChatChunk, ProviderError>> + Send + 'static {
    struct State<E> {
        events: std::pin::Pin<Box<E>>,
        finished: bool,
        done: bool,
    }
    let state = State {
        events: Box::pin(events),
        finished: false,
        done: false,
    };
    futures::stream::unfold(state, |mut state| async move {
        loop {
            if state.done {
                return None;
            }
            let Some(event) = state.events.next().await else {
                state.done = true;
                if state.finished {
                    return None;
                }
                let error = ProviderError::StreamBroken {
                    message: "the stream ended before [DONE]".to_owned(),
                };
                return Some((Err(error), state));
            };
            let event = match event {
                Ok(event) => event,
                Err(error) => {
                    state.done = true;
                    return Some((Err(error), state));
                }
            };
            let data = event.data.trim();
            if data == "[DONE]" {
                return None;
            }
            if data.is_empty() {
                continue;
            }
            let chunk: ChatChunk = match parse_json(data.as_bytes()) {
                Ok(chunk) => chunk,
                Err(error) => {
                    state.done = true;
                    return Some((Err(error), state));
                }
            };
            if chunk.choices.is_empty()
                && chunk.usage.is_none()
                && chunk.extra.contains_key("error")
            {
                state.done = true;
                let message = error_fields(&Value::Object(chunk.extra))
                    .0
                    .unwrap_or_else(|| "unknown error".to_owned());
                return Some((Err(ProviderError::StreamError { message }), state));
            }
            state.finished |= chunk
                .choices
                .iter()
                .any(|choice| choice.finish_reason.is_some());
            return Some((Ok(chunk), state));
        }
    })
}
