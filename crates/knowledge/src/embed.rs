//! What turns text into vectors and counts its tokens: the [`Embedder`] seam and the
//! in-process BERT embedder behind it.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use landfall_documents::TokenSpans;
use landfall_models::{BertEmbedder, EmbedderOptions};

use crate::{Caller, KnowledgeError};

/// Turns texts into vectors.
///
/// Guarantees: `embed` returns one vector per text, in order, each of `dimensions()` values,
/// normalized when the model says so; it never blocks the async reactor.
#[async_trait]
pub trait Embedder: Send + Sync {
    /// A stable name of the model: vectors of different models never share an index.
    fn model_id(&self) -> &str;
    fn dimensions(&self) -> usize;
    /// The tokens chunks are counted in.
    fn tokenizer(&self) -> Arc<dyn TokenSpans>;
    /// Embeds `texts` for `caller`, who is charged when the model is behind the gateway.
    ///
    /// # Errors
    /// [`KnowledgeError::Embedding`] when the model fails, [`KnowledgeError::Refused`] when
    /// the caller's limits or budgets refuse the call.
    async fn embed(
        &self,
        texts: Vec<String>,
        caller: &Caller,
    ) -> Result<Vec<Vec<f32>>, KnowledgeError>;
}

/// A BERT-family model run in this process. Forward passes run on tokio's blocking pool, one
/// call at a time: the matrix kernels already use every core, so running two at once would
/// only make both slower.
pub struct LocalEmbedder {
    model: Arc<BertEmbedder>,
    model_id: String,
    batch_size: usize,
    gate: tokio::sync::Semaphore,
}

impl std::fmt::Debug for LocalEmbedder {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("LocalEmbedder")
            .field("model_id", &self.model_id)
            .finish_non_exhaustive()
    }
}

impl LocalEmbedder {
    /// Loads the model in `dir` (blocking: call it at start or from a blocking thread).
    ///
    /// # Errors
    /// [`KnowledgeError::Embedding`] naming the file that is missing or malformed.
    pub fn load(dir: &Path, batch_size: usize) -> Result<Self, KnowledgeError> {
        let options = EmbedderOptions {
            batch_size: batch_size.max(1),
            ..EmbedderOptions::default()
        };
        let model = BertEmbedder::load(dir, options)
            .map_err(|error| KnowledgeError::Embedding(error.to_string()))?;
        let model_id = model.model_id().to_owned();
        Ok(Self {
            model: Arc::new(model),
            model_id,
            batch_size: batch_size.max(1),
            gate: tokio::sync::Semaphore::new(1),
        })
    }
}

#[async_trait]
impl Embedder for LocalEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dimensions(&self) -> usize {
        self.model.dimensions()
    }

    fn tokenizer(&self) -> Arc<dyn TokenSpans> {
        Arc::new(ModelTokens(self.model.clone()))
    }

    async fn embed(
        &self,
        texts: Vec<String>,
        _caller: &Caller,
    ) -> Result<Vec<Vec<f32>>, KnowledgeError> {
        let mut vectors = Vec::with_capacity(texts.len());
        // Batch by batch, so a long ingest lets queries in between.
        for batch in texts.chunks(self.batch_size * 4) {
            let _turn = self
                .gate
                .acquire()
                .await
                .map_err(|_| KnowledgeError::Unavailable("embedder closed".to_owned()))?;
            let model = self.model.clone();
            let batch = batch.to_vec();
            let embedded = tokio::task::spawn_blocking(move || {
                let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
                model.embed(&refs)
            })
            .await
            .map_err(|error| KnowledgeError::Embedding(format!("embedding task failed: {error}")))?
            .map_err(|error| KnowledgeError::Embedding(error.to_string()))?;
            vectors.extend(embedded);
        }
        Ok(vectors)
    }
}

/// The model's own tokenizer as the chunker's [`TokenSpans`].
struct ModelTokens(Arc<BertEmbedder>);

impl TokenSpans for ModelTokens {
    fn token_spans(&self, text: &str) -> Result<Vec<Range<usize>>, String> {
        self.0.token_spans(text).map_err(|error| error.to_string())
    }
}
