//! Embedding throughput of [`BertEmbedder`] on a file of texts, as one JSON line on stdout.
//!
//! ```text
//! cargo run --release -p landfall-models --example embed_bench -- \
//!     MODEL_DIR TEXTS.jsonl [--batch-size 32] [--out VECTORS.json] [--vectors N]
//! ```
//! `TEXTS.jsonl` holds one JSON string per line. `--out` writes the first N (default 100)
//! vectors for comparison with another implementation. `scripts/bench-embeddings.sh` runs it
//! side by side with sentence-transformers.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use landfall_models::{BertEmbedder, EmbedderOptions};

struct Args {
    model_dir: PathBuf,
    texts: PathBuf,
    batch_size: usize,
    out: Option<PathBuf>,
    vectors: usize,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut positional = Vec::new();
    let (mut batch_size, mut out, mut vectors) = (32, None, 100);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--batch-size" => batch_size = args.next().context("--batch-size N")?.parse()?,
            "--out" => out = Some(PathBuf::from(args.next().context("--out FILE")?)),
            "--vectors" => vectors = args.next().context("--vectors N")?.parse()?,
            _ => positional.push(arg),
        }
    }
    let [model_dir, texts] = <[String; 2]>::try_from(positional)
        .map_err(|_| anyhow::anyhow!("usage: embed_bench MODEL_DIR TEXTS.jsonl [options]"))?;
    Ok(Args {
        model_dir: model_dir.into(),
        texts: texts.into(),
        batch_size,
        out,
        vectors,
    })
}

#[expect(clippy::print_stdout, reason = "the benchmark's output")]
fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let texts: Vec<String> = std::fs::read_to_string(&args.texts)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();

    let started = Instant::now();
    let model = BertEmbedder::load(
        &args.model_dir,
        EmbedderOptions {
            batch_size: args.batch_size,
            ..EmbedderOptions::default()
        },
    )?;
    let load_seconds = started.elapsed().as_secs_f64();

    // Warm-up: first-call allocations and thread-pool start are not throughput.
    model.embed(&refs[..refs.len().min(args.batch_size)])?;
    let started = Instant::now();
    let vectors = model.embed(&refs)?;
    let seconds = started.elapsed().as_secs_f64();

    if let Some(out) = &args.out {
        let first: Vec<&Vec<f32>> = vectors.iter().take(args.vectors).collect();
        std::fs::write(out, serde_json::to_vec(&first)?)?;
    }
    let report = serde_json::json!({
        "implementation": "landfall-models (candle)",
        "model": model.model_id(),
        "texts": texts.len(),
        "batch_size": args.batch_size,
        "load_seconds": load_seconds,
        "seconds": seconds,
        "texts_per_second": texts.len() as f64 / seconds,
        "rayon_threads": std::env::var("RAYON_NUM_THREADS").ok(),
    });
    println!("{report}");
    Ok(())
}
