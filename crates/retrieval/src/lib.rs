//! Retrieval building blocks: the [`KeywordIndex`] and [`VectorIndex`] seams with their
//! embedded implementations (tantivy BM25 with jieba for Chinese; an in-process vector
//! index) and scale-out backends (pgvector, Chroma, Qdrant), metadata [`Filter`]s pushed down
//! into every index, score fusion, and retrieval-evaluation metrics.
//!
//! Indexes are derived data: the chunk store (in `landfall-storage`) is the source of truth
//! and `landfall-knowledge` keeps every index in line with it through checkpoints. This crate
//! does not parse documents, embed text or know HTTP.

pub mod backends;
mod error;
pub mod eval;
mod filter;
pub mod fusion;
mod index;

pub use error::IndexError;
pub use filter::{Comparison, ComparisonOp, CompoundOp, Filter};
pub use index::{Checkpoint, ChunkId, Hit, IndexedChunk, KeywordIndex, VectorIndex};
