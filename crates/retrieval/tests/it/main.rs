//! Integration tests of the retrieval crate: one conformance suite for every index backend.

mod chroma;
mod conformance;
mod embedded;
mod pgvector;
mod qdrant;
