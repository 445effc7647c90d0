//! Streams: relay, usage, fallback before the first token, errors after it, cancellation.

use std::time::{Duration, Instant};

use futures::StreamExt;
use landfall_testkit::{MockUpstream, Reply, Script};
use serde_json::{Value, json};

use crate::harness::{FAST_ROUTING, header, provider, sse_data, start};

fn stream_request(model: &str, include_usage: bool) -> Value {
    let mut body = json!({"model": model, "stream": true,
        "messages": [{"role": "user", "content": "one two three four"}]});
    if include_usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

fn single(upstream: &MockUpstream) -> String {
    format!(
        "{}{FAST_ROUTING}[models.chat]\ntargets = [{{ provider = \"only\" }}]\n",
        provider("only", &upstream.base_url(), "")
    )
}

fn text_of(events: &[String]) -> String {
    events
        .iter()
        .filter(|data| *data != "[DONE]")
        .filter_map(|data| serde_json::from_str::<Value>(data).ok())
        .filter_map(|chunk| {
            chunk["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test]
async fn usage_is_always_requested_upstream_but_only_shown_when_asked() {
    let upstream = MockUpstream::start(Script::new()).await;
    let landfall = start(&single(&upstream)).await;

    let response = landfall.chat(stream_request("chat", false)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), "text/event-stream");
    let events = sse_data(&response.text().await.unwrap());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(text_of(&events), "echo: one two three four");
    assert!(
        events.iter().all(|data| !data.contains("\"usage\"")),
        "{events:?}"
    );
    assert_eq!(
        upstream.requests()[0].body["stream_options"]["include_usage"],
        true
    );

    let response = landfall.chat(stream_request("chat", true)).await;
    let events = sse_data(&response.text().await.unwrap());
    let usage_chunk: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"]["completion_tokens"], 5);
}

#[tokio::test]
async fn a_stream_that_fails_before_its_first_token_falls_back() {
    let role_only = r#"{"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#;
    let broken = Reply::Stream {
        events: vec![role_only.to_owned()],
        delay_ms: 0,
        done: false,
        cut: true,
    };
    let first = MockUpstream::start(Script::new().chat([broken, Reply::rate_limited(30)])).await;
    let second = MockUpstream::start(Script::new()).await;
    let config = format!(
        "{}{}[routing]\nretries_per_target = 0\n[models.chat]\ntargets = [{{ provider = \"first\" }}, {{ provider = \"second\", priority = 1 }}]\n",
        provider("first", &first.base_url(), ""),
        provider("second", &second.base_url(), ""),
    );
    let landfall = start(&config).await;
    for _ in 0..2 {
        let response = landfall.chat(stream_request("chat", false)).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "x-landfall-target"), "second/chat");
        assert_eq!(header(&response, "x-landfall-attempts"), "2");
        let events = sse_data(&response.text().await.unwrap());
        assert_eq!(text_of(&events), "echo: one two three four");
        // The held-back role chunk of the failed target is not replayed.
        let roles = events
            .iter()
            .filter(|data| data.contains("\"role\""))
            .count();
        assert_eq!(roles, 1);
    }
}

#[tokio::test]
async fn a_stream_that_breaks_after_tokens_ends_with_an_error_event() {
    let content = r#"{"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"partial"},"finish_reason":null}]}"#;
    let cut = Reply::Stream {
        events: vec![content.to_owned()],
        delay_ms: 0,
        done: false,
        cut: true,
    };
    let garbage = Reply::Stream {
        events: vec![content.to_owned(), "{not json".to_owned()],
        delay_ms: 0,
        done: true,
        cut: false,
    };
    let truncated = Reply::Stream {
        events: vec![content.to_owned()],
        delay_ms: 0,
        done: false,
        cut: false,
    };
    for reply in [cut, garbage, truncated] {
        let upstream = MockUpstream::start(Script::new().chat([reply])).await;
        let landfall = start(&single(&upstream)).await;
        let response = landfall.chat(stream_request("chat", false)).await;
        assert_eq!(response.status(), 200);
        let events = sse_data(&response.text().await.unwrap());
        assert_eq!(text_of(&events), "partial");
        let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
        assert_eq!(last["error"]["type"], "upstream_error", "{events:?}");
        assert!(!events.iter().any(|data| data == "[DONE]"));
    }
}

#[tokio::test]
async fn an_error_event_from_the_upstream_is_relayed_as_an_error() {
    let content =
        r#"{"id":"x","choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null}]}"#;
    let error = r#"{"error":{"message":"overloaded","type":"server_error"}}"#;
    let reply = Reply::Stream {
        events: vec![content.to_owned(), error.to_owned()],
        delay_ms: 0,
        done: true,
        cut: false,
    };
    let upstream = MockUpstream::start(Script::new().chat([reply])).await;
    let landfall = start(&single(&upstream)).await;
    let response = landfall.chat(stream_request("chat", false)).await;
    let events = sse_data(&response.text().await.unwrap());
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert!(last["error"].is_object(), "{events:?}");
}

#[tokio::test]
async fn chunks_are_relayed_as_they_arrive() {
    let upstream = MockUpstream::start(Script::new().stream_delay_ms(150)).await;
    let landfall = start(&single(&upstream)).await;
    let started = Instant::now();
    let response = landfall.chat(stream_request("chat", false)).await;
    let mut body = response.bytes_stream();
    let mut arrivals = Vec::new();
    while let Some(bytes) = body.next().await {
        let bytes = bytes.unwrap();
        if String::from_utf8_lossy(&bytes).contains("\"content\":\"") {
            arrivals.push(started.elapsed());
        }
    }
    assert!(arrivals.len() >= 4, "{arrivals:?}");
    // The first words arrive long before the stream is over.
    assert!(
        arrivals[arrivals.len() - 1] - arrivals[1] >= Duration::from_millis(300),
        "{arrivals:?}"
    );
}

#[tokio::test]
async fn a_client_that_disconnects_cancels_the_upstream_stream() {
    let upstream = MockUpstream::start(Script::new().stream_delay_ms(200)).await;
    let landfall = start(&single(&upstream)).await;
    let response = landfall.chat(stream_request("chat", false)).await;
    let mut body = response.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(!first.is_empty());
    drop(body);
    let deadline = Instant::now() + Duration::from_secs(3);
    while upstream.cancelled_streams() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(upstream.cancelled_streams(), 1);
}

#[tokio::test]
async fn stream_errors_before_start_map_to_statuses() {
    let upstream = MockUpstream::start(Script::new().chat([Reply::rate_limited(120)])).await;
    let landfall = start(&single(&upstream)).await;
    let response = landfall.chat(stream_request("chat", false)).await;
    assert_eq!(response.status(), 429);
    assert_eq!(header(&response, "content-type"), "application/json");
}

#[tokio::test]
async fn a_client_that_disconnects_cancels_a_pending_completion() {
    use tokio::io::AsyncReadExt;
    // An upstream that reads the request, never answers, and reports when its peer hangs up.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let upstream = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buffer = vec![0; 65536];
        let _ = socket.read(&mut buffer).await.unwrap();
        let started = Instant::now();
        loop {
            match socket.read(&mut buffer).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    });
    let config = format!(
        "{}[models.chat]\ntargets = [{{ provider = \"silent\" }}]\n",
        provider("silent", &format!("http://{address}/v1"), "")
    );
    let landfall = start(&config).await;
    let request =
        landfall.chat(json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]}));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), request)
            .await
            .is_err()
    );
    let closed_after = tokio::time::timeout(Duration::from_secs(3), upstream)
        .await
        .unwrap()
        .unwrap();
    assert!(closed_after < Duration::from_secs(2), "{closed_after:?}");
}

#[tokio::test]
async fn a_stream_that_goes_silent_ends_with_an_error_after_the_idle_timeout() {
    let content =
        r#"{"id":"x","choices":[{"index":0,"delta":{"content":"first"},"finish_reason":null}]}"#;
    let stalled = Reply::Stream {
        events: vec![content.to_owned(), content.to_owned()],
        delay_ms: 1_500,
        done: true,
        cut: false,
    };
    let upstream = MockUpstream::start(Script::new().chat([stalled])).await;
    let config = format!(
        "{}[models.chat]\ntargets = [{{ provider = \"only\" }}]\n",
        provider(
            "only",
            &upstream.base_url(),
            "first_byte_timeout_ms = 5000\nstream_idle_timeout_ms = 300"
        )
    );
    let landfall = start(&config).await;
    let started = Instant::now();
    let response = landfall.chat(stream_request("chat", false)).await;
    let events = sse_data(&response.text().await.unwrap());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["type"], "upstream_error", "{events:?}");
}

#[tokio::test]
async fn a_body_that_stalls_is_cut_off_by_the_total_timeout() {
    // Headers arrive at once, the body trickles: the whole-response timeout ends the wait.
    let trickle = Reply::Stream {
        events: vec!["{".to_owned(), "}".to_owned()],
        delay_ms: 1_500,
        done: false,
        cut: false,
    };
    let upstream = MockUpstream::start(Script::new().chat([trickle])).await;
    let config = format!(
        "{}[routing]\nretries_per_target = 0\n[models.chat]\ntargets = [{{ provider = \"only\" }}]\n",
        provider("only", &upstream.base_url(), "timeout_ms = 300")
    );
    let landfall = start(&config).await;
    let started = Instant::now();
    let response = landfall
        .chat(json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(response.status(), 504);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}
