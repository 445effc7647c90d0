//! Background ingestion: parse, chunk, embed, store, index, then mark the file `completed`.
//!
//! A file is marked `completed` only after its chunks are committed to the store *and* the
//! indexes have taken them, so a search right after sees it. A crash anywhere before that
//! leaves the file `in_progress`, and every start resumes such files from the beginning
//! (storing chunks replaces what a previous attempt stored).

use std::sync::Arc;

use landfall_documents::{ChunkingOptions, Limits, ParseError};
use landfall_storage::{
    IngestError, IngestStatus, KnowledgeStore, NewChunk, StoreError, StoreFileRecord, now_millis,
};
use tokio::sync::mpsc;

use crate::settings::FileChunking;
use crate::sync::Indexes;
use crate::{Caller, Embedder, KnowledgeError};

/// One file of one store to ingest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Job {
    pub store_id: String,
    pub file_id: String,
}

/// What a worker needs, shared by all workers.
pub(crate) struct Pipeline {
    pub store: Arc<dyn KnowledgeStore>,
    pub indexes: Arc<Indexes>,
    pub embedder: Option<Arc<dyn Embedder>>,
    pub limits: Limits,
}

/// Runs jobs from `queue` until it closes. Jobs are shared by `workers` tasks.
pub(crate) fn spawn_workers(
    pipeline: Arc<Pipeline>,
    queue: mpsc::UnboundedReceiver<Job>,
    workers: usize,
    idle: Arc<tokio::sync::watch::Sender<usize>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let queue = Arc::new(tokio::sync::Mutex::new(queue));
    (0..workers.max(1))
        .map(|_| {
            let queue = queue.clone();
            let pipeline = pipeline.clone();
            let idle = idle.clone();
            tokio::spawn(async move {
                loop {
                    let job = queue.lock().await.recv().await;
                    let Some(job) = job else { break };
                    pipeline.run(&job).await;
                    idle.send_modify(|pending| *pending = pending.saturating_sub(1));
                }
            })
        })
        .collect()
}

impl Pipeline {
    async fn run(&self, job: &Job) {
        let record = match self.store.get_store_file(&job.store_id, &job.file_id).await {
            Ok(Some(record)) if record.status == IngestStatus::InProgress => record,
            Ok(_) => return, // detached, cancelled or done meanwhile
            Err(error) => {
                tracing::warn!(%error, store = %job.store_id, file = %job.file_id, "cannot read a file to ingest; it stays in progress until the next start");
                return;
            }
        };
        let started = std::time::Instant::now();
        let outcome = self.ingest(&record).await;
        let mut record = record;
        record.updated_at = now_millis();
        match outcome {
            Ok((chunks, usage_bytes)) => {
                record.status = IngestStatus::Completed;
                record.chunk_count = chunks;
                record.usage_bytes = usage_bytes;
                tracing::info!(store = %job.store_id, file = %job.file_id, chunks, elapsed_ms = started.elapsed().as_millis() as u64, "file ingested");
            }
            Err(Failure::Retry(error)) => {
                tracing::warn!(%error, store = %job.store_id, file = %job.file_id, "ingestion interrupted; it resumes at the next start");
                return;
            }
            Err(Failure::Gone) => return,
            Err(Failure::File(error)) => {
                tracing::info!(store = %job.store_id, file = %job.file_id, code = error.code, message = %error.message, "file failed");
                record.status = IngestStatus::Failed;
                record.last_error = Some(error);
            }
        }
        // Only an in-progress file moves on: a batch cancelled meanwhile stays cancelled.
        match self.store.get_store_file(&job.store_id, &job.file_id).await {
            Ok(Some(current)) if current.status == IngestStatus::InProgress => {}
            _ => return,
        }
        if let Err(error) = self.store.update_store_file(&record).await {
            tracing::warn!(%error, store = %job.store_id, file = %job.file_id, "cannot record the outcome of an ingestion");
        }
    }

    /// Returns the number of chunks and the bytes they use.
    async fn ingest(&self, record: &StoreFileRecord) -> Result<(u64, u64), Failure> {
        let file = self
            .store
            .get_file(&record.tenant_id, &record.file_id)
            .await
            .map_err(Failure::store)?
            .ok_or(Failure::Gone)?;
        let content = self
            .store
            .file_content(&record.tenant_id, &record.file_id)
            .await
            .map_err(Failure::store)?
            .ok_or(Failure::Gone)?;
        let chunking = FileChunking::from_value(&record.chunking);
        let tokenizer = match &self.embedder {
            Some(embedder) => embedder.tokenizer(),
            None => Arc::new(landfall_documents::SimpleTokenizer),
        };
        let limits = self.limits.clone();
        let filename = file.filename.clone();
        let chunks = tokio::task::spawn_blocking(move || {
            let document =
                landfall_documents::parse(&filename, &content, &limits).map_err(Failure::parse)?;
            let options = ChunkingOptions {
                max_tokens: chunking.max_tokens,
                overlap_tokens: chunking.overlap_tokens,
            };
            landfall_documents::chunk(&document, tokenizer.as_ref(), &options).map_err(|error| {
                Failure::File(IngestError {
                    code: "invalid_file".to_owned(),
                    message: error.to_string(),
                })
            })
        })
        .await
        .map_err(|error| Failure::Retry(KnowledgeError::Unavailable(error.to_string())))??;
        if chunks.is_empty() {
            return Err(Failure::File(IngestError {
                code: "invalid_file".to_owned(),
                message: "the file contains no text".to_owned(),
            }));
        }
        let embeddings = match &self.embedder {
            Some(embedder) => {
                let texts = chunks.iter().map(|chunk| chunk.text.clone()).collect();
                let caller = Caller::background(&record.tenant_id);
                embedder
                    .embed(texts, &caller)
                    .await
                    .map_err(Failure::embedding)?
            }
            None => vec![Vec::new(); chunks.len()],
        };
        let stored: Vec<NewChunk> = chunks
            .into_iter()
            .zip(embeddings)
            .map(|(chunk, embedding)| NewChunk {
                text: chunk.text,
                page: chunk.page,
                char_start: chunk.char_start as u64,
                char_end: chunk.char_end as u64,
                heading_path: chunk.heading_path,
                token_count: u32::try_from(chunk.token_count).unwrap_or(u32::MAX),
                embedding,
            })
            .collect();
        let usage_bytes = stored
            .iter()
            .map(|chunk| (chunk.text.len() + chunk.embedding.len() * 4) as u64)
            .sum();
        let count = stored.len() as u64;
        let seq = match self
            .store
            .replace_chunks(&record.store_id, &record.file_id, &stored)
            .await
        {
            Ok(seq) => seq,
            Err(StoreError::NotFound { .. }) => return Err(Failure::Gone),
            Err(error) => return Err(Failure::store(error)),
        };
        self.indexes
            .catch_up(self.store.as_ref(), Some(seq))
            .await
            .map_err(Failure::Retry)?;
        Ok((count, usage_bytes))
    }
}

enum Failure {
    /// Something about the file itself: it fails for good, with this error.
    File(IngestError),
    /// The store, an index or the embedder failed: try again at the next start.
    Retry(KnowledgeError),
    /// The file or its attachment is gone.
    Gone,
}

impl Failure {
    fn store(error: StoreError) -> Self {
        Self::Retry(KnowledgeError::Store(error))
    }

    /// A model that refuses or answers wrongly (after the gateway's retries and fallbacks)
    /// fails the file, with OpenAI's `server_error`; a tenant whose limits or budget refuse
    /// the embeddings fails it with `rate_limit_exceeded`; shutting down retries at the next
    /// start.
    fn embedding(error: KnowledgeError) -> Self {
        match error {
            KnowledgeError::Embedding(message) => Self::File(IngestError {
                code: "server_error".to_owned(),
                message: format!("embedding failed: {message}"),
            }),
            KnowledgeError::Refused(refusal) => Self::File(IngestError {
                code: "rate_limit_exceeded".to_owned(),
                message: format!("embedding refused: {refusal}"),
            }),
            other => Self::Retry(other),
        }
    }

    fn parse(error: ParseError) -> Self {
        let code = match error {
            ParseError::Unsupported { .. } | ParseError::Binary { .. } => "unsupported_file",
            _ => "invalid_file",
        };
        Self::File(IngestError {
            code: code.to_owned(),
            message: error.to_string(),
        })
    }
}
