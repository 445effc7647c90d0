//! The HTTP server: accept loop, routing, recording and scripted replies.

use std::{
    collections::VecDeque,
    convert::Infallible,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt as _;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use serde_json::Value;
use tokio::{net::TcpListener, task::JoinSet};

use crate::{
    RecordedRequest, Reply, Script, anthropic,
    body::{EventBuffer, EventStream, MockBody, StreamEnd},
    openai,
    script::{Scripted, error_body},
};

/// The routes the mock knows; everything else is a 404.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Route {
    Chat,
    Embeddings,
    Messages,
    Models,
    NotFound,
}

const CHAT_PATH: &str = "/v1/chat/completions";
const EMBEDDINGS_PATH: &str = "/v1/embeddings";
const MESSAGES_PATH: &str = "/v1/messages";
const MODELS_PATH: &str = "/v1/models";

impl Route {
    fn of(method: &Method, path: &str) -> Route {
        match (method, path) {
            (&Method::POST, CHAT_PATH) => Route::Chat,
            (&Method::POST, EMBEDDINGS_PATH) => Route::Embeddings,
            (&Method::POST, MESSAGES_PATH) => Route::Messages,
            (&Method::GET, MODELS_PATH) => Route::Models,
            _ => Route::NotFound,
        }
    }

    /// Index into [`Shared::hits`] for the known paths, whatever the method.
    pub(crate) fn hit_index(path: &str) -> Option<usize> {
        match path {
            CHAT_PATH => Some(0),
            EMBEDDINGS_PATH => Some(1),
            MESSAGES_PATH => Some(2),
            MODELS_PATH => Some(3),
            _ => None,
        }
    }
}

/// State shared by every connection of one server.
pub(crate) struct Shared {
    chat: Mutex<VecDeque<Reply>>,
    embeddings: Mutex<VecDeque<Reply>>,
    messages: Mutex<VecDeque<Reply>>,
    pub(crate) stream_delay_ms: u64,
    record: bool,
    pub(crate) recorded: Mutex<Vec<RecordedRequest>>,
    pub(crate) hits: [AtomicUsize; 4],
    pub(crate) cancelled_streams: Arc<AtomicUsize>,
    next_id: AtomicU64,
}

impl Shared {
    pub(crate) fn new(script: Script) -> Self {
        Self {
            chat: Mutex::new(script.chat.into()),
            embeddings: Mutex::new(script.embeddings.into()),
            messages: Mutex::new(script.messages.into()),
            stream_delay_ms: script.stream_delay_ms,
            record: script.record,
            recorded: Mutex::new(Vec::new()),
            hits: Default::default(),
            cancelled_streams: Arc::default(),
            next_id: AtomicU64::new(1),
        }
    }

    /// A fresh number for response ids (`chatcmpl-mock-N`, `msg_mock_N`).
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn next_reply(&self, route: Route) -> Reply {
        let queue = match route {
            Route::Chat => &self.chat,
            Route::Embeddings => &self.embeddings,
            Route::Messages => &self.messages,
            Route::Models | Route::NotFound => return Reply::Default,
        };
        lock(queue).pop_front().unwrap_or(Reply::Default)
    }

    /// An SSE body that counts itself in `cancelled_streams` if dropped early.
    pub(crate) fn event_stream(
        &self,
        events: EventBuffer,
        delay_ms: u64,
        end: StreamEnd,
    ) -> MockBody {
        MockBody::Events(Box::new(EventStream::new(
            events,
            delay_ms,
            end,
            Arc::clone(&self.cancelled_streams),
        )))
    }
}

/// Locks, ignoring poisoning: a panicking test thread must not hide what the server recorded.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Serves `listener` until the future is dropped; dropping it aborts every open connection.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let builder = auto::Builder::new(TokioExecutor::new());
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _peer)) = accepted else {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                // SSE events are small writes that must not wait for Nagle.
                let _ = stream.set_nodelay(true);
                let shared = Arc::clone(&shared);
                let builder = builder.clone();
                connections.spawn(async move {
                    let service = service_fn(move |request| {
                        let shared = Arc::clone(&shared);
                        async move { Ok::<_, Infallible>(handle(&shared, request).await) }
                    });
                    // A connection error (client went away, malformed request) ends only that
                    // connection.
                    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn handle(shared: &Shared, request: Request<Incoming>) -> Response<MockBody> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    let route = Route::of(&parts.method, path);
    if let Some(index) = Route::hit_index(path) {
        shared.hits[index].fetch_add(1, Ordering::Relaxed);
    }
    // A body that fails mid-read is treated like an empty one: the reply then says it is not JSON.
    let bytes = body
        .collect()
        .await
        .map(|body| body.to_bytes())
        .unwrap_or_default();
    let json = parse_json(&bytes);
    if shared.record {
        let recorded = RecordedRequest {
            method: parts.method.to_string(),
            path: path.to_owned(),
            headers: parts
                .headers
                .iter()
                .map(|(name, value)| {
                    let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                    (name.as_str().to_owned(), value)
                })
                .collect(),
            body: json.clone().unwrap_or(Value::Null),
        };
        lock(&shared.recorded).push(recorded);
    }
    let mut reply = shared.next_reply(route);
    loop {
        return match reply {
            Reply::Delay { ms, then } => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                reply = *then;
                continue;
            }
            Reply::Hang => std::future::pending().await,
            Reply::Default => {
                default_reply(shared, route, &parts.method, path, json.as_ref(), None)
            }
            Reply::Text(text) => default_reply(
                shared,
                route,
                &parts.method,
                path,
                json.as_ref(),
                Some(Scripted::Text(&text)),
            ),
            Reply::ToolCall {
                id,
                name,
                arguments,
            } => default_reply(
                shared,
                route,
                &parts.method,
                path,
                json.as_ref(),
                Some(Scripted::ToolCall {
                    id: &id,
                    name: &name,
                    arguments: &arguments,
                }),
            ),
            Reply::Json {
                status,
                body,
                headers,
            } => {
                let mut response = json_response(status_code(status), &body);
                for (name, value) in headers {
                    let (Ok(name), Ok(value)) = (
                        HeaderName::from_bytes(name.as_bytes()),
                        HeaderValue::from_str(&value),
                    ) else {
                        continue;
                    };
                    response.headers_mut().append(name, value);
                }
                response
            }
            Reply::Raw {
                status,
                content_type,
                body,
            } => {
                let content_type = HeaderValue::from_str(&content_type)
                    .unwrap_or(HeaderValue::from_static("application/octet-stream"));
                response(status_code(status), content_type, MockBody::full(body))
            }
            Reply::Stream {
                events,
                delay_ms,
                done,
                cut,
            } => {
                let mut buffer = EventBuffer::default();
                for event in &events {
                    if is_raw_event(event) {
                        buffer.push_raw(event);
                    } else {
                        buffer.push_data(event);
                    }
                }
                if done {
                    buffer.push_data("[DONE]");
                }
                let end = if cut {
                    StreamEnd::Cut
                } else {
                    StreamEnd::Clean
                };
                sse_response(shared.event_stream(buffer, delay_ms, end))
            }
        };
    }
}

fn parse_json(bytes: &Bytes) -> Option<Value> {
    if bytes.is_empty() {
        return None;
    }
    serde_json::from_slice(bytes).ok()
}

/// Whether a scripted event already carries its SSE field names.
fn is_raw_event(event: &str) -> bool {
    ["event:", "data:", "id:", "retry:", ":"]
        .iter()
        .any(|prefix| event.starts_with(prefix))
}

fn default_reply(
    shared: &Shared,
    route: Route,
    method: &Method,
    path: &str,
    json: Option<&Value>,
    scripted: Option<Scripted<'_>>,
) -> Response<MockBody> {
    match (route, json) {
        (Route::Models, _) => json_response(StatusCode::OK, &openai::models()),
        (Route::NotFound, _) => error_response(
            StatusCode::NOT_FOUND,
            &format!("Invalid URL ({method} {path})"),
        ),
        (Route::Chat | Route::Embeddings | Route::Messages, None) => error_response(
            StatusCode::BAD_REQUEST,
            "We could not parse the JSON body of your request. (HINT: This likely means you \
             aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but \
             what was sent was not valid JSON.)",
        ),
        (Route::Chat, Some(request)) => openai::chat(shared, request, scripted),
        (Route::Embeddings, Some(request)) => openai::embeddings(request),
        (Route::Messages, Some(request)) => anthropic::messages(shared, request, scripted),
    }
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

pub(crate) fn response(
    status: StatusCode,
    content_type: HeaderValue,
    body: MockBody,
) -> Response<MockBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    response
}

/// A JSON response from a value; use [`json_bytes_response`] when the bytes are at hand.
pub(crate) fn json_response(
    status: StatusCode,
    body: &impl serde::Serialize,
) -> Response<MockBody> {
    json_bytes_response(status, serde_json::to_vec(body).unwrap_or_default())
}

pub(crate) fn json_bytes_response(status: StatusCode, body: Vec<u8>) -> Response<MockBody> {
    response(
        status,
        HeaderValue::from_static("application/json"),
        MockBody::full(body),
    )
}

pub(crate) fn sse_response(body: MockBody) -> Response<MockBody> {
    let mut response = response(
        StatusCode::OK,
        HeaderValue::from_static("text/event-stream"),
        body,
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// An OpenAI-shaped error response.
pub(crate) fn error_response(status: StatusCode, message: &str) -> Response<MockBody> {
    json_response(
        status,
        &error_body(message, "invalid_request_error", Value::Null),
    )
}
