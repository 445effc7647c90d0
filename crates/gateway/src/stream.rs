//! Streams through the gateway: holding back the chunks before the first real output so a
//! stream that fails early can still fall back, and noting the usage of every stream.

use futures::StreamExt;
use landfall_providers::{ChatStream, ProviderError};
use landfall_types::{ChatChunk, Usage};

/// Reads `stream` until its first chunk with output. An error before that is returned (so the
/// caller can fall back); after it, the held chunks are replayed ahead of the rest.
pub(crate) async fn until_first_output(
    mut stream: ChatStream,
) -> Result<ChatStream, ProviderError> {
    let mut held: Vec<ChatChunk> = Vec::new();
    while let Some(item) = stream.next().await {
        let chunk = item?;
        let has_output = chunk.has_output();
        held.push(chunk);
        if has_output {
            break;
        }
    }
    Ok(futures::stream::iter(held.into_iter().map(Ok))
        .chain(stream)
        .boxed())
}

/// Keeps `guard` (a target's concurrency slot) alive as long as the stream.
pub(crate) fn holding<G: Send + 'static>(stream: ChatStream, guard: Option<G>) -> ChatStream {
    match guard {
        None => stream,
        Some(guard) => stream
            .map(move |item| {
                let _alive = &guard;
                item
            })
            .boxed(),
    }
}

/// Passes chunks through and logs the stream's usage once it ends or is dropped, so every
/// stream is accounted, including those the client abandons.
pub(crate) fn account(stream: ChatStream, model: String, target: String) -> ChatStream {
    let ledger = StreamLedger {
        model,
        target,
        usage: None,
        completed: false,
    };
    futures::stream::unfold((stream, ledger), |(mut stream, mut ledger)| async move {
        let item = stream.next().await;
        match &item {
            Some(Ok(chunk)) => {
                if let Some(usage) = &chunk.usage {
                    ledger.usage = Some(usage.clone());
                }
            }
            Some(Err(_)) | None => ledger.completed = true,
        }
        item.map(|item| (item, (stream, ledger)))
    })
    .boxed()
}

struct StreamLedger {
    model: String,
    target: String,
    usage: Option<Usage>,
    completed: bool,
}

impl Drop for StreamLedger {
    fn drop(&mut self) {
        let (prompt_tokens, completion_tokens) = self.usage.as_ref().map_or((0, 0), |usage| {
            (usage.prompt_tokens, usage.completion_tokens)
        });
        tracing::debug!(
            model = %self.model,
            target = %self.target,
            prompt_tokens,
            completion_tokens,
            usage_reported = self.usage.is_some(),
            completed = self.completed,
            "stream finished"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use landfall_types::{ChunkChoice, Delta, Role};

    fn chunk(content: Option<&str>, role: Option<Role>) -> ChatChunk {
        ChatChunk {
            id: "c".into(),
            object: "chat.completion.chunk".into(),
            created: 0,
            model: "m".into(),
            choices: vec![ChunkChoice {
                index: 0,
                delta: Delta {
                    role,
                    content: content.map(str::to_owned),
                    ..Delta::default()
                },
                finish_reason: None,
                logprobs: None,
                extra: Default::default(),
            }],
            usage: None,
            extra: Default::default(),
        }
    }

    fn broken() -> ProviderError {
        ProviderError::StreamBroken {
            message: "cut".into(),
        }
    }

    #[tokio::test]
    async fn error_before_output_is_returned() {
        let items = vec![Ok(chunk(Some(""), Some(Role::Assistant))), Err(broken())];
        let result = until_first_output(futures::stream::iter(items).boxed()).await;
        assert!(result.is_err());
    }

    #[tokio::test]
    async fn held_chunks_are_replayed_and_later_errors_pass_through() {
        let items = vec![
            Ok(chunk(Some(""), Some(Role::Assistant))),
            Ok(chunk(Some("hi"), None)),
            Err(broken()),
        ];
        let stream = until_first_output(futures::stream::iter(items).boxed())
            .await
            .unwrap();
        let items: Vec<_> = stream.collect().await;
        assert_eq!(items.len(), 3);
        assert!(items[0].is_ok() && items[1].is_ok() && items[2].is_err());
    }
}
