//! Index implementations: embedded (tantivy, in-process vectors) and scale-out (pgvector,
//! Chroma, Qdrant).

use serde_json::{Map, Value};

use crate::{IndexError, IndexedChunk};

pub mod tantivy;
pub mod vectors;

// Scale-out backends.
pub mod chroma;
pub mod pgvector;
#[cfg(feature = "qdrant")]
pub mod qdrant;

/// The attributes a [`Filter`](crate::Filter) sees for a chunk: its file's attributes plus
/// `file_id` (which wins over an attribute of that name). Every backend filters on exactly
/// this map, so `Filter::matches(&filterable_attributes(chunk))` is the reference answer.
pub fn filterable_attributes(chunk: &IndexedChunk) -> Map<String, Value> {
    let mut attributes = chunk.attributes.clone();
    attributes.insert("file_id".to_string(), Value::String(chunk.file_id.clone()));
    attributes
}

/// The dimensions of a batch to add: those the index has (`fixed`), or the first chunk's.
/// Refuses empty vectors and a chunk of other dimensions.
pub(crate) fn batch_dimensions(
    chunks: &[IndexedChunk],
    fixed: Option<usize>,
) -> Result<usize, IndexError> {
    let dimensions = fixed.unwrap_or_else(|| chunks.first().map_or(0, |c| c.vector.len()));
    if dimensions == 0 {
        return Err(IndexError::Invalid("an empty vector".to_string()));
    }
    if let Some(chunk) = chunks.iter().find(|chunk| chunk.vector.len() != dimensions) {
        return Err(IndexError::Invalid(format!(
            "chunk {} has {} dimensions, the index {dimensions}",
            chunk.id,
            chunk.vector.len()
        )));
    }
    Ok(dimensions)
}

/// The batch with only the last copy of each chunk id, in order (one upsert cannot name an id
/// twice on the remote backends).
pub(crate) fn last_copy_of_each(chunks: &[IndexedChunk]) -> Vec<IndexedChunk> {
    let mut seen = std::collections::HashSet::with_capacity(chunks.len());
    let mut batch: Vec<IndexedChunk> = chunks
        .iter()
        .rev()
        .filter(|chunk| seen.insert(chunk.id))
        .cloned()
        .collect();
    batch.reverse();
    batch
}
