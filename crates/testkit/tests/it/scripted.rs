//! Scripted replies: queues, errors, broken streams, hangs and disconnects.

use std::time::{Duration, Instant};

use landfall_testkit::{MockUpstream, Reply, Script};
use serde_json::json;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

use crate::client::{post, request_bytes};

const CHAT: &str = "/v1/chat/completions";

fn chat_request() -> serde_json::Value {
    json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn queue_is_consumed_in_order_then_default() -> anyhow::Result<()> {
    let upstream = MockUpstream::start(Script::new().chat([
        Reply::rate_limited(7),
        Reply::context_too_long(),
        Reply::chat_text("scripted words"),
    ]))
    .await;
    let first = post(upstream.addr(), CHAT, &chat_request()).await?;
    assert_eq!(first.status, 429);
    assert_eq!(first.header("retry-after"), Some("7"));
    assert_eq!(first.json()?["error"]["code"], "rate_limit_exceeded");

    let second = post(upstream.addr(), CHAT, &chat_request()).await?;
    assert_eq!(second.status, 400);
    let error = &second.json()?["error"];
    assert_eq!(error["code"], "context_length_exceeded");
    assert_eq!(
        error["message"],
        "This model's maximum context length is 4096 tokens. However, your messages resulted in \
         5000 tokens."
    );

    let third = post(upstream.addr(), CHAT, &chat_request()).await?.json()?;
    assert_eq!(third["choices"][0]["message"]["content"], "scripted words");
    assert_eq!(third["usage"]["completion_tokens"], 2);

    let fourth = post(upstream.addr(), CHAT, &chat_request()).await?.json()?;
    assert_eq!(fourth["choices"][0]["message"]["content"], "echo: hi");
    assert_eq!(upstream.hits(CHAT), 4);
    Ok(())
}

#[tokio::test]
async fn status_raw_and_delay_replies() -> anyhow::Result<()> {
    let upstream = MockUpstream::start(Script::new().chat([
        Reply::status(503, "overloaded"),
        Reply::Raw {
            status: 200,
            content_type: "text/html".to_owned(),
            body: "<html>oops".to_owned(),
        },
        Reply::Default.delayed(100),
    ]))
    .await;
    let unavailable = post(upstream.addr(), CHAT, &chat_request()).await?;
    assert_eq!(unavailable.status, 503);
    assert_eq!(
        unavailable.json()?,
        json!({"error": {"message": "overloaded", "type": "server_error", "param": null, "code": null}})
    );
    let raw = post(upstream.addr(), CHAT, &chat_request()).await?;
    assert_eq!(raw.header("content-type"), Some("text/html"));
    assert_eq!(raw.text(), "<html>oops");
    let started = Instant::now();
    let delayed = post(upstream.addr(), CHAT, &chat_request()).await?;
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_eq!(delayed.status, 200);
    Ok(())
}

#[tokio::test]
async fn scripted_stream_writes_events_and_done() -> anyhow::Result<()> {
    let upstream = MockUpstream::start(Script::new().chat([Reply::Stream {
        events: vec![r#"{"a":1}"#.to_owned(), "event: ping\ndata: {}".to_owned()],
        delay_ms: 0,
        done: true,
        cut: false,
    }]))
    .await;
    let response = post(upstream.addr(), CHAT, &chat_request()).await?;
    assert!(response.complete);
    assert_eq!(
        response.text(),
        "data: {\"a\":1}\n\nevent: ping\ndata: {}\n\ndata: [DONE]\n\n"
    );
    Ok(())
}

#[tokio::test]
async fn cut_stream_leaves_the_body_incomplete() -> anyhow::Result<()> {
    let upstream = MockUpstream::start(Script::new().chat([Reply::Stream {
        events: vec![r#"{"partial":true}"#.to_owned()],
        delay_ms: 0,
        done: false,
        cut: true,
    }]))
    .await;
    let response = post(upstream.addr(), CHAT, &chat_request()).await?;
    assert_eq!(response.status, 200);
    assert!(!response.complete, "no terminating chunk after a cut");
    assert_eq!(response.text(), "data: {\"partial\":true}\n\n");
    assert_eq!(
        upstream.cancelled_streams(),
        0,
        "a scripted cut is not a client disconnect"
    );
    Ok(())
}

#[tokio::test]
async fn hang_never_answers() -> anyhow::Result<()> {
    let upstream = MockUpstream::start(Script::new().chat([Reply::Hang])).await;
    let pending = tokio::time::timeout(
        Duration::from_millis(300),
        post(upstream.addr(), CHAT, &chat_request()),
    )
    .await;
    assert!(pending.is_err(), "a hanging upstream must not answer");
    assert_eq!(upstream.hits(CHAT), 1, "recorded before answering");
    let next = post(upstream.addr(), CHAT, &chat_request()).await?;
    assert_eq!(next.status, 200, "only the scripted request hangs");
    Ok(())
}

#[tokio::test]
async fn client_disconnect_counts_as_cancelled_stream() -> anyhow::Result<()> {
    let upstream = MockUpstream::start(Script::new().stream_delay_ms(30)).await;
    let request = json!({"model": "m", "stream": true,
        "messages": [{"role": "user", "content": "one two three four five six seven eight"}]});
    let mut stream = TcpStream::connect(upstream.addr()).await?;
    stream
        .write_all(&request_bytes("POST", CHAT, Some(&request)))
        .await?;
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&received).contains("data: ") {
        let read = stream.read(&mut buffer).await?;
        anyhow::ensure!(read > 0, "stream ended before the first event");
        received.extend_from_slice(&buffer[..read]);
    }
    assert_eq!(upstream.cancelled_streams(), 0);
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(2);
    while upstream.cancelled_streams() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(upstream.cancelled_streams(), 1);

    // A stream read to the end is not counted.
    post(upstream.addr(), CHAT, &request).await?;
    assert_eq!(upstream.cancelled_streams(), 1);
    Ok(())
}

#[tokio::test]
async fn recording_can_be_disabled() -> anyhow::Result<()> {
    let upstream = MockUpstream::start(Script::new().record(false)).await;
    post(upstream.addr(), CHAT, &chat_request()).await?;
    assert!(upstream.requests().is_empty());
    assert_eq!(upstream.hits(CHAT), 1, "known routes are counted anyway");
    assert!(upstream.base_url().ends_with("/v1"));
    Ok(())
}

#[tokio::test]
async fn drop_shuts_the_server_down() -> anyhow::Result<()> {
    let upstream = MockUpstream::start(Script::new()).await;
    let addr = upstream.addr();
    drop(upstream);
    // The abort lands when the runtime next polls the server task.
    let deadline = Instant::now() + Duration::from_secs(1);
    while TcpStream::connect(addr).await.is_ok() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(TcpStream::connect(addr).await.is_err());
    Ok(())
}
