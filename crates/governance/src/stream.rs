//! Streams under governance: usage is read from the stream's usage chunk and settled when the
//! stream ends or is dropped; a stream that completes is kept for the response cache.

use std::sync::Arc;

use futures::StreamExt;
use landfall_providers::ChatStream;
use landfall_types::{ChatChunk, TokenPrice};

use crate::cache::{CacheKey, CachedReply};
use crate::ledger::Usage;
use crate::{Admission, Inner};

/// Passes `stream` through, settling `admission` once it is over.
pub(crate) fn govern(
    inner: Arc<Inner>,
    stream: ChatStream,
    admission: Admission,
    served: ServedStream,
    cache_key: Option<CacheKey>,
    on_end: OnEnd,
) -> ChatStream {
    let max_cached_bytes = inner
        .cache
        .as_ref()
        .map_or(0, |cache| cache.max_entry_bytes());
    let watch = Watch {
        inner,
        admission: Some(admission),
        served,
        on_end: Some(on_end),
        usage: None,
        output_chunks: 0,
        cache: cache_key.map(|key| Collected {
            key,
            chunks: Vec::new(),
            bytes: 0,
            max_bytes: max_cached_bytes,
        }),
    };
    futures::stream::unfold((stream, watch), |(mut stream, mut watch)| async move {
        let item = stream.next().await;
        match &item {
            Some(Ok(chunk)) => watch.observe(chunk),
            Some(Err(_)) => {
                watch.cache = None;
                watch.settle(StreamOutcome::Broken).await;
            }
            None => {
                watch.store_in_cache();
                watch.settle(StreamOutcome::Completed).await;
            }
        }
        item.map(|item| (item, (stream, watch)))
    })
    .boxed()
}

/// Who served a stream and what its prompt was estimated at.
#[derive(Debug, Clone)]
pub struct ServedStream {
    /// `provider/upstream-model`.
    pub target: String,
    pub price: Option<TokenPrice>,
    /// Settled when the stream ends without reporting its usage.
    pub prompt_estimate: u64,
}

/// How a governed stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamOutcome {
    /// The upstream finished it.
    Completed,
    /// It failed part-way.
    Broken,
    /// The client left before its end.
    Abandoned,
}

/// What a governed stream used, reported once when it ends.
#[derive(Debug, Clone, Copy)]
pub struct StreamEnd {
    /// As settled: the reported usage, or an estimate when the stream ended without one.
    pub usage: Usage,
    /// Whether the upstream reported the usage.
    pub usage_reported: bool,
    pub outcome: StreamOutcome,
}

type OnEnd = Box<dyn FnOnce(StreamEnd) + Send>;

struct Collected {
    key: CacheKey,
    chunks: Vec<ChatChunk>,
    bytes: u64,
    max_bytes: u64,
}

struct Watch {
    inner: Arc<Inner>,
    admission: Option<Admission>,
    served: ServedStream,
    on_end: Option<OnEnd>,
    usage: Option<landfall_types::Usage>,
    output_chunks: u64,
    cache: Option<Collected>,
}

impl Watch {
    fn observe(&mut self, chunk: &ChatChunk) {
        if let Some(usage) = &chunk.usage {
            self.usage = Some(usage.clone());
        }
        if chunk.has_output() {
            self.output_chunks += 1;
        }
        let Some(collected) = &mut self.cache else {
            return;
        };
        // Content plus a generous allowance for the chunk's JSON framing.
        let size = chunk
            .choices
            .iter()
            .filter_map(|choice| choice.delta.content.as_ref())
            .map(|content| content.len() as u64)
            .sum::<u64>()
            + 256;
        collected.bytes += size;
        if collected.bytes > collected.max_bytes {
            self.cache = None;
        } else {
            collected.chunks.push(chunk.clone());
        }
    }

    fn store_in_cache(&mut self) {
        let Some(collected) = self.cache.take() else {
            return;
        };
        let Some(cache) = self.inner.cache.clone() else {
            return;
        };
        let reply = CachedReply::Stream {
            chunks: collected.chunks,
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move { cache.store(&collected.key, &reply).await });
    }

    /// Settles at the end of the stream, before its last item reaches the client.
    async fn settle(&mut self, outcome: StreamOutcome) {
        let Some(admission) = self.admission.take() else {
            return;
        };
        let usage = self.usage();
        self.report(usage, outcome);
        admission.settle(&self.served.target, usage).await;
    }

    fn report(&mut self, usage: Usage, outcome: StreamOutcome) {
        if let Some(on_end) = self.on_end.take() {
            on_end(StreamEnd {
                usage,
                usage_reported: self.usage.is_some(),
                outcome,
            });
        }
    }

    /// The reported usage, or, for a stream that ended without it (abandoned or broken), the
    /// prompt estimate and one token per output chunk.
    fn usage(&self) -> Usage {
        match &self.usage {
            Some(usage) => Usage::priced(usage, self.served.price),
            None => {
                let estimated = landfall_types::Usage {
                    prompt_tokens: self.served.prompt_estimate,
                    completion_tokens: self.output_chunks,
                    total_tokens: self.served.prompt_estimate + self.output_chunks,
                    extra: landfall_types::Extra::new(),
                };
                tracing::debug!(target = %self.served.target, "stream ended without usage; settling an estimate");
                Usage::priced(&estimated, self.served.price)
            }
        }
    }
}

impl Drop for Watch {
    /// A stream dropped before its end (the client left) settles in the background.
    fn drop(&mut self) {
        let Some(admission) = self.admission.take() else {
            return;
        };
        let usage = self.usage();
        self.report(usage, StreamOutcome::Abandoned);
        let target = std::mem::take(&mut self.served.target);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { admission.settle(&target, usage).await });
        }
    }
}
