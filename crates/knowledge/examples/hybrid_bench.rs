//! Hybrid search latency and memory at scale, end to end through [`Knowledge::search`]: the
//! query embedded by MiniLM, BM25 over tantivy, exact vector search, fusion, and the hits'
//! text and citations read back from the SQLite chunk store.
//!
//! ```text
//! cargo run --release -p landfall-knowledge --example hybrid_bench -- \
//!     --model MINILM_DIR --data ../shared/data/ir [--chunks 100000] [--queries 1000]
//! ```
//! The corpora under `--data` (BEIR folders) are written out as text files, copied as often
//! as it takes to reach `--chunks` chunks, and ingested through the real pipeline (parse,
//! chunk in MiniLM tokens, store, index). Embedding 100k chunks with MiniLM takes half an hour
//! on two cores, so chunk vectors are pseudo-random unit vectors derived from each chunk's
//! text: exact search reads every vector whatever its values, so its latency is the same. The
//! queries (every set's `queries.jsonl`, round robin) are embedded by the real model. Prints
//! one JSON object: ingest time, p50/p95/p99/max per mode, and memory.
#![expect(clippy::print_stdout, reason = "a benchmark prints its figures")]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::Context;
use async_trait::async_trait;
use landfall_config::KnowledgeConfig;
use landfall_documents::TokenSpans;
use landfall_knowledge::{
    Attachment, Caller, Embedder, FusionMethod, Knowledge, KnowledgeError, LocalEmbedder, NewStore,
    SearchMode, SearchRequest,
};
use landfall_storage::{IngestStatus, KnowledgeStore, SqliteStore};
use serde_json::{Value, json};

const TENANT: &str = "bench";
/// Documents per text file.
const DOCUMENTS_PER_FILE: usize = 200;
/// Files ingested between counts of the chunks so far.
const FILES_PER_ROUND: usize = 8;

struct Options {
    model: PathBuf,
    data: PathBuf,
    chunks: usize,
    queries: usize,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        model: PathBuf::new(),
        data: PathBuf::from("../shared/data/ir"),
        chunks: 100_000,
        queries: 1000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--model" => options.model = value()?.into(),
            "--data" => options.data = value()?.into(),
            "--chunks" => options.chunks = value()?.parse()?,
            "--queries" => options.queries = value()?.parse()?,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    anyhow::ensure!(
        !options.model.as_os_str().is_empty(),
        "--model DIR is required"
    );
    Ok(options)
}

/// MiniLM for queries; during ingestion, unit vectors seeded from each text's hash.
struct BenchEmbedder {
    model: LocalEmbedder,
    real: AtomicBool,
}

#[async_trait]
impl Embedder for BenchEmbedder {
    fn model_id(&self) -> &str {
        self.model.model_id()
    }

    fn dimensions(&self) -> usize {
        self.model.dimensions()
    }

    fn tokenizer(&self) -> Arc<dyn TokenSpans> {
        self.model.tokenizer()
    }

    async fn embed(
        &self,
        texts: Vec<String>,
        caller: &Caller,
    ) -> Result<Vec<Vec<f32>>, KnowledgeError> {
        if self.real.load(Ordering::Relaxed) {
            return self.model.embed(texts, caller).await;
        }
        Ok(texts
            .iter()
            .map(|text| pseudo_vector(text, self.dimensions()))
            .collect())
    }
}

fn pseudo_vector(text: &str, dimensions: usize) -> Vec<f32> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    let mut state = hasher.finish() | 1;
    let mut vector: Vec<f32> = (0..dimensions)
        .map(|_| {
            // xorshift64
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            #[expect(clippy::cast_precision_loss, reason = "a random fraction")]
            let unit = (state >> 40) as f32 / (1u64 << 24) as f32;
            unit - 0.5
        })
        .collect();
    let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
    vector.iter_mut().for_each(|v| *v /= norm);
    vector
}

/// A BEIR set: its name, document texts and query texts.
type Set = (String, Vec<String>, Vec<String>);

/// Every BEIR set under `data`.
fn read_sets(data: &Path) -> anyhow::Result<Vec<Set>> {
    let mut sets = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(data)
        .with_context(|| format!("reading {}", data.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.join("corpus.jsonl").is_file())
        .collect();
    dirs.sort();
    for dir in dirs {
        let lines = |name: &str| -> anyhow::Result<Vec<String>> {
            std::fs::read_to_string(dir.join(name))?
                .lines()
                .filter(|line| !line.trim().is_empty())
                .map(|line| {
                    let value: Value = serde_json::from_str(line)?;
                    let title = value["title"].as_str().unwrap_or_default();
                    let text = value["text"].as_str().unwrap_or_default();
                    Ok(if title.is_empty() {
                        text.to_owned()
                    } else {
                        format!("{title}\n{text}")
                    })
                })
                .collect()
        };
        let name = dir
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        sets.push((name, lines("corpus.jsonl")?, lines("queries.jsonl")?));
    }
    anyhow::ensure!(!sets.is_empty(), "no BEIR sets under {}", data.display());
    Ok(sets)
}

/// Waits for the `pending` files, checks they completed, and returns their chunk count.
async fn settle(
    knowledge: &Knowledge,
    store_id: &str,
    pending: &mut Vec<String>,
) -> anyhow::Result<usize> {
    knowledge.wait_idle().await;
    let mut chunks = 0;
    for file_id in pending.drain(..) {
        let record = knowledge.get_store_file(TENANT, store_id, &file_id).await?;
        anyhow::ensure!(
            record.status == IngestStatus::Completed,
            "{file_id} ended {:?}: {:?}",
            record.status,
            record.last_error
        );
        chunks += knowledge
            .file_chunks(TENANT, store_id, &file_id)
            .await?
            .len();
    }
    Ok(chunks)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "an index into a short list"
    )]
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

/// VmRSS and VmHWM of this process, in MiB.
fn memory_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let options = options()?;
    let sets = read_sets(&options.data)?;
    let work = tempfile::tempdir()?;

    let embedder = Arc::new(BenchEmbedder {
        model: LocalEmbedder::load(&options.model, 32)?,
        real: AtomicBool::new(false),
    });
    let store: Arc<dyn KnowledgeStore> =
        Arc::new(SqliteStore::open(&work.path().join("landfall.db")).await?);
    let config = KnowledgeConfig {
        index_dir: work.path().join("indexes"),
        max_file_bytes: 64 * 1024 * 1024,
        ..KnowledgeConfig::default()
    };
    let knowledge = Knowledge::open(&config, store, Some(embedder.clone()), None, None).await?;
    let store_id = knowledge
        .create_store(
            TENANT,
            NewStore {
                name: "bench".to_owned(),
                ..NewStore::default()
            },
        )
        .await?
        .record
        .id;

    // Ingest copies of every corpus until the store holds the asked-for chunks.
    let started = Instant::now();
    let (mut chunks, mut copy, mut files) = (0usize, 0usize, 0usize);
    let mut pending = Vec::new();
    'ingest: loop {
        for (name, documents, _) in &sets {
            for (part, group) in documents.chunks(DOCUMENTS_PER_FILE).enumerate() {
                // The first line makes every copy's content, and so its hash, unique.
                let content = format!(
                    "copy {copy} of {name} part {part}\n\n{}",
                    group.join("\n\n")
                );
                let file = knowledge
                    .upload_file(
                        TENANT,
                        &format!("{name}-{copy}-{part}.txt"),
                        "assistants",
                        content.as_bytes(),
                        None,
                    )
                    .await?;
                let attachment = Attachment {
                    file_id: file.id.clone(),
                    ..Attachment::default()
                };
                knowledge
                    .attach(TENANT, &store_id, attachment, None)
                    .await?;
                pending.push(file.id);
                if pending.len() < FILES_PER_ROUND {
                    continue;
                }
                chunks += settle(&knowledge, &store_id, &mut pending).await?;
                files += FILES_PER_ROUND;
                if chunks >= options.chunks {
                    break 'ingest;
                }
            }
        }
        copy += 1;
    }
    let ingest_seconds = started.elapsed().as_secs_f64();
    let (rss_after_ingest, _) = memory_mib();

    embedder.real.store(true, Ordering::Relaxed);
    let queries: Vec<&String> = {
        let mut round_robin = Vec::new();
        let longest = sets.iter().map(|(_, _, q)| q.len()).max().unwrap_or(0);
        for index in 0..longest {
            for (_, _, set_queries) in &sets {
                if let Some(query) = set_queries.get(index) {
                    round_robin.push(query);
                }
            }
        }
        round_robin.into_iter().take(options.queries).collect()
    };
    let stores = [store_id];
    let caller = Caller::background(TENANT);
    let mut report = serde_json::Map::new();
    for (label, mode) in [
        ("hybrid", SearchMode::Hybrid),
        ("keyword", SearchMode::Keyword),
        ("vector", SearchMode::Vector),
    ] {
        let request = |query: &str| SearchRequest {
            query: query.to_owned(),
            filter: None,
            max_results: 10,
            score_threshold: 0.0,
            mode,
            fusion: FusionMethod::Rrf,
            rewrite_query: false,
            hyde: false,
            fusion_queries: 0,
            rerank: false,
        };
        // Warm-up: page cache, first-call allocations.
        for query in queries.iter().take(20) {
            knowledge.search(&caller, &stores, &request(query)).await?;
        }
        let mut latencies = Vec::with_capacity(queries.len());
        let mut empty = 0;
        for query in &queries {
            let started = Instant::now();
            let results = knowledge.search(&caller, &stores, &request(query)).await?;
            latencies.push(started.elapsed().as_secs_f64() * 1000.0);
            empty += usize::from(results.hits.is_empty());
        }
        latencies.sort_by(f64::total_cmp);
        report.insert(
            label.to_owned(),
            json!({
                "p50_ms": percentile(&latencies, 0.50),
                "p95_ms": percentile(&latencies, 0.95),
                "p99_ms": percentile(&latencies, 0.99),
                "max_ms": latencies.last().copied().unwrap_or(0.0),
                "queries_without_hits": empty,
            }),
        );
    }
    let (rss, peak) = memory_mib();
    let disk: u64 = walk_size(work.path());
    println!(
        "{}",
        json!({
            "chunks": chunks,
            "files": files,
            "corpus_copies": copy + 1,
            "ingest_seconds": ingest_seconds,
            "queries": queries.len(),
            "modes": report,
            "rss_mib_after_ingest": rss_after_ingest,
            "rss_mib_after_queries": rss,
            "peak_rss_mib": peak,
            "disk_mib": disk as f64 / (1024.0 * 1024.0),
        })
    );
    knowledge.shutdown().await;
    Ok(())
}

fn walk_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                walk_size(&path)
            } else {
                entry.metadata().map_or(0, |meta| meta.len())
            }
        })
        .sum()
}
