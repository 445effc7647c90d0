//! The Chroma index on the server at `LANDFALL_TEST_CHROMA_URL` (started by
//! `eval "$(scripts/vector-backends.sh start)"`): the conformance suite, plus what only it
//! promises. Each test uses a collection of its own and deletes it. Skipped, saying why, when
//! the variable is unset, unless `LANDFALL_REQUIRE_VECTOR_BACKENDS=1`.
#![expect(
    clippy::print_stderr,
    reason = "tests report skips and measured figures"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use futures::FutureExt;
use landfall_retrieval::backends::chroma::{ChromaIndex, ChromaOptions};
use landfall_retrieval::{IndexError, IndexedChunk, VectorIndex};
use serde_json::{Map, json};

use super::conformance::{OpenVector, vector_index_suite};
use super::pgvector::{pseudo_random_vector, unique_name, vector_backends_required};

/// The server's URL, or `None` (having said why) when this test should be skipped.
fn chroma_url(test: &str) -> anyhow::Result<Option<String>> {
    match std::env::var("LANDFALL_TEST_CHROMA_URL") {
        Ok(url) if !url.is_empty() => Ok(Some(url)),
        _ if vector_backends_required() => {
            bail!("LANDFALL_REQUIRE_VECTOR_BACKENDS=1 but LANDFALL_TEST_CHROMA_URL is unset")
        }
        _ => {
            eprintln!(
                "skipping Chroma test `{test}`: LANDFALL_TEST_CHROMA_URL is unset \
                 (eval \"$(scripts/vector-backends.sh start)\" sets it)"
            );
            Ok(None)
        }
    }
}

async fn open_fresh(test: &str) -> anyhow::Result<Option<(ChromaOptions, ChromaIndex)>> {
    let Some(url) = chroma_url(test)? else {
        return Ok(None);
    };
    let options = ChromaOptions::new(&url, &unique_name("landfall_test"));
    let index = ChromaIndex::open(options.clone())
        .await
        .with_context(|| format!("the Chroma tests need a Chroma server at {url}"))?;
    Ok(Some((options, index)))
}

fn chunk(id: i64, store: &str, file: &str, vector: Vec<f32>) -> IndexedChunk {
    IndexedChunk {
        id,
        store_id: store.into(),
        file_id: file.into(),
        text: String::new(),
        attributes: Map::new(),
        vector,
    }
}

#[tokio::test]
async fn chroma_passes_the_conformance_suite() -> anyhow::Result<()> {
    let Some((options, index)) = open_fresh("conformance").await? else {
        return Ok(());
    };
    let reopen = options.clone();
    let open: OpenVector = Box::new(move || {
        let options = reopen.clone();
        async move { Ok(Arc::new(ChromaIndex::open(options).await?) as Arc<dyn VectorIndex>) }
            .boxed()
    });
    let outcome = vector_index_suite(open, true).await;
    index.drop_collection().await?;
    outcome
}

#[tokio::test]
async fn queued_changes_are_invisible_until_commit() -> anyhow::Result<()> {
    let Some((options, index)) = open_fresh("uncommitted").await? else {
        return Ok(());
    };
    let store = vec!["s".to_string()];
    let outcome = async {
        // The same id twice in one batch: the last copy wins.
        index
            .add(&[
                chunk(1, "s", "f", vec![0.0, 1.0]),
                chunk(1, "s", "f", vec![1.0, 0.0]),
            ])
            .await?;
        ensure!(
            index.search(&store, &[1.0, 0.0], None, 5).await?.is_empty(),
            "visible before commit"
        );
        index.commit(7).await?;
        let hits = index.search(&store, &[1.0, 0.0], None, 5).await?;
        ensure!(
            hits.len() == 1 && (hits[0].score - 1.0).abs() < 1e-4,
            "{hits:?}"
        );
        index.delete_store("s").await?;
        let reopened = ChromaIndex::open(options.clone()).await?;
        ensure!(reopened.checkpoint().await? == 7, "checkpoint after reopen");
        ensure!(
            reopened.search(&store, &[1.0, 0.0], None, 5).await?.len() == 1,
            "delete queued"
        );
        let refused = reopened
            .add(&[chunk(2, "s", "f", vec![1.0, 0.0, 0.0])])
            .await;
        ensure!(
            matches!(refused, Err(IndexError::Invalid(_))),
            "{refused:?}"
        );
        let refused = reopened.search(&store, &[1.0, 0.0, 0.0], None, 5).await;
        ensure!(
            matches!(refused, Err(IndexError::Invalid(_))),
            "{refused:?}"
        );
        Ok(())
    }
    .await;
    index.drop_collection().await?;
    outcome
}

/// A string-ordering filter, which Chroma cannot evaluate, is checked on returned metadata:
/// it still fills the limit when few candidates pass. Reports add and search latency.
#[tokio::test]
async fn filters_checked_here_still_fill_the_limit() -> anyhow::Result<()> {
    let Some((_, index)) = open_fresh("string ordering").await? else {
        return Ok(());
    };
    let outcome = async {
        let dimensions = 32;
        let chunks: Vec<IndexedChunk> = (0..2_000_i64)
            .map(|id| {
                let vector = pseudo_random_vector(id, dimensions);
                let mut chunk = chunk(id, "s", "f", vector);
                let label = if id % 100 == 0 { "zz" } else { "aa" };
                chunk.attributes.insert("label".into(), json!(label));
                chunk
            })
            .collect();
        let started = Instant::now();
        index.add(&chunks).await?;
        index.commit(1).await?;
        eprintln!(
            "chroma: added and committed 2000 x {dimensions} in {:?}",
            started.elapsed()
        );
        let filter = serde_json::from_value(json!({"type": "gt", "key": "label", "value": "m"}))?;
        let started = Instant::now();
        let hits = index
            .search(&["s".into()], &chunks[3].vector, Some(&filter), 10)
            .await?;
        eprintln!(
            "chroma: search with a filter checked here in {:?}",
            started.elapsed()
        );
        ensure!(hits.len() == 10, "{} hits", hits.len());
        ensure!(hits.iter().all(|hit| hit.id % 100 == 0), "{hits:?}");
        let started = Instant::now();
        let hits = index
            .search(&["s".into()], &chunks[3].vector, None, 10)
            .await?;
        eprintln!("chroma: unfiltered search in {:?}", started.elapsed());
        ensure!(hits.len() == 10, "{hits:?}");
        ensure!(
            hits[0].id == 3 && (hits[0].score - 1.0).abs() < 1e-4,
            "{hits:?}"
        );
        Ok(())
    }
    .await;
    index.drop_collection().await?;
    outcome
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable_quickly() -> anyhow::Result<()> {
    let mut options = ChromaOptions::new("http://127.0.0.1:1", "x");
    options.timeout = Duration::from_secs(2);
    let started = Instant::now();
    let refused = ChromaIndex::open(options).await;
    ensure!(
        matches!(refused, Err(IndexError::Unavailable(_))),
        "{:?}",
        refused.err()
    );
    ensure!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    Ok(())
}
