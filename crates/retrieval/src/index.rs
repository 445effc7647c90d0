//! The two index seams. Both are keyed by [`ChunkId`], the chunk store's id for a chunk, and
//! scoped by vector store id, so one index holds every knowledge base of a deployment.

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::{Filter, IndexError};

/// The chunk store's id of a chunk: unique across all stores, never reused.
pub type ChunkId = i64;

/// The position in the chunk store's change log up to which an index has applied changes.
/// `0` means "nothing applied yet".
pub type Checkpoint = u64;

/// One chunk as an index sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexedChunk {
    pub id: ChunkId,
    /// The vector store (knowledge base) the chunk belongs to.
    pub store_id: String,
    pub file_id: String,
    pub text: String,
    /// The file's attributes (OpenAI's `attributes`: string, number or boolean values), which
    /// [`Filter`]s test. `file_id` is also filterable under the key `file_id`.
    pub attributes: Map<String, Value>,
    /// The embedding; empty for keyword-only indexes.
    pub vector: Vec<f32>,
}

/// One search result: a chunk and this index's score for it (higher is better; BM25 for
/// keyword indexes, cosine similarity for vector indexes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub id: ChunkId,
    pub score: f32,
}

/// A full-text (BM25) index.
///
/// Guarantees, for every implementation:
/// - `add` is idempotent by chunk id (adding a chunk twice leaves one copy);
/// - changes become visible to `search` and durable only at `commit`, which also records the
///   checkpoint; after a crash the index reopens at its last committed state, and
///   `checkpoint()` says which;
/// - `search` returns at most `limit` hits from the given stores only, that pass `filter`,
///   ordered by score descending, ties by id ascending.
#[async_trait]
pub trait KeywordIndex: Send + Sync {
    async fn add(&self, chunks: &[IndexedChunk]) -> Result<(), IndexError>;
    /// Removes every chunk of one file of one store.
    async fn delete_file(&self, store_id: &str, file_id: &str) -> Result<(), IndexError>;
    /// Removes every chunk of one store.
    async fn delete_store(&self, store_id: &str) -> Result<(), IndexError>;
    /// Makes every change so far durable and visible, and records `checkpoint`.
    async fn commit(&self, checkpoint: Checkpoint) -> Result<(), IndexError>;
    /// The checkpoint of the last commit.
    async fn checkpoint(&self) -> Result<Checkpoint, IndexError>;
    async fn search(
        &self,
        store_ids: &[String],
        query: &str,
        filter: Option<&Filter>,
        limit: usize,
    ) -> Result<Vec<Hit>, IndexError>;
}

/// A nearest-neighbour index over normalized embeddings, scored by cosine similarity.
///
/// Same guarantees as [`KeywordIndex`], plus:
/// - every vector of one index has the same dimensions, fixed by the first `add`; a vector of
///   other dimensions is refused with [`IndexError::Invalid`];
/// - approximate implementations say so in their docs and report their recall in
///   `docs/benchmarks.md`.
#[async_trait]
pub trait VectorIndex: Send + Sync {
    async fn add(&self, chunks: &[IndexedChunk]) -> Result<(), IndexError>;
    async fn delete_file(&self, store_id: &str, file_id: &str) -> Result<(), IndexError>;
    async fn delete_store(&self, store_id: &str) -> Result<(), IndexError>;
    async fn commit(&self, checkpoint: Checkpoint) -> Result<(), IndexError>;
    async fn checkpoint(&self) -> Result<Checkpoint, IndexError>;
    async fn search(
        &self,
        store_ids: &[String],
        vector: &[f32],
        filter: Option<&Filter>,
        limit: usize,
    ) -> Result<Vec<Hit>, IndexError>;
}
