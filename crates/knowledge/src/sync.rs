//! Keeping the indexes in line with the chunk store. Every index remembers the change-log
//! position it has applied (its checkpoint); catching up replays the entries after it. A
//! `Replace` entry means "drop what you have of this file and take what the store holds now",
//! so replaying is idempotent and a crash at any point is repaired by the next catch-up.

use std::collections::HashSet;
use std::sync::Arc;

use landfall_retrieval::{Checkpoint, IndexedChunk, KeywordIndex, VectorIndex};
use landfall_storage::{Change, ChangeOp, KnowledgeStore};

use crate::KnowledgeError;

/// Change-log entries read per round.
const CHANGES_PER_ROUND: u32 = 512;

/// The keyword index and, when an embedder is configured, the vector index.
pub struct Indexes {
    pub keyword: Arc<dyn KeywordIndex>,
    pub vector: Option<Arc<dyn VectorIndex>>,
    /// (keyword, vector) checkpoints; held while catching up so one catch-up runs at a time.
    applied: tokio::sync::Mutex<(Checkpoint, Checkpoint)>,
}

impl Indexes {
    /// # Errors
    /// When an index cannot say its checkpoint.
    pub async fn new(
        keyword: Arc<dyn KeywordIndex>,
        vector: Option<Arc<dyn VectorIndex>>,
    ) -> Result<Self, KnowledgeError> {
        let keyword_at = keyword.checkpoint().await?;
        let vector_at = match &vector {
            Some(index) => index.checkpoint().await?,
            None => Checkpoint::MAX,
        };
        Ok(Self {
            keyword,
            vector,
            applied: tokio::sync::Mutex::new((keyword_at, vector_at)),
        })
    }

    /// The position both indexes have applied.
    pub async fn checkpoint(&self) -> Checkpoint {
        let applied = self.applied.lock().await;
        applied.0.min(applied.1)
    }

    /// Applies every change-log entry the indexes have not seen, up to at least `target` (or
    /// to the end of the log when `target` is `None`).
    ///
    /// # Errors
    /// When the store or an index fails; what was committed stays committed and the next call
    /// resumes from there.
    pub async fn catch_up(
        &self,
        store: &dyn KnowledgeStore,
        target: Option<Checkpoint>,
    ) -> Result<Checkpoint, KnowledgeError> {
        let mut applied = self.applied.lock().await;
        loop {
            let from = applied.0.min(applied.1);
            if target.is_some_and(|target| from >= target) {
                return Ok(from);
            }
            let changes = store.changes_after(from, CHANGES_PER_ROUND).await?;
            let Some(last) = changes.last().map(|change| change.seq) else {
                return Ok(from);
            };
            self.apply(store, &changes, *applied).await?;
            if applied.0 < last {
                self.keyword.commit(last).await?;
                applied.0 = last;
            }
            if let Some(vector) = &self.vector
                && applied.1 < last
            {
                vector.commit(last).await?;
                applied.1 = last;
            }
            tracing::debug!(
                checkpoint = last,
                changes = changes.len(),
                "indexes caught up"
            );
        }
    }

    async fn apply(
        &self,
        store: &dyn KnowledgeStore,
        changes: &[Change],
        (keyword_at, vector_at): (Checkpoint, Checkpoint),
    ) -> Result<(), KnowledgeError> {
        // A later entry for the same file supersedes a `Replace`: skip loading chunks twice.
        let mut seen_later: HashSet<(&str, &str)> = HashSet::new();
        let mut superseded = vec![false; changes.len()];
        for (index, change) in changes.iter().enumerate().rev() {
            let key = (change.store_id.as_str(), change.file_id.as_str());
            superseded[index] = change.op == ChangeOp::Replace && !seen_later.insert(key);
        }
        for (change, superseded) in changes.iter().zip(superseded) {
            let keyword = (change.seq > keyword_at).then_some(&self.keyword);
            let vector = self.vector.as_ref().filter(|_| change.seq > vector_at);
            if keyword.is_none() && vector.is_none() {
                continue;
            }
            match change.op {
                ChangeOp::RemoveStore => {
                    if let Some(index) = keyword {
                        index.delete_store(&change.store_id).await?;
                    }
                    if let Some(index) = vector {
                        index.delete_store(&change.store_id).await?;
                    }
                }
                ChangeOp::Remove | ChangeOp::Replace => {
                    if let Some(index) = keyword {
                        index.delete_file(&change.store_id, &change.file_id).await?;
                    }
                    if let Some(index) = vector {
                        index.delete_file(&change.store_id, &change.file_id).await?;
                    }
                    if change.op == ChangeOp::Replace && !superseded {
                        self.add_file(store, change, keyword, vector).await?;
                    }
                }
            }
        }
        Ok(())
    }

    async fn add_file(
        &self,
        store: &dyn KnowledgeStore,
        change: &Change,
        keyword: Option<&Arc<dyn KeywordIndex>>,
        vector: Option<&Arc<dyn VectorIndex>>,
    ) -> Result<(), KnowledgeError> {
        let stored = store.file_chunks(&change.store_id, &change.file_id).await?;
        if stored.is_empty() {
            return Ok(());
        }
        let chunks: Vec<IndexedChunk> = stored
            .into_iter()
            .map(|stored| IndexedChunk {
                id: stored.id,
                store_id: stored.store_id,
                file_id: stored.file_id,
                text: stored.chunk.text,
                attributes: stored.attributes,
                vector: stored.chunk.embedding,
            })
            .collect();
        if let Some(index) = keyword {
            index.add(&chunks).await?;
        }
        if let Some(index) = vector {
            let embedded: Vec<IndexedChunk> = chunks
                .into_iter()
                .filter(|chunk| !chunk.vector.is_empty())
                .collect();
            if !embedded.is_empty() {
                index.add(&embedded).await?;
            }
        }
        Ok(())
    }
}
