//! Graceful shutdown: a stream in flight when SIGTERM arrives is finished, not cut.

use std::process::{Command, Stdio};
use std::time::Duration;

use futures::StreamExt;
use landfall_testkit::{MockUpstream, Script};

use crate::BIN;

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_an_in_flight_stream_finish() {
    // Each chunk of the echo stream comes 150 ms after the previous one.
    let upstream = MockUpstream::start(Script::new().stream_delay_ms(150)).await;
    let directory = tempfile::tempdir().unwrap();
    let config = directory.path().join("landfall.toml");
    let port = crate::free_port();
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nshutdown_grace_ms = 10000\n\
             [auth]\nallow_anonymous = true\n[storage.metadata]\ntype = \"sqlite\"\npath = {:?}\n\
             [providers.mock]\ntype = \"openai\"\nbase_url = \"{}\"\n\
             [models.chat]\ntargets = [{{ provider = \"mock\" }}]\n",
            directory.path().join("landfall.db"),
            upstream.base_url()
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .env("LANDFALL__KNOWLEDGE__ENABLED", "false")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = crate::http_client().build().unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let mut ready = false;
    for _ in 0..200 {
        if client.get(format!("{url}/healthz")).send().await.is_ok() {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "landfall did not start");

    let response = client
        .post(format!("{url}/v1/chat/completions"))
        .json(&serde_json::json!({"model": "chat", "stream": true,
            "messages": [{"role": "user", "content": "one two three four five six"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));

    let terminated = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(terminated.success());
    let mut rest = Vec::new();
    while let Some(chunk) = body.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    let rest = String::from_utf8(rest).unwrap();
    assert!(rest.contains("six"), "{rest}");
    assert!(
        rest.ends_with("data: [DONE]\n\n"),
        "the stream was cut: {rest}"
    );

    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
}
