//! What reorders fused search hits: the [`Reranker`] seam and the in-process cross-encoder
//! behind it.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use landfall_models::CrossEncoder;

use crate::{KnowledgeError, SearchHit, SearchRequest};

/// Scores passages against a query.
///
/// Guarantees: one score per passage, in order; higher is more relevant; scores of one call
/// are comparable with each other (not necessarily across calls); never blocks the reactor.
#[async_trait]
pub trait Reranker: Send + Sync {
    fn model_id(&self) -> &str;
    /// Fused hits read per search.
    fn candidates(&self) -> usize;
    /// # Errors
    /// [`KnowledgeError::Embedding`] when the model fails.
    async fn score(&self, query: &str, passages: Vec<String>) -> Result<Vec<f32>, KnowledgeError>;
}

/// A BERT cross-encoder in this process, one forward pass at a time on the blocking pool.
pub struct LocalReranker {
    model: Arc<CrossEncoder>,
    candidates: usize,
    gate: tokio::sync::Semaphore,
}

impl std::fmt::Debug for LocalReranker {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("LocalReranker")
            .field("model_id", &self.model.model_id())
            .field("candidates", &self.candidates)
            .finish_non_exhaustive()
    }
}

impl LocalReranker {
    /// Loads the cross-encoder in `dir` (blocking).
    ///
    /// # Errors
    /// [`KnowledgeError::Embedding`] naming what is missing or malformed.
    pub fn load(dir: &Path, candidates: usize, batch_size: usize) -> Result<Self, KnowledgeError> {
        let model = CrossEncoder::load(dir, None, batch_size.max(1))
            .map_err(|error| KnowledgeError::Embedding(error.to_string()))?;
        Ok(Self {
            model: Arc::new(model),
            candidates: candidates.max(1),
            gate: tokio::sync::Semaphore::new(1),
        })
    }
}

#[async_trait]
impl Reranker for LocalReranker {
    fn model_id(&self) -> &str {
        self.model.model_id()
    }

    fn candidates(&self) -> usize {
        self.candidates
    }

    async fn score(&self, query: &str, passages: Vec<String>) -> Result<Vec<f32>, KnowledgeError> {
        let _turn = self
            .gate
            .acquire()
            .await
            .map_err(|_| KnowledgeError::Unavailable("reranker closed".to_owned()))?;
        let model = self.model.clone();
        let query = query.to_owned();
        tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = passages.iter().map(String::as_str).collect();
            model.score(&query, &refs)
        })
        .await
        .map_err(|error| KnowledgeError::Embedding(format!("reranking task failed: {error}")))?
        .map_err(|error| KnowledgeError::Embedding(error.to_string()))
    }
}

/// Scores `hits` with `reranker` and keeps the best `max_results` of them at or above the
/// request's threshold: `score` becomes the sigmoid of the logit, which `rerank_score` keeps.
pub(crate) async fn rerank(
    reranker: &dyn Reranker,
    request: &SearchRequest,
    hits: &mut Vec<SearchHit>,
) -> Result<(), KnowledgeError> {
    let passages = hits.iter().map(|hit| hit.text.clone()).collect();
    let logits = reranker.score(&request.query, passages).await?;
    for (hit, logit) in hits.iter_mut().zip(logits) {
        hit.rerank_score = Some(logit);
        hit.score = 1.0 / (1.0 + (-logit).exp());
    }
    hits.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(a.chunk_id.cmp(&b.chunk_id))
    });
    hits.retain(|hit| hit.score >= request.score_threshold);
    hits.truncate(request.max_results);
    Ok(())
}
