//! A minimal HTTP/1.1 client over a raw socket, so tests see exactly what went over the wire
//! (including bodies that end early).

use std::net::SocketAddr;

use anyhow::{Context as _, bail};
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Whether the body ended properly (full content length, or the terminating chunk).
    pub complete: bool,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_slice(&self.body).context("response body is JSON")
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The SSE events of the body, each as its raw text without the blank line.
    pub fn events(&self) -> Vec<String> {
        self.text()
            .split("\n\n")
            .filter(|event| !event.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// The `data:` payload of each event.
    pub fn data(&self) -> Vec<String> {
        self.events()
            .iter()
            .filter_map(|event| {
                event
                    .lines()
                    .find_map(|line| line.strip_prefix("data: "))
                    .map(str::to_owned)
            })
            .collect()
    }
}

/// The bytes of a request with `Connection: close`.
pub fn request_bytes(method: &str, path: &str, body: Option<&Value>) -> Vec<u8> {
    let body = body.map(Value::to_string).unwrap_or_default();
    format!(
        "{method} {path} HTTP/1.1\r\nhost: mock\r\nauthorization: Bearer sk-test\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

pub async fn post(addr: SocketAddr, path: &str, body: &Value) -> anyhow::Result<HttpResponse> {
    send(addr, "POST", path, Some(body)).await
}

pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<HttpResponse> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(&request_bytes(method, path, body)).await?;
    let mut raw = Vec::new();
    // A reset connection is what a cut stream looks like: keep what arrived.
    let _ = stream.read_to_end(&mut raw).await;
    parse(&raw)
}

fn parse(raw: &[u8]) -> anyhow::Result<HttpResponse> {
    let Some(head_end) = raw.windows(4).position(|window| window == b"\r\n\r\n") else {
        bail!("no response head in {:?}", String::from_utf8_lossy(raw));
    };
    let head = std::str::from_utf8(&raw[..head_end])?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().context("status line")?;
    let status = status_line
        .split(' ')
        .nth(1)
        .context("status code")?
        .parse()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let rest = &raw[head_end + 4..];
    let mut response = HttpResponse {
        status,
        headers,
        body: Vec::new(),
        complete: false,
    };
    if response.header("transfer-encoding") == Some("chunked") {
        (response.body, response.complete) = dechunk(rest);
    } else {
        let length: usize = response
            .header("content-length")
            .context("content-length")?
            .parse()?;
        response.complete = rest.len() == length;
        response.body = rest.to_vec();
    }
    Ok(response)
}

/// Decodes a chunked body; `complete` is whether the terminating zero-size chunk arrived.
fn dechunk(mut rest: &[u8]) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = rest.windows(2).position(|window| window == b"\r\n") else {
            return (body, false);
        };
        let Ok(size) = std::str::from_utf8(&rest[..line_end])
            .map_err(anyhow::Error::from)
            .and_then(|size| Ok(usize::from_str_radix(size.trim(), 16)?))
        else {
            return (body, false);
        };
        if size == 0 {
            return (body, true);
        }
        let data_start = line_end + 2;
        let Some(data) = rest.get(data_start..data_start + size) else {
            body.extend_from_slice(&rest[data_start.min(rest.len())..]);
            return (body, false);
        };
        body.extend_from_slice(data);
        rest = rest.get(data_start + size + 2..).unwrap_or_default();
    }
}

/// Standard base64 decoding, to check embeddings.
pub fn base64_decode(text: &str) -> anyhow::Result<Vec<u8>> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sextets: Vec<u32> = text
        .bytes()
        .filter(|&byte| byte != b'=')
        .map(|byte| {
            let position = ALPHABET.iter().position(|&letter| letter == byte);
            position
                .map(|position| position as u32)
                .context("base64 letter")
        })
        .collect::<anyhow::Result<_>>()?;
    let mut bytes = Vec::new();
    for group in sextets.chunks(4) {
        let value = group
            .iter()
            .enumerate()
            .fold(0u32, |acc, (index, &sextet)| {
                acc | sextet << (18 - 6 * index)
            });
        for index in 0..group.len() - 1 {
            bytes.push((value >> (16 - 8 * index)) as u8);
        }
    }
    Ok(bytes)
}
