//! Anthropic's Messages API (`POST {base_url}/messages`). Chat requests are translated to
//! messages and back ([`convert`]); streamed events become OpenAI-shaped chunks ([`stream`]).
//! Anthropic has no embeddings API.

mod convert;
mod stream;

use async_trait::async_trait;
use futures::StreamExt;
use http::{HeaderMap, HeaderName};
use landfall_config::HttpSettings;
use landfall_types::{ChatRequest, ChatResponse};
use tokio::time::Instant;

use crate::http::{HttpClient, header_value};
use crate::{BuildError, ChatModel, ChatStream, ProviderError};

/// The Messages API adapter.
pub(crate) struct Anthropic {
    http: HttpClient,
    /// `{base_url}/messages`.
    messages_url: http::Uri,
    /// Sent as `max_tokens` when the client gives none, since the API requires one.
    default_max_tokens: u32,
}

impl Anthropic {
    /// An adapter sending `anthropic-version: {version}` and the API key as `x-api-key`.
    ///
    /// # Errors
    /// When the key, the version or a configured header is not a valid header value, or the
    /// HTTP client cannot be built.
    pub(crate) fn new(
        settings: &HttpSettings,
        version: &str,
        default_max_tokens: u32,
    ) -> Result<Self, BuildError> {
        let mut headers = HeaderMap::new();
        if let Some(key) = &settings.api_key {
            let mut value = header_value("x-api-key", key.expose())?;
            value.set_sensitive(true);
            headers.insert(HeaderName::from_static("x-api-key"), value);
        }
        headers.insert(
            HeaderName::from_static("anthropic-version"),
            header_value("anthropic-version", version)?,
        );
        let http = HttpClient::new(settings, headers)?;
        Ok(Self {
            messages_url: http.endpoint("messages")?,
            http,
            default_max_tokens,
        })
    }

    /// The serialized Messages API body for a chat request.
    fn body(
        &self,
        request: &ChatRequest,
        upstream_model: &str,
        stream: bool,
    ) -> Result<Vec<u8>, ProviderError> {
        let body = convert::request(request, upstream_model, self.default_max_tokens, stream)?;
        serde_json::to_vec(&body).map_err(|error| ProviderError::Untranslatable {
            message: error.to_string(),
        })
    }
}

#[async_trait]
impl ChatModel for Anthropic {
    async fn chat(
        &self,
        request: &ChatRequest,
        upstream_model: &str,
    ) -> Result<ChatResponse, ProviderError> {
        let body = self.body(request, upstream_model, false)?;
        let started = Instant::now();
        let response = self.http.post(&self.messages_url, body).await?;
        let message: convert::MessagesResponse = self.http.read_json(response, started).await?;
        Ok(convert::response(message))
    }

    async fn chat_stream(
        &self,
        request: &ChatRequest,
        upstream_model: &str,
    ) -> Result<ChatStream, ProviderError> {
        let body = self.body(request, upstream_model, true)?;
        let response = self.http.post(&self.messages_url, body).await?;
        Ok(stream::chunks(self.http.events(response)).boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::error_fields;
    use serde_json::json;

    #[test]
    fn error_fields_read_anthropic_and_fallback_shapes() {
        let cases = [
            (
                json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
                (Some("Overloaded"), Some("overloaded_error")),
            ),
            (
                json!({"type": "error", "error": {"type": "invalid_request_error",
                    "message": "prompt is too long: 210000 tokens > 200000 maximum"}}),
                (
                    Some("prompt is too long: 210000 tokens > 200000 maximum"),
                    Some("invalid_request_error"),
                ),
            ),
            (
                json!({"message": "bad gateway"}),
                (Some("bad gateway"), None),
            ),
            (json!({"error": "denied"}), (Some("denied"), None)),
            (json!([1, 2]), (None, None)),
        ];
        for (body, (message, code)) in cases {
            let (got_message, got_code) = error_fields(&body);
            assert_eq!(got_message.as_deref(), message, "{body}");
            assert_eq!(got_code.as_deref(), code, "{body}");
        }
    }

    #[test]
    fn invalid_version_header_is_a_build_error() {
        let settings = HttpSettings {
            base_url: "http://127.0.0.1:9/v1".into(),
            ..HttpSettings::default()
        };
        let error = Anthropic::new(&settings, "bad\nversion", 1024).err();
        assert!(
            matches!(error, Some(BuildError::InvalidHeader { ref name, .. }) if name == "anthropic-version"),
            "{error:?}"
        );
    }
}
