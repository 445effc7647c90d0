//! The HTTP plumbing adapters share: one pooled client per provider, timeouts on every phase,
//! and the translation of upstream HTTP failures into [`ProviderError`]s.

use std::sync::Once;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use http::{HeaderMap, HeaderName, HeaderValue};
use landfall_config::HttpSettings;
use serde::de::DeserializeOwned;
use tokio::time::{Instant, timeout};

use crate::error::{BuildError, ProviderError, TimeoutPhase, classify_status};
use crate::sse::{self, SseEvent};

/// Longest upstream error body read, so a misbehaving upstream cannot make us buffer much.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

pub(crate) struct HttpClient {
    client: reqwest::Client,
    base_url: reqwest::Url,
    first_byte_timeout: Duration,
    total_timeout: Duration,
    stream_idle_timeout: Duration,
}

impl HttpClient {
    /// `auth` holds the adapter's credential headers; the configured extra headers follow and
    /// may override them.
    pub(crate) fn new(settings: &HttpSettings, mut headers: HeaderMap) -> Result<Self, BuildError> {
        install_crypto_provider();
        for (name, value) in &settings.headers {
            let invalid = |reason: String| BuildError::InvalidHeader {
                name: name.clone(),
                reason,
            };
            let header_name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|error| invalid(error.to_string()))?;
            let mut header_value = HeaderValue::from_str(value.expose())
                .map_err(|error| invalid(error.to_string()))?;
            header_value.set_sensitive(true);
            headers.insert(header_name, header_value);
        }
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(Duration::from_millis(settings.connect_timeout_ms))
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1024)
            .build()
            .map_err(|error| BuildError::Client {
                reason: error.to_string(),
            })?;
        Ok(Self {
            client,
            base_url: reqwest::Url::parse(&format!("{}/", settings.base_url.trim_end_matches('/')))
                .map_err(|error| BuildError::Client {
                    reason: format!("invalid base_url: {error}"),
                })?,
            first_byte_timeout: Duration::from_millis(settings.first_byte_timeout_ms),
            total_timeout: Duration::from_millis(settings.timeout_ms),
            stream_idle_timeout: Duration::from_millis(settings.stream_idle_timeout_ms),
        })
    }

    /// The URL of an endpoint under the base URL (`"chat/completions"`), parsed once when an
    /// adapter is built rather than on every request.
    pub(crate) fn endpoint(&self, path: &str) -> Result<reqwest::Url, BuildError> {
        self.base_url
            .join(path)
            .map_err(|error| BuildError::Client {
                reason: format!("invalid endpoint {path}: {error}"),
            })
    }

    /// POSTs a JSON body to `url` and waits for a successful response's headers.
    /// Error statuses become [`ProviderError::Status`], classified by `error_fields`.
    pub(crate) async fn post(
        &self,
        url: &reqwest::Url,
        body: Vec<u8>,
        error_fields: fn(&serde_json::Value) -> (Option<String>, Option<String>),
    ) -> Result<reqwest::Response, ProviderError> {
        let request = self
            .client
            .post(url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send();
        let response = timeout(self.first_byte_timeout, request)
            .await
            .map_err(|_| self.timed_out(TimeoutPhase::FirstByte))?
            .map_err(connection_error)?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(self.status_error(response, error_fields).await)
    }

    /// Reads and parses a whole JSON response, within the total timeout counted from `started`.
    pub(crate) async fn read_json<T: DeserializeOwned>(
        &self,
        response: reqwest::Response,
        started: Instant,
    ) -> Result<T, ProviderError> {
        let remaining = self.total_timeout.saturating_sub(started.elapsed());
        let body = timeout(remaining, response.bytes())
            .await
            .map_err(|_| self.timed_out(TimeoutPhase::Total))?
            .map_err(|error| ProviderError::StreamBroken {
                message: error_chain(&error),
            })?;
        parse_json(&body)
    }

    /// The server-sent events of a streaming response, each within the idle timeout (the first
    /// within the first-byte timeout).
    pub(crate) fn events(
        &self,
        response: reqwest::Response,
    ) -> impl Stream<Item = Result<SseEvent, ProviderError>> + Send + 'static + use<> {
        sse::events(
            response.bytes_stream(),
            self.first_byte_timeout,
            self.stream_idle_timeout,
        )
    }

    fn timed_out(&self, phase: TimeoutPhase) -> ProviderError {
        let limit = match phase {
            TimeoutPhase::FirstByte => self.first_byte_timeout,
            TimeoutPhase::Total => self.total_timeout,
            TimeoutPhase::StreamIdle => self.stream_idle_timeout,
        };
        ProviderError::Timeout {
            phase,
            timeout_ms: duration_ms(limit),
        }
    }

    async fn status_error(
        &self,
        response: reqwest::Response,
        error_fields: fn(&serde_json::Value) -> (Option<String>, Option<String>),
    ) -> ProviderError {
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers());
        let body = timeout(
            self.first_byte_timeout,
            read_prefix(response, MAX_ERROR_BODY_BYTES),
        )
        .await
        .unwrap_or_default();
        let (message, code) = match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(json) => error_fields(&json),
            Err(_) => (None, None),
        };
        let message = message.unwrap_or_else(|| {
            let text = String::from_utf8_lossy(&body);
            let text = text.trim();
            if text.is_empty() {
                format!("HTTP {status} with no body")
            } else {
                text.chars().take(300).collect()
            }
        });
        let class = classify_status(status, &message, code.as_deref());
        ProviderError::Status {
            status,
            message,
            code,
            retry_after,
            class,
        }
    }
}

pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ProviderError> {
    serde_json::from_slice(body).map_err(|error| {
        let preview: String = String::from_utf8_lossy(body).chars().take(120).collect();
        ProviderError::invalid_response(format!("{error} in `{preview}`"))
    })
}

async fn read_prefix(mut response: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    body.truncate(limit);
    body
}

/// `Retry-After` in seconds or as an HTTP date, or OpenAI's `retry-after-ms`.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
    };
    if let Some(milliseconds) = text("retry-after-ms").and_then(|value| value.parse::<f64>().ok()) {
        return Some(Duration::from_secs_f64(milliseconds.max(0.0) / 1000.0));
    }
    let value = text("retry-after")?;
    if let Ok(seconds) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds.max(0.0)).ok();
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

fn connection_error(error: reqwest::Error) -> ProviderError {
    ProviderError::Connection {
        message: error_chain(&error),
    }
}

/// The error and its sources on one line: reqwest's own message alone rarely says what broke.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

pub(crate) fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Another component may have installed one already; either is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Turns a byte stream error into the error a stream consumer sees.
pub(crate) fn body_error(error: &reqwest::Error) -> ProviderError {
    ProviderError::StreamBroken {
        message: error_chain(error),
    }
}

pub(crate) type ByteResult = Result<Bytes, reqwest::Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("3"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(250)));
        let mut headers = HeaderMap::new();
        headers.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        headers.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }
}
