//! Measures the embedded exact vector index against HNSW (`hnsw_rs`) on the same vectors:
//! build time, memory, p50/p99 query latency and recall@10 against exact search.
//!
//! ```text
//! cargo run --release -p landfall-retrieval --example vector_bench -- [--sizes 10000,100000]
//!     [--dims 384] [--queries 200] [--vectors FILE] [--no-hnsw]
//! ```
//! `--vectors FILE` reads raw little-endian f32 vectors of `--dims` dimensions (e.g. MiniLM
//! embeddings of a corpus); without it the vectors are a synthetic clustered set (unit
//! vectors around 200 random centres), which, like real embeddings, has much more structure
//! than uniform noise. Queries are held-out vectors from the same distribution.
#![expect(clippy::print_stdout, reason = "a benchmark prints its figures")]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hnsw_rs::prelude::{DistCosine, Hnsw};
use landfall_retrieval::backends::vectors::FlatVectorIndex;
use landfall_retrieval::{ChunkId, Filter, IndexedChunk, VectorIndex};
use serde_json::{Map, json};

struct Options {
    sizes: Vec<usize>,
    dims: usize,
    queries: usize,
    vectors: Option<String>,
    hnsw: bool,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        sizes: vec![10_000, 100_000],
        dims: 384,
        queries: 200,
        vectors: None,
        hnsw: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--sizes" => {
                options.sizes = value()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?;
            }
            "--dims" => options.dims = value()?.parse()?,
            "--queries" => options.queries = value()?.parse()?,
            "--vectors" => options.vectors = Some(value()?),
            "--no-hnsw" => options.hnsw = false,
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(options)
}

/// splitmix64: a deterministic generator, so every run measures the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f32 {
        ((self.next() >> 40) as f32 + 0.5) / (1u64 << 24) as f32
    }

    fn gaussian(&mut self) -> f32 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    }
}

fn normalize(v: &mut [f32]) {
    let norm = v
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::MIN_POSITIVE);
    v.iter_mut().for_each(|x| *x /= norm);
}

fn synthetic(count: usize, dims: usize) -> Vec<Vec<f32>> {
    let mut rng = Rng(42);
    let centres: Vec<Vec<f32>> = (0..200)
        .map(|_| (0..dims).map(|_| rng.gaussian()).collect())
        .collect();
    (0..count)
        .map(|_| {
            let centre = &centres[(rng.next() % centres.len() as u64) as usize];
            // Noise of about the centre's own norm: clusters overlap like topics do.
            let mut v: Vec<f32> = centre.iter().map(|c| c + 0.9 * rng.gaussian()).collect();
            normalize(&mut v);
            v
        })
        .collect()
}

fn read_vectors(path: &str, dims: usize) -> anyhow::Result<Vec<Vec<f32>>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {path}"))?;
    if bytes.len() % (dims * 4) != 0 {
        bail!(
            "{path}: {} bytes is not a whole number of {dims}-dim f32 vectors",
            bytes.len()
        );
    }
    let floats: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok(floats.chunks_exact(dims).map(|v| v.to_vec()).collect())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn latency_line(name: &str, mut times: Vec<Duration>) -> String {
    times.sort();
    format!(
        "{name:<28} p50 {:>8.3} ms  p99 {:>8.3} ms",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3
    )
}

fn recall(exact: &[Vec<ChunkId>], approximate: &[Vec<ChunkId>]) -> f64 {
    let mut found = 0usize;
    let mut total = 0usize;
    for (truth, got) in exact.iter().zip(approximate) {
        let got: HashSet<&ChunkId> = got.iter().collect();
        found += truth.iter().filter(|id| got.contains(id)).count();
        total += truth.len();
    }
    found as f64 / total.max(1) as f64
}

async fn bench(
    size: usize,
    data: &[Vec<f32>],
    queries: &[Vec<f32>],
    hnsw: bool,
) -> anyhow::Result<()> {
    let base = &data[..size];
    println!(
        "\n== {size} vectors x {} dims, {} queries",
        base[0].len(),
        queries.len()
    );
    let stores = vec!["bench".to_string()];

    let before = resident_bytes();
    let started = Instant::now();
    let index = FlatVectorIndex::new();
    for (batch, vectors) in base.chunks(1000).enumerate() {
        let chunks: Vec<IndexedChunk> = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| IndexedChunk {
                id: (batch * 1000 + i) as ChunkId,
                store_id: "bench".into(),
                file_id: format!("file-{}", (batch * 1000 + i) % 100),
                text: String::new(),
                attributes: Map::new(),
                vector: v.clone(),
            })
            .collect();
        index.add(&chunks).await?;
    }
    index.commit(1).await?;
    println!(
        "exact: load {:.2} s, index {:.1} MiB (RSS +{:.1} MiB)",
        started.elapsed().as_secs_f64(),
        index.memory_bytes() as f64 / 1048576.0,
        resident_bytes().saturating_sub(before) as f64 / 1048576.0
    );

    let mut exact_ids = Vec::new();
    let mut times = Vec::new();
    for query in queries {
        let started = Instant::now();
        let hits = index.search_blocking(&stores, query, None, 10)?;
        times.push(started.elapsed());
        exact_ids.push(hits.iter().map(|h| h.id).collect::<Vec<_>>());
    }
    println!("{}", latency_line("exact, one thread", times));

    let filter: Filter = serde_json::from_value(
        json!({"type": "in", "key": "file_id", "value": ["file-1", "file-2", "file-3"]}),
    )?;
    let mut times = Vec::new();
    for query in queries {
        let started = Instant::now();
        index.search_blocking(&stores, query, Some(&filter), 10)?;
        times.push(started.elapsed());
    }
    println!("{}", latency_line("exact + filter (3% pass)", times));

    let mut times = Vec::new();
    for query in queries {
        let started = Instant::now();
        index.search(&stores, query, None, 10).await?;
        times.push(started.elapsed());
    }
    println!("{}", latency_line("exact via spawn_blocking", times));

    // Two searches at once (the 2-core machine's worth of parallel requests).
    let started = Instant::now();
    let mut tasks = Vec::new();
    for half in queries.chunks(queries.len().div_ceil(2)) {
        let (index, stores, half) = (index.clone(), stores.clone(), half.to_vec());
        tasks.push(tokio::spawn(async move {
            for query in &half {
                index.search(&stores, query, None, 10).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    println!(
        "exact, 2 concurrent          {:.0} queries/s",
        queries.len() as f64 / started.elapsed().as_secs_f64()
    );

    if !hnsw {
        return Ok(());
    }
    let before = resident_bytes();
    let started = Instant::now();
    let graph: Hnsw<f32, DistCosine> = Hnsw::new(16, size, 16, 200, DistCosine {});
    let with_ids: Vec<(&Vec<f32>, usize)> = base.iter().enumerate().map(|(i, v)| (v, i)).collect();
    graph.parallel_insert(&with_ids);
    println!(
        "hnsw (M 16, ef_c 200): build {:.2} s on all cores, RSS +{:.1} MiB",
        started.elapsed().as_secs_f64(),
        resident_bytes().saturating_sub(before) as f64 / 1048576.0
    );
    for ef in [32, 64, 128, 256] {
        let mut times = Vec::new();
        let mut ids = Vec::new();
        for query in queries {
            let started = Instant::now();
            let found = graph.search(query, 10, ef);
            times.push(started.elapsed());
            ids.push(found.iter().map(|n| n.d_id as ChunkId).collect::<Vec<_>>());
        }
        let line = latency_line(&format!("hnsw ef {ef}"), times);
        println!("{line}  recall@10 {:.4}", recall(&exact_ids, &ids));
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let options = options()?;
    let largest = options.sizes.iter().copied().max().unwrap_or(0);
    let all = match &options.vectors {
        Some(path) => read_vectors(path, options.dims)?,
        None => synthetic(largest + options.queries, options.dims),
    };
    if all.len() <= options.queries {
        bail!(
            "need more than {} vectors, have {}",
            options.queries,
            all.len()
        );
    }
    let (queries, data) = all.split_at(options.queries);
    for &size in &options.sizes {
        if size > data.len() {
            println!("skipping {size}: only {} vectors", data.len());
            continue;
        }
        bench(size, data, queries, options.hnsw).await?;
    }
    Ok(())
}
