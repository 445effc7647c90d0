//! landfall-testkit: a scripted fake LLM upstream for integration tests and the benchmark.
//!
//! [`MockUpstream`] is a real HTTP server on 127.0.0.1 speaking the OpenAI chat completions,
//! embeddings and models routes and the Anthropic Messages route. Each route answers from a
//! [`Script`] queue of [`Reply`]s (errors, delays, broken streams, hangs) and falls back to a
//! well-formed default that echoes the request. It owns nothing of the gateway and must never be
//! a dependency of production crates.
//!
//! Default behaviours, in short (see the route modules for details):
//! - `POST /v1/chat/completions`: `"echo: <last user text>"`; a tool call to the first tool when
//!   `tools` is set and the last message is from the user; `"tool said: <content>"` after a tool
//!   message; `{"echo":"<last user text>"}` for `json_object`/`json_schema` response formats;
//!   `n` choices; OpenAI-exact chunks when `"stream": true` (with `stream_options.include_usage`).
//! - `POST /v1/embeddings`: deterministic unit vectors (8 dimensions, or `dimensions`), as floats
//!   or base64.
//! - `POST /v1/messages`: the Anthropic equivalents, including `tool_use` and SSE events.
//! - `GET /v1/models`: one `mock-model`. Anything else: an OpenAI-shaped 404.
//!
//! Token counts are whitespace-separated words: prompt = words of every message + 3 per message,
//! completion = words of the reply (times `n`).

mod anthropic;
mod base64;
mod body;
pub mod mcp;
mod openai;
mod script;
mod server;

use std::{
    net::SocketAddr,
    sync::{Arc, atomic::Ordering},
};

use tokio::{net::TcpListener, task::JoinHandle};

pub use script::{Reply, Script};
use server::{Route, Shared, lock};

/// A running fake upstream. Dropping it shuts the server down and closes every connection.
pub struct MockUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl MockUpstream {
    /// Starts on 127.0.0.1 on a random port in a tokio task; returns once listening.
    ///
    /// # Panics
    /// If no port can be bound on 127.0.0.1, since no test can go on without its upstream.
    #[expect(
        clippy::expect_used,
        reason = "test support: a test cannot run without its upstream"
    )]
    pub async fn start(script: Script) -> MockUpstream {
        Self::try_start(script)
            .await
            .expect("bind the mock upstream on 127.0.0.1")
    }

    /// Like [`MockUpstream::start`], returning the bind error instead of panicking.
    ///
    /// # Errors
    /// If 127.0.0.1:0 cannot be bound.
    pub async fn try_start(script: Script) -> std::io::Result<MockUpstream> {
        let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(script));
        let task = tokio::spawn(server::serve(listener, Arc::clone(&shared)));
        Ok(MockUpstream { addr, shared, task })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/v1`, the OpenAI-style base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Every request received so far on all routes, in arrival order. Empty if the script
    /// disabled recording.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.recorded).clone()
    }

    /// Number of requests received on `path` (e.g. `/v1/chat/completions`), any method.
    /// Counted even without recording for the four known routes; other paths need recording.
    pub fn hits(&self, path: &str) -> usize {
        match Route::hit_index(path) {
            Some(index) => self.shared.hits[index].load(Ordering::Relaxed),
            None => lock(&self.shared.recorded)
                .iter()
                .filter(|request| request.path == path)
                .count(),
        }
    }

    /// Number of streaming responses whose body was dropped before the stream finished, i.e.
    /// whose client disconnected. Detection happens when the server next writes, so allow one
    /// event delay plus a little before asserting.
    pub fn cancelled_streams(&self) -> usize {
        self.shared.cancelled_streams.load(Ordering::Relaxed)
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        // The serve task owns the connection tasks; aborting it aborts them all.
        self.task.abort();
    }
}

/// Serves the script on `listener` until the returned future is dropped (the benchmark binary's
/// entry point; tests use [`MockUpstream`]).
pub async fn serve(listener: TcpListener, script: Script) {
    server::serve(listener, Arc::new(Shared::new(script))).await;
}

/// One request as the mock received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// Header names are lowercase, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The JSON body, or `Null` if the body was not JSON.
    pub body: serde_json::Value,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}
