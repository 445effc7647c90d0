//! A server-sent events reader over a response body, with timeouts between events.

use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::time::timeout;

use crate::error::{ProviderError, TimeoutPhase};
use crate::http::{ByteResult, body_error, duration_ms};

/// One event: its `event:` name, if any, and its `data:` lines joined by `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    pub(crate) event: Option<String>,
    pub(crate) data: String,
}

struct Reader<S> {
    bytes: Pin<Box<S>>,
    buffer: Vec<u8>,
    event: Option<String>,
    data: Option<String>,
    received_any: bool,
    finished: bool,
    first_byte_timeout: Duration,
    idle_timeout: Duration,
}

/// Parses `bytes` into events. The first event must arrive within `first_byte_timeout`, each
/// later one within `idle_timeout`; a timeout or a broken body ends the stream with an error.
pub(crate) fn events<S>(
    bytes: S,
    first_byte_timeout: Duration,
    idle_timeout: Duration,
) -> impl Stream<Item = Result<SseEvent, ProviderError>> + Send + 'static
where
    S: Stream<Item = ByteResult> + Send + 'static,
{
    let reader = Reader {
        bytes: Box::pin(bytes),
        buffer: Vec::new(),
        event: None,
        data: None,
        received_any: false,
        finished: false,
        first_byte_timeout,
        idle_timeout,
    };
    futures::stream::unfold(reader, |mut reader| async move {
        let item = reader.next_event().await?;
        Some((item, reader))
    })
}

impl<S: Stream<Item = ByteResult>> Reader<S> {
    async fn next_event(&mut self) -> Option<Result<SseEvent, ProviderError>> {
        loop {
            if let Some(event) = self.take_buffered_event() {
                self.received_any = true;
                return Some(Ok(event));
            }
            if self.finished {
                return None;
            }
            let (limit, phase) = if self.received_any {
                (self.idle_timeout, TimeoutPhase::StreamIdle)
            } else {
                (self.first_byte_timeout, TimeoutPhase::FirstByte)
            };
            match timeout(limit, self.bytes.next()).await {
                Err(_) => {
                    self.finished = true;
                    return Some(Err(ProviderError::Timeout {
                        phase,
                        timeout_ms: duration_ms(limit),
                    }));
                }
                Ok(Some(Ok(bytes))) => self.buffer.extend_from_slice(&bytes),
                Ok(Some(Err(error))) => {
                    self.finished = true;
                    return Some(Err(body_error(&error)));
                }
                Ok(None) => {
                    self.finished = true;
                    // A last event without its blank line still counts; a partial line does not.
                    return self.take_pending().map(Ok);
                }
            }
        }
    }

    /// Consumes complete lines from the buffer until an event is complete.
    fn take_buffered_event(&mut self) -> Option<SseEvent> {
        // Taken out so lines can be read in place while fields are stored.
        let mut buffer = std::mem::take(&mut self.buffer);
        let mut consumed = 0;
        let mut dispatched = None;
        while let Some(offset) = buffer[consumed..].iter().position(|&byte| byte == b'\n') {
            let line = &buffer[consumed..consumed + offset];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            consumed += offset + 1;
            if line.is_empty() {
                if let Some(event) = self.take_pending() {
                    dispatched = Some(event);
                    break;
                }
                continue;
            }
            self.field(&String::from_utf8_lossy(line));
        }
        buffer.drain(..consumed);
        self.buffer = buffer;
        dispatched
    }

    fn field(&mut self, line: &str) {
        if line.starts_with(':') {
            return;
        }
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match name {
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            "event" => self.event = Some(value.to_owned()),
            _ => {}
        }
    }

    fn take_pending(&mut self) -> Option<SseEvent> {
        let event = self.event.take();
        self.data.take().map(|data| SseEvent { event, data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    async fn parse(parts: &[&'static str]) -> Vec<Result<SseEvent, ProviderError>> {
        let parts: Vec<ByteResult> = parts
            .iter()
            .copied()
            .map(|part| Ok(Bytes::from_static(part.as_bytes())))
            .collect();
        let bytes = futures::stream::iter(parts);
        events(bytes, Duration::from_secs(1), Duration::from_secs(1))
            .collect()
            .await
    }

    fn data(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: event.map(str::to_owned),
            data: data.to_owned(),
        }
    }

    #[tokio::test]
    async fn events_split_across_reads() {
        let events = parse(&["data: {\"a\"", ":1}\n", "\ndata: [DONE]\n\n"]).await;
        let events: Vec<SseEvent> = events.into_iter().map(Result::unwrap).collect();
        assert_eq!(events, vec![data(None, "{\"a\":1}"), data(None, "[DONE]")]);
    }

    #[tokio::test]
    async fn named_events_crlf_comments_and_multiline_data() {
        let events =
            parse(&[": ping\r\n\r\nevent: message_start\r\ndata: a\r\ndata: b\r\n\r\n"]).await;
        let events: Vec<SseEvent> = events.into_iter().map(Result::unwrap).collect();
        assert_eq!(events, vec![data(Some("message_start"), "a\nb")]);
    }

    #[tokio::test]
    async fn last_event_without_blank_line_counts_but_partial_line_does_not() {
        let events = parse(&["data: one\n"]).await;
        assert_eq!(events.len(), 1);
        let events = parse(&["data: one\n\ndata: {\"trunc"]).await;
        assert_eq!(events.len(), 1);
    }

    #[tokio::test]
    async fn silence_times_out() {
        let bytes = futures::stream::pending::<ByteResult>();
        let mut stream = Box::pin(events(
            bytes,
            Duration::from_millis(20),
            Duration::from_millis(20),
        ));
        let error = stream.next().await.unwrap().unwrap_err();
        assert!(matches!(
            error,
            ProviderError::Timeout {
                phase: TimeoutPhase::FirstByte,
                ..
            }
        ));
        assert!(stream.next().await.is_none());
    }
}
