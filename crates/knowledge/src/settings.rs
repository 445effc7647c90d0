//! What Landfall keeps about a store and an attached file beyond OpenAI's fields, as stored
//! in their JSON columns, and the ids it hands out.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::KnowledgeError;

/// A vector store's own settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreSettings {
    /// Default chunking of files attached without a strategy.
    pub chunking: FileChunking,
    /// The embedding model the store's vectors come from; `None` for keyword-only stores.
    pub embedding_model: Option<String>,
    /// `expires_after` as the client gave it (`{"anchor": "last_active_at", "days": N}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_after: Option<Value>,
}

impl StoreSettings {
    pub(crate) fn from_value(value: &Value) -> Option<Self> {
        serde_json::from_value(value.clone()).ok()
    }

    pub(crate) fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// Token windows of one file (OpenAI's `static` chunking strategy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileChunking {
    pub max_tokens: usize,
    pub overlap_tokens: usize,
}

impl FileChunking {
    /// OpenAI's bounds: 100..=4096 tokens per chunk, overlap at most half of that. (The
    /// configured default may go lower, down to 16.)
    ///
    /// # Errors
    /// [`KnowledgeError::Invalid`] naming the field.
    pub fn checked(max_tokens: usize, overlap_tokens: usize) -> Result<Self, KnowledgeError> {
        if !(100..=4096).contains(&max_tokens) {
            return Err(KnowledgeError::invalid(
                "chunking_strategy.static.max_chunk_size_tokens",
                "max_chunk_size_tokens must be between 100 and 4096",
            ));
        }
        if overlap_tokens * 2 > max_tokens {
            return Err(KnowledgeError::invalid(
                "chunking_strategy.static.chunk_overlap_tokens",
                "chunk_overlap_tokens must not exceed half of max_chunk_size_tokens",
            ));
        }
        Ok(Self {
            max_tokens,
            overlap_tokens,
        })
    }

    pub(crate) fn from_value(value: &Value) -> Self {
        serde_json::from_value(value.clone()).unwrap_or(Self {
            max_tokens: 128,
            overlap_tokens: 32,
        })
    }

    pub(crate) fn to_value(self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// A new id: `prefix`, then the time in milliseconds and 64 random bits, in hex, so ids sort
/// by creation time (lists are ordered by id).
pub(crate) fn new_id(prefix: &str) -> String {
    let millis = u64::try_from(landfall_storage::now_millis()).unwrap_or(0);
    let random: u64 = rand::random();
    format!("{prefix}{millis:012x}{random:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_creation_and_do_not_repeat() {
        let first = new_id("file-");
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = new_id("file-");
        assert!(first < second, "{first} < {second}");
        assert!(first.starts_with("file-") && first.len() == 5 + 28);
    }

    #[test]
    fn chunking_bounds_follow_openai() {
        assert!(FileChunking::checked(800, 400).is_ok());
        assert!(FileChunking::checked(99, 0).is_err());
        assert!(FileChunking::checked(4097, 0).is_err());
        assert!(FileChunking::checked(200, 101).is_err());
    }
}
