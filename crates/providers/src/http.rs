//! The HTTP plumbing adapters share: one pooled client per provider, timeouts on every phase,
//! and the translation of upstream HTTP failures into [`ProviderError`]s.
//!
//! Built on hyper's pooled client directly rather than reqwest: on the proxy's hot path
//! reqwest's redirect layer re-parses every response URL, about 10% of the gateway's CPU in the
//! benchmark (docs/benchmarks.md). Landfall follows no redirects and needs none of that.

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use futures::Stream;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Uri};
use http_body_util::{BodyDataStream, BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use landfall_config::HttpSettings;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::time::{Instant, timeout};

use crate::error::{BuildError, ProviderError, TimeoutPhase, classify_status};
use crate::sse::{self, SseEvent};

/// Longest upstream error body read, so a misbehaving upstream cannot make us buffer much.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

pub(crate) type Response = http::Response<Incoming>;

/// Direct connections, or connections tunnelled through an HTTP proxy with `CONNECT`.
enum Pool {
    Direct(Client<HttpsConnector<HttpConnector>, Full<Bytes>>),
    Tunnelled(Client<HttpsConnector<Tunnel<HttpConnector>>, Full<Bytes>>),
}

impl Pool {
    fn request(&self, request: Request<Full<Bytes>>) -> ResponseFuture {
        match self {
            Self::Direct(client) => client.request(request),
            Self::Tunnelled(client) => client.request(request),
        }
    }
}

pub(crate) struct HttpClient {
    client: Pool,
    /// Sent with every request: the adapter's credentials, the configured extras, the
    /// content type.
    headers: HeaderMap,
    /// `base_url` with a trailing slash.
    base_url: String,
    first_byte_timeout: Duration,
    total_timeout: Duration,
    stream_idle_timeout: Duration,
}

impl HttpClient {
    /// `headers` holds the adapter's credential headers; the configured extra headers follow
    /// and may override them.
    pub(crate) fn new(settings: &HttpSettings, mut headers: HeaderMap) -> Result<Self, BuildError> {
        for (name, value) in &settings.headers {
            let header_name = HeaderName::from_bytes(name.as_bytes()).map_err(|error| {
                BuildError::InvalidHeader {
                    name: name.clone(),
                    reason: error.to_string(),
                }
            })?;
            let mut header_value = header_value(name, value.expose())?;
            header_value.set_sensitive(true);
            headers.insert(header_name, header_value);
        }
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );

        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(Duration::from_millis(settings.connect_timeout_ms)));
        http.set_nodelay(true);
        http.enforce_http(false);
        let tls = || {
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_provider_and_platform_verifier(rustls::crypto::ring::default_provider())
                .map_err(|error| BuildError::Client {
                    reason: format!("TLS setup failed: {error}"),
                })
                .map(|builder| builder.https_or_http().enable_all_versions())
        };
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1024)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new());
        let client = match &settings.proxy_url {
            None => Pool::Direct(builder.build(tls()?.wrap_connector(http))),
            Some(proxy) => {
                Pool::Tunnelled(builder.build(tls()?.wrap_connector(tunnel(proxy.expose(), http)?)))
            }
        };
        Ok(Self {
            client,
            headers,
            base_url: format!("{}/", settings.base_url.trim_end_matches('/')),
            first_byte_timeout: Duration::from_millis(settings.first_byte_timeout_ms),
            total_timeout: Duration::from_millis(settings.timeout_ms),
            stream_idle_timeout: Duration::from_millis(settings.stream_idle_timeout_ms),
        })
    }

    /// The URI of an endpoint under the base URL (`"chat/completions"`), parsed once when an
    /// adapter is built rather than on every request.
    pub(crate) fn endpoint(&self, path: &str) -> Result<Uri, BuildError> {
        format!("{}{path}", self.base_url)
            .parse()
            .map_err(|error| BuildError::Client {
                reason: format!("invalid endpoint {path}: {error}"),
            })
    }

    /// POSTs a JSON body to `uri` and waits for a successful response's headers.
    /// Error statuses become classified [`ProviderError::Status`]es.
    pub(crate) async fn post(&self, uri: &Uri, body: Vec<u8>) -> Result<Response, ProviderError> {
        let mut request = Request::new(Full::new(Bytes::from(body)));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = uri.clone();
        *request.headers_mut() = self.headers.clone();
        let response = timeout(self.first_byte_timeout, self.client.request(request))
            .await
            .map_err(|_| self.timed_out(TimeoutPhase::FirstByte))?
            .map_err(|error| ProviderError::Connection {
                message: error_chain(&error),
            })?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(self.status_error(response).await)
    }

    /// Sends `request` as it is (no default headers, no redirects followed) and returns the
    /// response whatever its status; the error is the connection failure's description.
    pub(crate) async fn send(&self, request: Request<Full<Bytes>>) -> Result<Response, String> {
        self.client
            .request(request)
            .await
            .map_err(|error| error_chain(&error))
    }

    /// Reads and parses a whole JSON response, within the total timeout counted from `started`.
    pub(crate) async fn read_json<T: DeserializeOwned>(
        &self,
        response: Response,
        started: Instant,
    ) -> Result<T, ProviderError> {
        let remaining = self.total_timeout.saturating_sub(started.elapsed());
        let body = timeout(remaining, response.into_body().collect())
            .await
            .map_err(|_| self.timed_out(TimeoutPhase::Total))?
            .map_err(|error| body_error(&error))?
            .to_bytes();
        parse_json(&body)
    }

    /// The server-sent events of a streaming response, each within the idle timeout (the first
    /// within the first-byte timeout).
    pub(crate) fn events(
        &self,
        response: Response,
    ) -> impl Stream<Item = Result<SseEvent, ProviderError>> + Send + 'static + use<> {
        sse::events(
            BodyDataStream::new(response.into_body()),
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

    async fn status_error(&self, response: Response) -> ProviderError {
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

/// The message and code of an upstream error body: OpenAI's `{"error": {"message", "code",
/// "type"}}`, Anthropic's `{"type": "error", "error": {"type", "message"}}` (the type serves as
/// the code), or a bare `{"message"}` / `{"error": "…"}` as proxies and some compatible servers
/// send.
pub(crate) fn error_fields(body: &Value) -> (Option<String>, Option<String>) {
    let error = body.get("error").unwrap_or(body);
    if let Some(text) = error.as_str() {
        return (Some(text.to_owned()), None);
    }
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let code = error
        .get("code")
        .and_then(|code| {
            code.as_str()
                .map(str::to_owned)
                .or_else(|| code.as_i64().map(|code| code.to_string()))
        })
        .or_else(|| error.get("type").and_then(Value::as_str).map(str::to_owned));
    (message, code)
}

/// A header value, or the build error naming the header.
pub(crate) fn header_value(name: &str, value: &str) -> Result<HeaderValue, BuildError> {
    HeaderValue::from_str(value).map_err(|error| BuildError::InvalidHeader {
        name: name.to_owned(),
        reason: error.to_string(),
    })
}

/// A `CONNECT` tunnel through `proxy_url`; credentials in the URL become `Proxy-Authorization`.
fn tunnel(proxy_url: &str, http: HttpConnector) -> Result<Tunnel<HttpConnector>, BuildError> {
    let invalid = |reason: String| BuildError::Client {
        reason: format!("invalid proxy_url: {reason}"),
    };
    let url = url::Url::parse(proxy_url).map_err(|error| invalid(error.to_string()))?;
    let host = url
        .host_str()
        .ok_or_else(|| invalid("no host".to_owned()))?;
    let port = url.port_or_known_default().unwrap_or(80);
    let proxy: Uri = format!("http://{host}:{port}")
        .parse()
        .map_err(|error: http::uri::InvalidUri| invalid(error.to_string()))?;
    let tunnel = Tunnel::new(proxy, http);
    if url.username().is_empty() {
        return Ok(tunnel);
    }
    let user = percent_decode(url.username());
    let password = percent_decode(url.password().unwrap_or_default());
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let value = HeaderValue::from_str(&format!("Basic {credentials}"))
        .map_err(|error| invalid(error.to_string()))?;
    Ok(tunnel.with_auth(value))
}

fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ProviderError> {
    serde_json::from_slice(body).map_err(|error| {
        let preview: String = String::from_utf8_lossy(body).chars().take(120).collect();
        ProviderError::invalid_response(format!("{error} in `{preview}`"))
    })
}

async fn read_prefix(response: Response, limit: usize) -> Vec<u8> {
    let mut body = response.into_body();
    let mut prefix = Vec::new();
    while prefix.len() < limit {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    prefix.extend_from_slice(data);
                }
            }
            Some(Err(_)) | None => break,
        }
    }
    prefix.truncate(limit);
    prefix
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

/// Turns a byte stream error into the error a stream consumer sees.
pub(crate) fn body_error(error: &hyper::Error) -> ProviderError {
    ProviderError::StreamBroken {
        message: error_chain(error),
    }
}

pub(crate) type ByteResult = Result<Bytes, hyper::Error>;

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
