//! Starts `landfall` on 127.0.0.1 with a generated configuration.

use std::net::SocketAddr;

use landfall_config::{Environment, from_toml};
use landfall_server::{AppState, serve};
use serde_json::{Value, json};

pub struct Landfall {
    pub address: SocketAddr,
    pub client: reqwest::Client,
    pub state: AppState,
    task: tokio::task::JoinHandle<()>,
    _data: tempfile::TempDir,
}

impl Drop for Landfall {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Fast retry settings, so tests of retries take milliseconds.
pub const FAST_ROUTING: &str = "[routing]\nbackoff_initial_ms = 5\nbackoff_max_ms = 20\n";

/// Starts Landfall on `config`. Unless the test configures them itself: anonymous requests
/// are allowed, shedding is off (the test machine's own load must not shed), and the SQLite
/// store lives in a fresh temporary directory.
pub async fn start(config: &str) -> Landfall {
    let data = tempfile::tempdir().unwrap();
    let mut text = config.to_owned();
    if !text.contains("[auth]") {
        text.push_str("\n[auth]\nallow_anonymous = true\n");
    }
    if !text.contains("[shedding]") {
        text.push_str("\n[shedding]\nenabled = false\n");
    }
    if !text.contains("[storage.metadata]") {
        let path = data.path().join("landfall.db");
        text.push_str(&format!(
            "\n[storage.metadata]\ntype = \"sqlite\"\npath = {path:?}\n"
        ));
    }
    let config =
        from_toml(&text, &Environment::default()).unwrap_or_else(|errors| panic!("{errors}"));
    let state = AppState::start(&config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let served = state.clone();
    let task = tokio::spawn(async move {
        serve(listener, served, std::future::pending())
            .await
            .unwrap();
    });
    let client = reqwest::Client::builder().build().unwrap();
    Landfall {
        address,
        client,
        state,
        task,
        _data: data,
    }
}

/// A provider table for an upstream.
pub fn provider(name: &str, base_url: &str, extra: &str) -> String {
    format!(
        "[providers.{name}]\ntype = \"openai\"\nbase_url = \"{base_url}\"\napi_key = \"k-{name}\"\n{extra}\n"
    )
}

impl Landfall {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub async fn chat(&self, body: Value) -> reqwest::Response {
        self.client
            .post(self.url("/v1/chat/completions"))
            .json(&body)
            .send()
            .await
            .unwrap()
    }
}

pub fn hello(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hello there"}]})
}

pub fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
}

/// The `data:` payloads of an SSE body.
pub fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}
