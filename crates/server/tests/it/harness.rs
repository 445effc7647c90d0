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
    if !text.contains("[knowledge]") {
        let index = data.path().join("index");
        text.push_str(&format!("\n[knowledge]\nindex_dir = {index:?}\n"));
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
    let client = http_client().build().unwrap();
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

    /// `method path` with `key` as the bearer (none when empty): the status and the JSON body
    /// (null if none).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.client.request(method, self.url(path));
        if !key.is_empty() {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
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

/// The stores a test server runs on: embedded (SQLite + in-process counters and cache) or
/// shared (PostgreSQL in a fresh schema + Redis under a fresh prefix), which several servers in
/// one test can share as replicas would.
#[derive(Clone)]
pub struct Backends {
    pub store: std::sync::Arc<dyn landfall_storage::Store>,
    pub limiter: std::sync::Arc<dyn landfall_kv::Limiter>,
    pub cache: std::sync::Arc<dyn landfall_kv::ResponseCache>,
    pub postgres: Option<std::sync::Arc<landfall_storage::PostgresStore>>,
    /// Keeps the SQLite file's directory alive as long as the backends.
    pub _data: Option<std::sync::Arc<tempfile::TempDir>>,
}

pub const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

fn random_suffix() -> String {
    use rand::Rng;
    format!("{:016x}", rand::rng().random::<u64>())
}

impl Backends {
    pub async fn embedded() -> Backends {
        let data = tempfile::tempdir().unwrap();
        let store = landfall_storage::SqliteStore::open(&data.path().join("landfall.db"))
            .await
            .unwrap();
        Backends {
            store: std::sync::Arc::new(store),
            limiter: std::sync::Arc::new(landfall_kv::MemoryLimiter::new()),
            cache: std::sync::Arc::new(landfall_kv::MemoryCache::new(64 << 20)),
            postgres: None,
            _data: Some(std::sync::Arc::new(data)),
        }
    }

    /// PostgreSQL and Redis at `LANDFALL_TEST_POSTGRES_URL` / `LANDFALL_TEST_REDIS_URL` (the
    /// local defaults otherwise). `None`, with the reason printed, only when both skip variables
    /// say so; an unreachable server otherwise fails the test.
    #[expect(clippy::print_stderr, reason = "a skipped test says why")]
    pub async fn shared() -> Option<Backends> {
        if std::env::var("LANDFALL_TEST_SKIP_POSTGRES").is_ok_and(|value| value == "1")
            || std::env::var("LANDFALL_TEST_SKIP_REDIS").is_ok_and(|value| value == "1")
        {
            eprintln!("skipped: LANDFALL_TEST_SKIP_POSTGRES or LANDFALL_TEST_SKIP_REDIS is set");
            return None;
        }
        let postgres_url =
            std::env::var("LANDFALL_TEST_POSTGRES_URL").unwrap_or_else(|_| POSTGRES_URL.into());
        let redis_url =
            std::env::var("LANDFALL_TEST_REDIS_URL").unwrap_or_else(|_| REDIS_URL.into());
        let suffix = random_suffix();
        let store = landfall_storage::PostgresStore::connect_in_schema(
            &postgres_url,
            8,
            &format!("landfall_server_{suffix}"),
        )
        .await
        .unwrap_or_else(|error| panic!("PostgreSQL at {postgres_url}: {error}"));
        let settings = landfall_kv::RedisSettings {
            url: redis_url.clone(),
            prefix: format!("landfall-test-{suffix}:"),
            ..landfall_kv::RedisSettings::default()
        };
        let limiter = landfall_kv::RedisLimiter::connect(&settings)
            .await
            .unwrap_or_else(|error| panic!("Redis at {redis_url}: {error}"));
        let cache = landfall_kv::RedisCache::connect(&settings).await.unwrap();
        let store = std::sync::Arc::new(store);
        Some(Backends {
            store: store.clone(),
            limiter: std::sync::Arc::new(limiter),
            cache: std::sync::Arc::new(cache),
            postgres: Some(store),
            _data: None,
        })
    }

    /// Drops the test's PostgreSQL schema (left in place when a test fails, for inspection).
    pub async fn cleanup(&self) {
        if let Some(postgres) = &self.postgres {
            postgres.drop_schema().await.unwrap();
        }
    }
}

/// Starts Landfall on `config` over `backends`, with anonymous requests refused and shedding
/// off unless the config says otherwise.
pub async fn start_on(config: &str, backends: &Backends) -> Landfall {
    let mut text = config.to_owned();
    if !text.contains("[shedding]") {
        text.push_str("\n[shedding]\nenabled = false\n");
    }
    let config =
        from_toml(&text, &Environment::default()).unwrap_or_else(|errors| panic!("{errors}"));
    let governance = landfall_governance::Governance::with_backends(
        &config,
        backends.store.clone(),
        backends.limiter.clone(),
        backends.cache.clone(),
    );
    let state = AppState::new(&config, governance, backends.store.clone()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let served = state.clone();
    let task = tokio::spawn(async move {
        serve(listener, served, std::future::pending())
            .await
            .unwrap();
    });
    Landfall {
        address,
        client: http_client().build().unwrap(),
        state,
        task,
        _data: tempfile::tempdir().unwrap(),
    }
}

/// An HTTP client for the tests. Landfall's tools build reqwest with rustls but no
/// built-in crypto provider (the whole project uses ring), so a client built here needs
/// ring installed as the process default first.
pub(crate) fn http_client() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}
