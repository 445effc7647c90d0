//! OpenTelemetry trace export: `landfall serve` sends the spans of a request to an OTLP/HTTP
//! collector (here a stand-in on 127.0.0.1 that decodes what it receives), flushes them when it
//! stops, and serves requests as usual when no collector is listening.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use landfall_testkit::{MockUpstream, Script};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use prost::Message as _;
use serde_json::Value;

use crate::BIN;

#[tokio::test(flavor = "multi_thread")]
async fn a_request_is_exported_as_one_trace_when_the_server_stops() {
    let collector = Collector::start().await;
    let upstream = MockUpstream::start(Script::new()).await;
    let directory = tempfile::tempdir().unwrap();
    let mut landfall = Landfall::start(directory.path(), &upstream, &collector.endpoint()).await;

    let response = landfall
        .chat()
        .header("x-request-id", "trace-test-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", landfall.log());
    // A caller that is tracing itself: the request joins its trace.
    let response = landfall
        .chat()
        .header("x-request-id", "trace-test-2")
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", landfall.log());
    let status = landfall.stop().await;
    assert!(status.success(), "{status}\n{}", landfall.log());

    // The batch processor exports every few seconds; stopping must have flushed the rest.
    let spans = collector.spans();
    assert!(
        !spans.is_empty(),
        "no span reached the collector\n{}",
        landfall.log()
    );
    let names: Vec<&str> = spans.iter().map(|span| span.name.as_str()).collect();
    for span in &spans {
        assert_eq!(span.service_name, "landfall", "{}", span.name);
    }
    let find = |name: &str| {
        spans
            .iter()
            .find(|span| span.name == name)
            .unwrap_or_else(|| panic!("no `{name}` span among {names:?}"))
    };
    let request_with_id = |id: &str| {
        spans
            .iter()
            .find(|span| {
                span.name == "request"
                    && span.attributes.get("request_id").map(String::as_str) == Some(id)
            })
            .unwrap_or_else(|| panic!("no `request` span of {id} among {spans:#?}"))
    };
    let continued = request_with_id("trace-test-2");
    assert_eq!(
        continued.trace_id,
        hex_bytes("0af7651916cd43dd8448eb211c80319c"),
        "{continued:?}"
    );
    assert_eq!(continued.parent_span_id, hex_bytes("b7ad6b7169203331"));
    let request = request_with_id("trace-test-1");
    assert!(
        request.parent_span_id.is_empty(),
        "`request` has a parent: {request:?}"
    );
    assert_eq!(
        request.attributes.get("request_id").map(String::as_str),
        Some("trace-test-1"),
        "{request:?}"
    );
    let attempt = find("upstream_attempt");
    assert!(
        attempt.attributes.contains_key("target"),
        "no `target` on {attempt:?}"
    );
    for name in ["auth", "admission", "upstream_attempt"] {
        for trace in [&request.trace_id, &continued.trace_id] {
            assert!(
                spans
                    .iter()
                    .any(|span| span.name == name && &span.trace_id == trace),
                "`{name}` is not in each request's trace; spans: {spans:#?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_are_served_promptly_when_the_collector_is_unreachable() {
    // A port that was just free: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let upstream = MockUpstream::start(Script::new()).await;
    let directory = tempfile::tempdir().unwrap();
    let mut landfall =
        Landfall::start(directory.path(), &upstream, &format!("http://{closed}")).await;

    for _ in 0..3 {
        let started = Instant::now();
        let response = landfall.chat().send().await.unwrap();
        assert_eq!(response.status(), 200, "{}", landfall.log());
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a request took {:?}",
            started.elapsed()
        );
    }
    // Stopping waits a bounded time for the collector, then exits cleanly.
    let started = Instant::now();
    let status = landfall.stop().await;
    assert!(status.success(), "{status}\n{}", landfall.log());
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "stopping took {:?}",
        started.elapsed()
    );
}

fn hex_bytes(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&text[at..at + 2], 16).unwrap())
        .collect()
}

// ---------------------------------------------------------------------------- the collector

/// One exported span, flattened.
#[derive(Debug)]
struct Span {
    name: String,
    trace_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    /// String, integer and boolean attributes, as text.
    attributes: HashMap<String, String>,
    /// The resource's `service.name`.
    service_name: String,
}

/// An OTLP/HTTP trace receiver on 127.0.0.1 that keeps every request body it is sent.
struct Collector {
    address: std::net::SocketAddr,
    bodies: Arc<Mutex<Vec<Bytes>>>,
}

impl Collector {
    async fn start() -> Self {
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&bodies);
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: Bytes| {
                let kept = Arc::clone(&kept);
                async move {
                    kept.lock().unwrap().push(body);
                    // An empty ExportTraceServiceResponse: everything accepted.
                    ([("content-type", "application/x-protobuf")], Bytes::new())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { address, bodies }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Every span received so far.
    fn spans(&self) -> Vec<Span> {
        let bodies = self.bodies.lock().unwrap();
        let mut spans = Vec::new();
        for body in bodies.iter() {
            let request = ExportTraceServiceRequest::decode(body.clone()).unwrap();
            for resource_spans in request.resource_spans {
                let service_name = resource_spans
                    .resource
                    .map(|resource| attributes(&resource.attributes))
                    .and_then(|mut attributes| attributes.remove("service.name"))
                    .unwrap_or_default();
                for scope_spans in resource_spans.scope_spans {
                    for span in scope_spans.spans {
                        spans.push(Span {
                            name: span.name,
                            trace_id: span.trace_id,
                            parent_span_id: span.parent_span_id,
                            attributes: attributes(&span.attributes),
                            service_name: service_name.clone(),
                        });
                    }
                }
            }
        }
        spans
    }
}

fn attributes(attributes: &[KeyValue]) -> HashMap<String, String> {
    attributes
        .iter()
        .filter_map(|attribute| {
            let value = match attribute.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(text) => text.clone(),
                any_value::Value::IntValue(number) => number.to_string(),
                any_value::Value::BoolValue(flag) => flag.to_string(),
                any_value::Value::DoubleValue(number) => number.to_string(),
                _ => return None,
            };
            Some((attribute.key.clone(), value))
        })
        .collect()
}

// ---------------------------------------------------------------------------- the server

/// `landfall serve` with one tenant, one key and model `chat` on the mock upstream; killed
/// when dropped.
struct Landfall {
    child: Option<Child>,
    url: String,
    key: String,
    log: PathBuf,
    client: reqwest::Client,
}

impl Landfall {
    async fn start(directory: &Path, upstream: &MockUpstream, otlp_endpoint: &str) -> Self {
        let config = directory.join("landfall.toml");
        let port = crate::free_port();
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\n\
                 [storage.metadata]\ntype = \"sqlite\"\npath = {:?}\n\
                 [telemetry]\notlp_endpoint = \"{otlp_endpoint}\"\n\
                 [providers.mock]\ntype = \"openai\"\nbase_url = \"{}\"\n\
                 [models.chat]\ntargets = [{{ provider = \"mock\" }}]\n",
                directory.join("landfall.db"),
                upstream.base_url()
            ),
        )
        .unwrap();
        cli(&config, &["tenants", "create", "--id", "traced"]);
        let created = cli(&config, &["keys", "create", "--tenant", "traced"]);
        let key = serde_json::from_str::<Value>(&created).unwrap()["secret"]
            .as_str()
            .unwrap_or_else(|| panic!("no secret in {created}"))
            .to_owned();

        let log = directory.join("landfall.log");
        let child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&config)
            .env("LANDFALL__KNOWLEDGE__ENABLED", "false")
            .env("LANDFALL_LOG", "info")
            .env_remove("LANDFALL_CONFIG")
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let landfall = Self {
            child: Some(child),
            url: format!("http://127.0.0.1:{port}"),
            key,
            log,
            client: crate::http_client().build().unwrap(),
        };
        for _ in 0..200 {
            let health = landfall.client.get(format!("{}/healthz", landfall.url));
            if health.send().await.is_ok() {
                return landfall;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("landfall did not start\n{}", landfall.log());
    }

    /// A one-message chat completion, ready to send.
    fn chat(&self) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}/v1/chat/completions", self.url))
            .bearer_auth(&self.key)
            .timeout(Duration::from_secs(10))
            .json(&serde_json::json!({"model": "chat",
                "messages": [{"role": "user", "content": "hello"}]}))
    }

    /// Sends SIGTERM and waits (at most 15 s) for the process to exit.
    async fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        let terminated = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(terminated.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                child.kill().unwrap();
                panic!("landfall did not stop after SIGTERM\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What the server has logged so far.
    fn log(&self) -> String {
        format!(
            "--- landfall's log:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        )
    }
}

impl Drop for Landfall {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `landfall ARGS --config CONFIG` and returns its stdout, failing on a non-zero exit.
fn cli(config: &Path, args: &[&str]) -> String {
    let output = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("LANDFALL_CONFIG")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "landfall {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}
