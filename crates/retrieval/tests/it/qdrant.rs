//! The Qdrant index on the server at `LANDFALL_TEST_QDRANT_URL` (its gRPC port, e.g.
//! `http://127.0.0.1:6334`): the conformance suite. No Qdrant server is packaged for these
//! machines, so the test is skipped, saying so, when the variable is unset.
#![cfg(feature = "qdrant")]

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use landfall_retrieval::VectorIndex;
use landfall_retrieval::backends::qdrant::QdrantIndex;

use super::conformance::{OpenVector, vector_index_suite};
use super::pgvector::unique_name;

const TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn qdrant_passes_the_conformance_suite() -> anyhow::Result<()> {
    let Some(url) = std::env::var("LANDFALL_TEST_QDRANT_URL")
        .ok()
        .filter(|url| !url.is_empty())
    else {
        eprintln!(
            "skipping Qdrant test: LANDFALL_TEST_QDRANT_URL is unset (no Qdrant server here)"
        );
        return Ok(());
    };
    let api_key = std::env::var("LANDFALL_TEST_QDRANT_API_KEY").ok();
    let collection = unique_name("landfall_test");
    let index = QdrantIndex::open(&url, api_key.clone(), &collection, TIMEOUT).await?;
    let (reopen_url, reopen_collection) = (url.clone(), collection.clone());
    let open: OpenVector = Box::new(move || {
        let (url, api_key, collection) = (
            reopen_url.clone(),
            api_key.clone(),
            reopen_collection.clone(),
        );
        async move {
            let index = QdrantIndex::open(&url, api_key, &collection, TIMEOUT).await?;
            Ok(Arc::new(index) as Arc<dyn VectorIndex>)
        }
        .boxed()
    });
    let outcome = vector_index_suite(open, true).await;
    index.drop_collections().await?;
    outcome
}
