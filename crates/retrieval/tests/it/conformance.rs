//! One conformance suite for every [`VectorIndex`] and [`KeywordIndex`] backend: the
//! guarantees the traits document, checked against the reference filter semantics
//! ([`Filter::matches`] over [`filterable_attributes`]).
//!
//! The suites use fresh store ids and chunk ids derived from the clock, so they can run
//! against a shared, long-lived remote index, and clean up their stores at the end.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, ensure};
use futures::future::BoxFuture;
use landfall_retrieval::backends::filterable_attributes;
use landfall_retrieval::{
    ChunkId, Filter, Hit, IndexError, IndexedChunk, KeywordIndex, VectorIndex,
};
use serde_json::{Map, Value, json};

pub type OpenVector =
    Box<dyn Fn() -> BoxFuture<'static, anyhow::Result<Arc<dyn VectorIndex>>> + Send + Sync>;
pub type OpenKeyword =
    Box<dyn Fn() -> BoxFuture<'static, anyhow::Result<Arc<dyn KeywordIndex>>> + Send + Sync>;

/// Fresh ids for one suite run: a store-id prefix and a chunk-id base nobody else uses.
struct Run {
    prefix: String,
    base: ChunkId,
}

impl Run {
    fn new() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let unique = nanos / 1000 + COUNTER.fetch_add(1, Ordering::Relaxed) * 7919;
        // Chunk ids fit comfortably in i64 and in a Postgres bigint.
        let base = ((unique % 1_000_000_000_000) * 1000) as ChunkId;
        Self {
            prefix: format!("conformance-{unique:x}"),
            base,
        }
    }

    fn store(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    fn id(&self, n: i64) -> ChunkId {
        self.base + n
    }
}

fn attributes(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The attributes of chunks 1..=6 of store A: every filter of [`filter_table`] splits them.
fn attributes_of(n: i64) -> Map<String, Value> {
    attributes(match n {
        1 => json!({"region": "us", "year": 2024, "draft": false, "score": 0.5}),
        2 => json!({"region": "eu", "year": 2023, "draft": true}),
        3 => json!({"region": "apac", "year": 2025.5, "tag": "x"}),
        4 => json!({"year": "2024", "draft": false}),
        5 => json!({"region": "us", "year": 2020, "score": -1.5}),
        _ => json!({}),
    })
}

/// Filters covering every operator, compounds, missing keys, type mismatches, numbers
/// spelled as ints or floats, and `file_id`.
pub fn filter_table() -> Vec<Value> {
    vec![
        json!({"type": "eq", "key": "region", "value": "us"}),
        json!({"type": "eq", "key": "year", "value": 2024}),
        json!({"type": "eq", "key": "year", "value": 2024.0}),
        json!({"type": "eq", "key": "year", "value": "2024"}),
        json!({"type": "eq", "key": "draft", "value": false}),
        json!({"type": "eq", "key": "missing", "value": "x"}),
        json!({"type": "ne", "key": "region", "value": "us"}),
        json!({"type": "ne", "key": "draft", "value": true}),
        json!({"type": "gt", "key": "year", "value": 2023}),
        json!({"type": "gte", "key": "year", "value": 2023}),
        json!({"type": "lt", "key": "year", "value": 2024}),
        json!({"type": "lte", "key": "year", "value": 2024.0}),
        json!({"type": "gt", "key": "score", "value": -2}),
        json!({"type": "lt", "key": "score", "value": 0}),
        json!({"type": "gt", "key": "region", "value": "b"}),
        json!({"type": "lte", "key": "region", "value": "eu"}),
        json!({"type": "gt", "key": "region", "value": 1}),
        json!({"type": "in", "key": "region", "value": ["eu", "apac"]}),
        json!({"type": "in", "key": "year", "value": [2020, 2025.5, "2024"]}),
        json!({"type": "nin", "key": "region", "value": ["us"]}),
        json!({"type": "nin", "key": "missing", "value": ["us"]}),
        json!({"type": "eq", "key": "file_id", "value": "file-2"}),
        json!({"type": "in", "key": "file_id", "value": ["file-1", "file-3"]}),
        json!({"type": "and", "filters": [
            {"type": "eq", "key": "region", "value": "us"},
            {"type": "gte", "key": "year", "value": 2024}
        ]}),
        json!({"type": "or", "filters": [
            {"type": "eq", "key": "draft", "value": true},
            {"type": "eq", "key": "tag", "value": "x"}
        ]}),
        json!({"type": "and", "filters": [
            {"type": "or", "filters": [
                {"type": "eq", "key": "region", "value": "us"},
                {"type": "eq", "key": "region", "value": "eu"}
            ]},
            {"type": "ne", "key": "draft", "value": true}
        ]}),
    ]
}

fn parse_filter(value: &Value) -> anyhow::Result<Filter> {
    serde_json::from_value(value.clone()).with_context(|| format!("bad table filter {value}"))
}

fn ids(hits: &[Hit]) -> Vec<ChunkId> {
    hits.iter().map(|h| h.id).collect()
}

fn ensure_ordered(hits: &[Hit]) -> anyhow::Result<()> {
    for pair in hits.windows(2) {
        ensure!(
            pair[0].score > pair[1].score
                || (pair[0].score == pair[1].score && pair[0].id < pair[1].id),
            "hits not ordered by score desc, id asc: {hits:?}"
        );
    }
    Ok(())
}

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() < 1e-3
}

fn unit(axis: usize) -> Vec<f32> {
    let mut v = vec![0.0; 8];
    v[axis] = 1.0;
    v
}

fn vector_of(n: i64) -> Vec<f32> {
    let mut v = vec![0.0; 8];
    match n {
        1 => v[0] = 1.0,
        2 => (v[0], v[1]) = (1.0, 1.0),
        3 => v[1] = 1.0,
        4 => (v[0], v[3]) = (3.0, 4.0),
        5 => (v[0], v[3]) = (6.0, 8.0),
        _ => (v[0], v[2]) = (-1.0, 1.0),
    }
    v
}

fn chunk(run: &Run, store: &str, n: i64, text: &str, vector: Vec<f32>) -> IndexedChunk {
    IndexedChunk {
        id: run.id(n),
        store_id: run.store(store),
        file_id: format!("file-{}", n % 4),
        text: text.to_string(),
        attributes: attributes_of(n),
        vector,
    }
}

/// Store A's chunks 1..=6, in files file-1, file-2, file-3, file-0, file-1, file-2.
fn store_a(run: &Run, text: impl Fn(i64) -> &'static str) -> Vec<IndexedChunk> {
    (1..=6)
        .map(|n| chunk(run, "a", n, text(n), vector_of(n)))
        .collect()
}

fn reference(chunks: &[IndexedChunk], filter: &Filter) -> BTreeSet<ChunkId> {
    chunks
        .iter()
        .filter(|c| filter.matches(&filterable_attributes(c)))
        .map(|c| c.id)
        .collect()
}

/// The vector-index suite. `persistent`: whether committed data must survive reopening.
pub async fn vector_index_suite(open: OpenVector, persistent: bool) -> anyhow::Result<()> {
    let run = Run::new();
    let (a, b) = (vec![run.store("a")], vec![run.store("b")]);
    let index = open().await?;
    let chunks = store_a(&run, |_| "");
    index.add(&chunks).await?;
    index
        .add(&[
            chunk(&run, "b", 11, "", unit(0)),
            chunk(&run, "b", 12, "", unit(1)),
        ])
        .await?;
    index.commit(10).await?;
    ensure!(index.checkpoint().await? == 10, "checkpoint after commit");

    // Ordering and cosine scores; ties (4 and 5 are the same direction) by id.
    let hits = index.search(&a, &unit(0), None, 10).await?;
    ensure!(
        ids(&hits)[..5] == [run.id(1), run.id(2), run.id(4), run.id(5), run.id(3)],
        "order: {hits:?}"
    );
    let expected = [1.0, std::f32::consts::FRAC_1_SQRT_2, 0.6, 0.6, 0.0];
    for (hit, want) in hits.iter().zip(expected) {
        ensure!(
            close(hit.score, want),
            "cosine of {} is {}, want {want}",
            hit.id,
            hit.score
        );
    }
    ensure_ordered(&hits)?;
    ensure!(
        hits.len() == 6,
        "every chunk of the store is a candidate: {hits:?}"
    );
    // A query need not be normalized.
    let scaled = index
        .search(&a, &[5.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], None, 1)
        .await?;
    ensure!(
        ids(&scaled) == [run.id(1)] && close(scaled[0].score, 1.0),
        "scaled {scaled:?}"
    );

    // Limit and store isolation.
    ensure!(
        index.search(&a, &unit(0), None, 2).await?.len() == 2,
        "limit 2"
    );
    let in_b = index.search(&b, &unit(0), None, 10).await?;
    ensure!(ids(&in_b) == [run.id(11), run.id(12)], "store b: {in_b:?}");
    let both = index
        .search(&[a[0].clone(), b[0].clone()], &unit(0), None, 3)
        .await?;
    ensure!(
        ids(&both) == [run.id(1), run.id(11), run.id(2)],
        "stores a+b: {both:?}"
    );
    let none = index
        .search(&[run.store("empty")], &unit(0), None, 10)
        .await?;
    ensure!(none.is_empty(), "unknown store: {none:?}");

    // Every filter agrees with the reference semantics.
    for value in filter_table() {
        let filter = parse_filter(&value)?;
        let got: BTreeSet<ChunkId> = ids(&index.search(&a, &unit(0), Some(&filter), 100).await?)
            .into_iter()
            .collect();
        ensure!(
            got == reference(&chunks, &filter),
            "filter {value}: got {got:?}"
        );
    }

    // Idempotent re-add (with a new vector) keeps one copy.
    index.add(&[chunk(&run, "a", 1, "", unit(1))]).await?;
    index.commit(11).await?;
    let hits = index.search(&a, &unit(1), None, 10).await?;
    ensure!(
        hits.iter().filter(|h| h.id == run.id(1)).count() == 1,
        "one copy: {hits:?}"
    );
    ensure!(
        hits[0].id == run.id(1) && close(hits[0].score, 1.0),
        "re-added: {hits:?}"
    );

    // Dimensions are fixed.
    let wrong = IndexedChunk {
        vector: vec![1.0; 5],
        ..chunk(&run, "a", 7, "", unit(0))
    };
    let refused = index.add(&[wrong]).await;
    ensure!(
        matches!(refused, Err(IndexError::Invalid(_))),
        "5 dims accepted: {refused:?}"
    );

    // Deletes.
    index.delete_file(&a[0], "file-2").await?;
    index.delete_store(&b[0]).await?;
    index.commit(12).await?;
    let left: BTreeSet<ChunkId> = ids(&index.search(&a, &unit(0), None, 10).await?)
        .into_iter()
        .collect();
    let want: BTreeSet<ChunkId> = [1, 3, 4, 5].map(|n| run.id(n)).into();
    ensure!(left == want, "after delete_file: {left:?}");
    ensure!(
        index.search(&b, &unit(0), None, 10).await?.is_empty(),
        "store b deleted"
    );

    // Reopen.
    drop(index);
    let index = open().await?;
    if persistent {
        ensure!(index.checkpoint().await? == 12, "checkpoint after reopen");
        let again: BTreeSet<ChunkId> = ids(&index.search(&a, &unit(0), None, 10).await?)
            .into_iter()
            .collect();
        ensure!(again == want, "after reopen: {again:?}");
    }
    index.delete_store(&a[0]).await?;
    index.commit(13).await?;
    ensure!(
        index.search(&a, &unit(0), None, 10).await?.is_empty(),
        "store a deleted"
    );
    Ok(())
}

fn keyword_text(n: i64) -> &'static str {
    match n {
        1 => "common apple banana",
        2 => "common apple",
        3 => "common cherry",
        4 | 5 => "common durian",
        _ => "common 北京是中华人民共和国的首都",
    }
}

/// The keyword-index suite. Committed data must survive reopening.
pub async fn keyword_index_suite(open: OpenKeyword) -> anyhow::Result<()> {
    let run = Run::new();
    let (a, b) = (vec![run.store("a")], vec![run.store("b")]);
    let index = open().await?;
    let chunks = store_a(&run, keyword_text);
    index.add(&chunks).await?;
    index
        .add(&[chunk(&run, "b", 11, "common apple banana", Vec::new())])
        .await?;
    index.commit(20).await?;
    ensure!(index.checkpoint().await? == 20, "checkpoint after commit");

    // The chunk with every query term ranks first; scores are positive; ties by id.
    let hits = index.search(&a, "banana apple", None, 10).await?;
    ensure!(
        ids(&hits)[..2] == [run.id(1), run.id(2)],
        "apple banana: {hits:?}"
    );
    ensure!(
        hits.iter().all(|h| h.score > 0.0),
        "positive scores: {hits:?}"
    );
    ensure_ordered(&hits)?;
    let ties = index.search(&a, "durian", None, 10).await?;
    ensure!(ids(&ties) == [run.id(4), run.id(5)], "ties by id: {ties:?}");
    let chinese = index.search(&a, "首都", None, 10).await?;
    ensure!(
        ids(&chinese) == [run.id(6)] && chinese[0].score > 0.0,
        "chinese: {chinese:?}"
    );
    let syntax = index
        .search(&a, "apple AND \"banana OR title:x", None, 10)
        .await?;
    ensure!(
        syntax.first().map(|h| h.id) == Some(run.id(1)),
        "plain-text query: {syntax:?}"
    );
    ensure!(
        index.search(&a, "zzzz", None, 10).await?.is_empty(),
        "no match"
    );

    // Limit and store isolation.
    ensure!(
        index.search(&a, "common", None, 3).await?.len() == 3,
        "limit 3"
    );
    let in_b = index.search(&b, "apple", None, 10).await?;
    ensure!(ids(&in_b) == [run.id(11)], "store b: {in_b:?}");
    let both = index
        .search(&[a[0].clone(), b[0].clone()], "banana", None, 10)
        .await?;
    let both: BTreeSet<ChunkId> = ids(&both).into_iter().collect();
    ensure!(
        both == [run.id(1), run.id(11)].into(),
        "stores a+b: {both:?}"
    );

    for value in filter_table() {
        let filter = parse_filter(&value)?;
        let got: BTreeSet<ChunkId> = ids(&index.search(&a, "common", Some(&filter), 100).await?)
            .into_iter()
            .collect();
        ensure!(
            got == reference(&chunks, &filter),
            "filter {value}: got {got:?}"
        );
    }

    // Idempotent re-add (with new text).
    index
        .add(&[chunk(&run, "a", 1, "common elderberry", Vec::new())])
        .await?;
    index.commit(21).await?;
    ensure!(
        index.search(&a, "banana", None, 10).await?.is_empty(),
        "old text gone"
    );
    let common = index.search(&a, "common", None, 100).await?;
    ensure!(common.len() == 6, "one copy each: {common:?}");

    // Deletes.
    index.delete_file(&a[0], "file-2").await?;
    index.delete_store(&b[0]).await?;
    index.commit(22).await?;
    let left: BTreeSet<ChunkId> = ids(&index.search(&a, "common", None, 10).await?)
        .into_iter()
        .collect();
    let want: BTreeSet<ChunkId> = [1, 3, 4, 5].map(|n| run.id(n)).into();
    ensure!(left == want, "after delete_file: {left:?}");
    ensure!(
        index.search(&b, "apple", None, 10).await?.is_empty(),
        "store b deleted"
    );

    // Reopen keeps committed data and the checkpoint.
    drop(index);
    let index = open().await?;
    ensure!(index.checkpoint().await? == 22, "checkpoint after reopen");
    let again: BTreeSet<ChunkId> = ids(&index.search(&a, "common", None, 10).await?)
        .into_iter()
        .collect();
    ensure!(again == want, "after reopen: {again:?}");
    index.delete_store(&a[0]).await?;
    index.commit(23).await?;
    ensure!(
        index.search(&a, "common", None, 10).await?.is_empty(),
        "store a deleted"
    );
    Ok(())
}
