//! Response bodies: a whole buffer, or a paced event stream that notices when it is dropped early.

use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// Body of every mock response.
pub(crate) enum MockBody {
    Full(Option<Bytes>),
    Events(Box<EventStream>),
}

impl MockBody {
    pub(crate) fn full(bytes: impl Into<Bytes>) -> Self {
        MockBody::Full(Some(bytes.into()))
    }
}

impl http_body::Body for MockBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            MockBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            MockBody::Events(events) => events.poll_next(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            MockBody::Full(bytes) => bytes.is_none(),
            MockBody::Events(events) => events.done,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            MockBody::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            MockBody::Full(None) => SizeHint::with_exact(0),
            MockBody::Events(_) => SizeHint::default(),
        }
    }
}

/// How an event stream ends once every event is written.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamEnd {
    Clean,
    /// Fail the body so the server aborts the connection mid-response.
    Cut,
}

/// SSE events laid out in one buffer, sent one frame per event.
///
/// Counts itself in `cancelled` if dropped before its last event was handed to the server, which
/// is how a client disconnect shows up.
pub(crate) struct EventStream {
    buffer: Bytes,
    /// Exclusive end offset of each event in `buffer`.
    event_ends: Vec<usize>,
    next_event: usize,
    delay: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    end: StreamEnd,
    /// Whether a cut stream already gave the server a chance to flush its events.
    cut_flushed: bool,
    done: bool,
    cancelled: Arc<AtomicUsize>,
}

impl EventStream {
    pub(crate) fn new(
        events: EventBuffer,
        delay_ms: u64,
        end: StreamEnd,
        cancelled: Arc<AtomicUsize>,
    ) -> Self {
        Self {
            buffer: Bytes::from(events.buffer),
            event_ends: events.event_ends,
            next_event: 0,
            delay: Duration::from_millis(delay_ms),
            sleep: None,
            end,
            cut_flushed: false,
            done: false,
            cancelled,
        }
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let Some(&event_end) = self.event_ends.get(self.next_event) else {
            if self.end == StreamEnd::Cut && !self.cut_flushed {
                // Pending once so the server flushes the events before the error aborts the
                // connection; failing straight away would drop them unsent.
                self.cut_flushed = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            self.done = true;
            return Poll::Ready(match self.end {
                StreamEnd::Clean => None,
                StreamEnd::Cut => Some(Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "scripted stream cut",
                ))),
            });
        };
        if !self.delay.is_zero() {
            let deadline = Instant::now() + self.delay;
            let sleep = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // The next event gets a fresh delay.
            self.sleep = None;
        }
        let start = match self.next_event {
            0 => 0,
            index => self.event_ends[index - 1],
        };
        self.next_event += 1;
        if self.next_event == self.event_ends.len() && self.end == StreamEnd::Clean {
            self.done = true;
        }
        Poll::Ready(Some(Ok(Frame::data(self.buffer.slice(start..event_end)))))
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        if !self.done {
            self.cancelled.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Builder for the events of a stream, written back to back into one allocation.
#[derive(Default)]
pub(crate) struct EventBuffer {
    pub(crate) buffer: Vec<u8>,
    event_ends: Vec<usize>,
}

impl EventBuffer {
    pub(crate) fn with_capacity(bytes: usize, events: usize) -> Self {
        Self {
            buffer: Vec::with_capacity(bytes),
            event_ends: Vec::with_capacity(events),
        }
    }

    /// Marks the end of the event just written to `buffer`.
    pub(crate) fn end_event(&mut self) {
        self.event_ends.push(self.buffer.len());
    }

    /// Writes `data: {data}\n\n` as one event.
    pub(crate) fn push_data(&mut self, data: &str) {
        self.buffer.extend_from_slice(b"data: ");
        self.buffer.extend_from_slice(data.as_bytes());
        self.buffer.extend_from_slice(b"\n\n");
        self.end_event();
    }

    /// Writes `text` followed by a blank line as one event.
    pub(crate) fn push_raw(&mut self, text: &str) {
        self.buffer.extend_from_slice(text.as_bytes());
        self.buffer.extend_from_slice(b"\n\n");
        self.end_event();
    }

    /// Writes `data: <json>\n\n` as one event.
    pub(crate) fn push_json(&mut self, value: &impl serde::Serialize) {
        self.buffer.extend_from_slice(b"data: ");
        self.write_json(value);
        self.buffer.extend_from_slice(b"\n\n");
        self.end_event();
    }

    /// Writes `event: {name}\ndata: <json>\n\n` as one event (Anthropic style).
    pub(crate) fn push_named(&mut self, name: &str, value: &impl serde::Serialize) {
        self.buffer.extend_from_slice(b"event: ");
        self.buffer.extend_from_slice(name.as_bytes());
        self.buffer.extend_from_slice(b"\n");
        self.push_json(value);
    }

    fn write_json(&mut self, value: &impl serde::Serialize) {
        // Serializing our own plain structs and `Value`s into a Vec cannot fail; an error would
        // only truncate this one event, which a test would notice.
        let _ = serde_json::to_writer(&mut self.buffer, value);
    }
}
