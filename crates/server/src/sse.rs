//! Server-sent events to the client: each chunk is written as it arrives; a failure after the
//! stream began ends it with an OpenAI-shaped `error` event instead of `[DONE]`, so no client
//! mistakes a broken stream for a complete one.

use std::convert::Infallible;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use http::HeaderValue;
use landfall_providers::ChatStream;

use crate::error::stream_error_body;

const DONE: &[u8] = b"data: [DONE]\n\n";

/// Streams `chunks` as `text/event-stream`. Unless the client asked for usage, the usage chunk
/// the gateway always requests is held back.
pub(crate) fn response(chunks: ChatStream, include_usage: bool) -> Response {
    let events = futures::stream::unfold(Some(chunks), move |state| async move {
        let mut chunks = state?;
        loop {
            return match chunks.next().await {
                None => Some((Ok::<_, Infallible>(Bytes::from_static(DONE)), None)),
                Some(Ok(mut chunk)) => {
                    if !include_usage {
                        if chunk.choices.is_empty() && chunk.usage.is_some() {
                            continue;
                        }
                        chunk.usage = None;
                    }
                    Some((Ok(event(&chunk)), Some(chunks)))
                }
                Some(Err(error)) => {
                    tracing::warn!(%error, "stream failed after it began");
                    Some((Ok(event(&stream_error_body(error))), None))
                }
            };
        }
    });
    event_stream(Body::from_stream(events))
}

/// A `text/event-stream` response of `body`, uncached and unbuffered by proxies.
pub(crate) fn event_stream(body: Body) -> Response {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    // Tell nginx-style proxies not to buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// One `data:` event holding `value` as JSON.
fn event(value: &impl serde::Serialize) -> Bytes {
    let mut line = Vec::with_capacity(256);
    line.extend_from_slice(b"data: ");
    if let Err(error) = serde_json::to_writer(&mut line, value) {
        tracing::error!(%error, "cannot serialize a stream event");
        return Bytes::new();
    }
    line.extend_from_slice(b"\n\n");
    Bytes::from(line)
}
