//! Knowledge-base records: uploaded files and their bytes, vector stores, the files attached
//! to a store with their ingestion status, file batches, the chunks (text, citation data and
//! embedding: the source of truth every index is derived from) and the change log indexes
//! replay to stay in line with the chunks.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::StoreError;
use crate::model::{PageRequest, UnixMillis};

/// An uploaded file (OpenAI's `file` object) without its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    pub id: String,
    pub tenant_id: String,
    pub filename: String,
    pub purpose: String,
    pub bytes: u64,
    /// Hex SHA-256 of the content: re-uploading the same bytes can be recognized.
    pub sha256: String,
    pub created_at: UnixMillis,
    pub expires_at: Option<UnixMillis>,
}

/// A vector store (knowledge base).
#[derive(Debug, Clone, PartialEq)]
pub struct VectorStoreRecord {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    /// OpenAI's `metadata`: up to 16 string pairs.
    pub metadata: Map<String, Value>,
    /// Landfall's settings of the store (chunking, embedding model, ranking defaults), kept as
    /// the knowledge layer wrote them.
    pub settings: Value,
    pub created_at: UnixMillis,
    pub last_active_at: UnixMillis,
    pub expires_at: Option<UnixMillis>,
}

/// Where a file is in its ingestion into one store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IngestStatus {
    InProgress,
    Completed,
    Failed,
    Cancelled,
}

impl IngestStatus {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "in_progress",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "in_progress" => Self::InProgress,
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            _ => return None,
        })
    }
}

/// Why a file failed (OpenAI's `last_error`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestError {
    pub code: String,
    pub message: String,
}

/// A file attached to a vector store.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreFileRecord {
    pub store_id: String,
    pub file_id: String,
    pub tenant_id: String,
    pub batch_id: Option<String>,
    pub status: IngestStatus,
    pub last_error: Option<IngestError>,
    /// OpenAI's `attributes`, which search filters test.
    pub attributes: Map<String, Value>,
    /// The chunking strategy as the knowledge layer resolved it.
    pub chunking: Value,
    pub usage_bytes: u64,
    pub chunk_count: u64,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

/// A file batch; its status and counts are derived from its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRecord {
    pub id: String,
    pub store_id: String,
    pub tenant_id: String,
    pub created_at: UnixMillis,
    pub cancelled: bool,
}

/// How many files of a store or batch are in each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileCounts {
    pub in_progress: u64,
    pub completed: u64,
    pub failed: u64,
    pub cancelled: u64,
}

impl FileCounts {
    #[must_use]
    pub fn total(&self) -> u64 {
        self.in_progress + self.completed + self.failed + self.cancelled
    }

    pub(crate) fn add(&mut self, status: IngestStatus, count: u64) {
        match status {
            IngestStatus::InProgress => self.in_progress += count,
            IngestStatus::Completed => self.completed += count,
            IngestStatus::Failed => self.failed += count,
            IngestStatus::Cancelled => self.cancelled += count,
        }
    }
}

/// A chunk to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewChunk {
    pub text: String,
    pub page: Option<u32>,
    pub char_start: u64,
    pub char_end: u64,
    pub heading_path: Vec<String>,
    pub token_count: u32,
    /// Empty when the store has no embedding model.
    pub embedding: Vec<f32>,
}

/// A stored chunk with the attributes of its file.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredChunk {
    pub id: i64,
    pub store_id: String,
    pub file_id: String,
    /// Its place in the file, from 0.
    pub position: u32,
    pub chunk: NewChunk,
    pub attributes: Map<String, Value>,
}

/// What happened to the chunks of a file (or a whole store).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOp {
    /// The file's chunks were (re)written: an index drops what it has of the file and adds the
    /// chunks the store holds now.
    Replace,
    /// The file's chunks were removed.
    Remove,
    /// The whole store was removed (`file_id` is empty).
    RemoveStore,
}

/// One entry of the change log; `seq` is increasing and visible in commit order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub seq: u64,
    pub store_id: String,
    pub file_id: String,
    pub op: ChangeOp,
}

impl ChangeOp {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Replace => "replace",
            Self::Remove => "remove",
            Self::RemoveStore => "remove_store",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "replace" => Self::Replace,
            "remove" => Self::Remove,
            "remove_store" => Self::RemoveStore,
            _ => return None,
        })
    }
}

/// Which files of a store to list.
#[derive(Debug, Clone, Default)]
pub struct StoreFileQuery {
    pub status: Option<IngestStatus>,
    pub batch_id: Option<String>,
    pub page: PageRequest,
    /// Newest first (OpenAI's default `order=desc`).
    pub descending: bool,
}

/// Files, vector stores and chunks.
///
/// Guarantees, for every implementation:
/// - a write that returned `Ok` is durable;
/// - every read and write is scoped by tenant where it takes one: another tenant's records
///   are reported as not found, never returned;
/// - `replace_chunks`, `detach_file`, `delete_vector_store` and `delete_file` change the
///   chunks and append their change-log entry in one transaction, and change-log entries
///   become visible in `seq` order (a reader that has seen `seq` n never later sees a new
///   entry below n);
/// - lists are ordered by id (ids are time-ordered), ascending unless asked otherwise.
#[async_trait]
pub trait KnowledgeStore: Send + Sync {
    async fn create_file(&self, file: &FileRecord, content: &[u8]) -> Result<(), StoreError>;
    async fn get_file(&self, tenant_id: &str, id: &str) -> Result<Option<FileRecord>, StoreError>;
    /// The newest file of the tenant with this content hash and file name.
    async fn find_file(
        &self,
        tenant_id: &str,
        sha256: &str,
        filename: &str,
    ) -> Result<Option<FileRecord>, StoreError>;
    async fn list_files(
        &self,
        tenant_id: &str,
        purpose: Option<&str>,
        page: &PageRequest,
        descending: bool,
    ) -> Result<Vec<FileRecord>, StoreError>;
    async fn file_content(&self, tenant_id: &str, id: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Files of every tenant whose `expires_at` is at or before `now`, soonest first.
    async fn expired_files(
        &self,
        now: UnixMillis,
        limit: u32,
    ) -> Result<Vec<FileRecord>, StoreError>;
    /// Deletes the file, detaches it from every store (removing its chunks) and returns the
    /// ids of those stores; `None` when there was no such file.
    async fn delete_file(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<Vec<String>>, StoreError>;

    async fn create_vector_store(&self, store: &VectorStoreRecord) -> Result<(), StoreError>;
    async fn get_vector_store(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<VectorStoreRecord>, StoreError>;
    async fn list_vector_stores(
        &self,
        tenant_id: &str,
        page: &PageRequest,
        descending: bool,
    ) -> Result<Vec<VectorStoreRecord>, StoreError>;
    /// Replaces name, metadata, settings, `last_active_at` and `expires_at`; `false` when
    /// there is no such store.
    async fn update_vector_store(&self, store: &VectorStoreRecord) -> Result<bool, StoreError>;
    /// Deletes the store with its files' attachments, batches and chunks.
    async fn delete_vector_store(&self, tenant_id: &str, id: &str) -> Result<bool, StoreError>;
    /// Files of the store per status, and the bytes its chunks use.
    async fn store_usage(&self, store_id: &str) -> Result<(FileCounts, u64), StoreError>;

    /// Attaches a file; [`StoreError::Conflict`] when it is attached already.
    async fn attach_file(&self, file: &StoreFileRecord) -> Result<(), StoreError>;
    async fn get_store_file(
        &self,
        store_id: &str,
        file_id: &str,
    ) -> Result<Option<StoreFileRecord>, StoreError>;
    async fn list_store_files(
        &self,
        store_id: &str,
        query: &StoreFileQuery,
    ) -> Result<Vec<StoreFileRecord>, StoreError>;
    /// Replaces status, error, attributes, usage and `updated_at`; `false` when the file is
    /// not attached.
    async fn update_store_file(&self, file: &StoreFileRecord) -> Result<bool, StoreError>;
    /// Detaches a file and removes its chunks; `false` when it was not attached.
    async fn detach_file(&self, store_id: &str, file_id: &str) -> Result<bool, StoreError>;
    /// Files still `in_progress` in any store (to resume after a restart), oldest first.
    async fn pending_ingests(&self, limit: u32) -> Result<Vec<StoreFileRecord>, StoreError>;

    async fn create_batch(&self, batch: &BatchRecord) -> Result<(), StoreError>;
    async fn get_batch(
        &self,
        store_id: &str,
        id: &str,
    ) -> Result<Option<(BatchRecord, FileCounts)>, StoreError>;
    /// Marks the batch cancelled and its files still in progress `cancelled`.
    async fn cancel_batch(&self, store_id: &str, id: &str) -> Result<bool, StoreError>;

    /// Replaces every chunk of one attached file (positions from 0) and appends a
    /// [`ChangeOp::Replace`] entry; returns its `seq`. [`StoreError::NotFound`] when the file
    /// is not attached (it was detached while being ingested).
    async fn replace_chunks(
        &self,
        store_id: &str,
        file_id: &str,
        chunks: &[NewChunk],
    ) -> Result<u64, StoreError>;
    /// Appends a [`ChangeOp::Replace`] entry without touching the chunks (their file's
    /// attributes changed, so indexes must take them again); returns its `seq`.
    async fn mark_changed(&self, store_id: &str, file_id: &str) -> Result<u64, StoreError>;
    /// Chunks of one file in position order, embeddings included.
    async fn file_chunks(
        &self,
        store_id: &str,
        file_id: &str,
    ) -> Result<Vec<StoredChunk>, StoreError>;
    /// Chunks by id (any order; missing ids are left out); embeddings left empty.
    async fn chunks_by_id(&self, ids: &[i64]) -> Result<Vec<StoredChunk>, StoreError>;
    /// Change-log entries with `seq > after`, at most `limit`, in `seq` order.
    async fn changes_after(&self, after: u64, limit: u32) -> Result<Vec<Change>, StoreError>;
    /// The newest `seq`, 0 when the log is empty.
    async fn last_change(&self) -> Result<u64, StoreError>;
}

/// Embeddings travel as little-endian `f32` bytes.
pub(crate) fn encode_embedding(embedding: &[f32]) -> Vec<u8> {
    embedding
        .iter()
        .flat_map(|value| value.to_le_bytes())
        .collect()
}

pub(crate) fn decode_embedding(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_round_trip_bit_exactly() {
        let values = [0.0_f32, -1.5, f32::MIN_POSITIVE, 1.0e-7, 0.123_456_79];
        assert_eq!(decode_embedding(&encode_embedding(&values)), values);
    }

    #[test]
    fn statuses_and_ops_round_trip() {
        for status in [
            IngestStatus::InProgress,
            IngestStatus::Completed,
            IngestStatus::Failed,
            IngestStatus::Cancelled,
        ] {
            assert_eq!(IngestStatus::parse(status.as_str()), Some(status));
        }
        for op in [ChangeOp::Replace, ChangeOp::Remove, ChangeOp::RemoveStore] {
            assert_eq!(ChangeOp::parse(op.as_str()), Some(op));
        }
    }
}
