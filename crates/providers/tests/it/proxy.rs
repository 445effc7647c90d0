//! Upstream calls through an HTTP `CONNECT` proxy (`proxy_url`).

use std::sync::{Arc, Mutex};

use landfall_config::{HttpSettings, ProviderConfig, ProviderKind, Secret};
use landfall_providers::ProviderError;
use landfall_testkit::{MockUpstream, Script};
use landfall_types::ChatRequest;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A minimal CONNECT proxy: records each request head, then relays bytes both ways.
async fn start_proxy() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&heads);
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let target = head
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_owned();
                seen.lock().unwrap().push(head);
                let Ok(mut upstream) = TcpStream::connect(target).await else {
                    let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                    return;
                };
                client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (format!("http://proxy-user:p%40ss@{address}"), heads)
}

fn chat_request() -> ChatRequest {
    serde_json::from_value(
        json!({"model": "m", "messages": [{"role": "user", "content": "via proxy"}]}),
    )
    .unwrap()
}

fn provider(base_url: String, proxy_url: &str) -> landfall_providers::Provider {
    landfall_providers::build(
        "test",
        &ProviderConfig {
            http: HttpSettings {
                base_url,
                proxy_url: Some(Secret::new(proxy_url)),
                ..HttpSettings::default()
            },
            kind: ProviderKind::Openai {},
        },
        &landfall_providers::LocalModels::default(),
    )
    .unwrap()
}

#[tokio::test]
async fn requests_are_tunnelled_through_the_proxy_with_its_credentials() {
    let upstream = MockUpstream::start(Script::new()).await;
    let (proxy_url, heads) = start_proxy().await;
    let provider = provider(upstream.base_url(), &proxy_url);
    let response = provider.chat.chat(&chat_request(), "m").await.unwrap();
    assert_eq!(
        response.choices[0].message.text_content(),
        "echo: via proxy"
    );
    let heads = heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 1);
    assert!(
        heads[0].starts_with(&format!("CONNECT {} HTTP/1.1", upstream.addr())),
        "{}",
        heads[0]
    );
    // "proxy-user:p@ss", percent-decoded from the URL.
    assert!(
        heads[0].to_lowercase().contains(
            "proxy-authorization: basic cHJveHktdXNlcjpwQHNz"
                .to_lowercase()
                .as_str()
        ),
        "{}",
        heads[0]
    );
}

#[tokio::test]
async fn an_unreachable_proxy_is_a_connection_error() {
    let upstream = MockUpstream::start(Script::new()).await;
    let provider = provider(upstream.base_url(), "http://127.0.0.1:1");
    let error = provider.chat.chat(&chat_request(), "m").await.unwrap_err();
    assert!(matches!(error, ProviderError::Connection { .. }), "{error}");
    assert_eq!(upstream.hits("/v1/chat/completions"), 0);
}
