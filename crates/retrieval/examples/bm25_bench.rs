//! BM25 speed of the keyword index (tantivy, jieba + stemming analyzer) on a BEIR corpus:
//! index build time and per-query latency for top-10, one query at a time, as one JSON line.
//! `scripts/bench-bm25.sh` runs it side by side with `bm25s` on the same documents.
//!
//! ```text
//! cargo run --release -p landfall-retrieval --example bm25_bench -- DATASET_DIR [--repeat N]
//! ```
//! `--repeat N` indexes the corpus N times (ids made unique) to measure a larger index.
#![expect(clippy::print_stdout, reason = "a benchmark prints its figures")]

use std::time::Instant;

use anyhow::Context;
use landfall_retrieval::backends::tantivy::TantivyKeywordIndex;
use landfall_retrieval::eval::load_beir;
use landfall_retrieval::{IndexedChunk, KeywordIndex};
use serde_json::{Map, json};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dataset = args
        .next()
        .context("usage: bm25_bench DATASET_DIR [--repeat N]")?;
    let mut repeat = 1usize;
    while let Some(arg) = args.next() {
        if arg == "--repeat" {
            repeat = args.next().context("--repeat N")?.parse()?;
        }
    }
    let data = load_beir(std::path::Path::new(&dataset), "test")?;
    let dir = tempfile::tempdir()?;
    let index = TantivyKeywordIndex::open(dir.path())?;
    let started = Instant::now();
    let mut id = 0i64;
    for _ in 0..repeat {
        let chunks: Vec<IndexedChunk> = data
            .corpus
            .iter()
            .map(|doc| {
                id += 1;
                IndexedChunk {
                    id,
                    store_id: "bench".to_owned(),
                    file_id: doc.id.clone(),
                    text: format!("{} {}", doc.title, doc.text),
                    attributes: Map::new(),
                    vector: Vec::new(),
                }
            })
            .collect();
        for batch in chunks.chunks(5000) {
            index.add(batch).await?;
        }
    }
    index.commit(1).await?;
    let build_seconds = started.elapsed().as_secs_f64();

    let stores = ["bench".to_owned()];
    // Warm-up: the first searches load the segment readers.
    for query in data.queries.iter().take(10) {
        index.search(&stores, &query.text, None, 10).await?;
    }
    let mut latencies_ms = Vec::with_capacity(data.queries.len());
    let started = Instant::now();
    for query in &data.queries {
        let one = Instant::now();
        index.search(&stores, &query.text, None, 10).await?;
        latencies_ms.push(one.elapsed().as_secs_f64() * 1000.0);
    }
    let total_seconds = started.elapsed().as_secs_f64();
    latencies_ms.sort_by(f64::total_cmp);
    let at = |q: f64| latencies_ms[((latencies_ms.len() - 1) as f64 * q).round() as usize];
    println!(
        "{}",
        json!({
            "implementation": "landfall (tantivy)",
            "documents": data.corpus.len() * repeat,
            "queries": data.queries.len(),
            "build_seconds": build_seconds,
            "queries_per_second": data.queries.len() as f64 / total_seconds,
            "p50_ms": at(0.5),
            "p99_ms": at(0.99),
        })
    );
    Ok(())
}
