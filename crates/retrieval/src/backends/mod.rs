//! Index implementations: embedded (tantivy, in-process vectors) and scale-out (pgvector,
//! Chroma, Qdrant).

use serde_json::{Map, Value};

use crate::IndexedChunk;

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
