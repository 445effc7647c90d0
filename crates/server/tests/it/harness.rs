//! Starts `landfall` on 127.0.0.1 with a generated configuration.

use std::net::SocketAddr;

use landfall_config::{Environment, from_toml};
use landfall_server::{AppState, serve};
use serde_json::{Value, json};

pub struct Landfall {
    pub address: SocketAddr,
    pub client: reqwest::Client,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Landfall {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Fast retry settings, so tests of retries take milliseconds.
pub const FAST_ROUTING: &str = "[routing]\nbackoff_initial_ms = 5\nbackoff_max_ms = 20\n";

pub async fn start(config: &str) -> Landfall {
    let config =
        from_toml(config, &Environment::default()).unwrap_or_else(|errors| panic!("{errors}"));
    let state = AppState::new(&config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        serve(listener, state, std::future::pending())
            .await
            .unwrap();
    });
    let client = reqwest::Client::builder().build().unwrap();
    Landfall {
        address,
        client,
        task,
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
