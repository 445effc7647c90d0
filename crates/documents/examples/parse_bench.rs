//! Parses and chunks every PDF under a folder and prints pages/s per file and in total.
//!
//! ```text
//! cargo run --release -p landfall-documents --example parse_bench -- FOLDER [--tokenizer PATH/tokenizer.json]
//! ```
//! Without `--tokenizer` the built-in [`SimpleTokenizer`] counts tokens.

#![expect(
    clippy::print_stdout,
    reason = "a command-line benchmark reports on stdout"
)]

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use landfall_documents::{ChunkingOptions, Limits, SimpleTokenizer, TokenSpans, chunk, parse};

/// A Hugging Face tokenizer with padding and truncation off.
struct HfTokenizer(tokenizers::Tokenizer);

impl TokenSpans for HfTokenizer {
    fn token_spans(&self, text: &str) -> Result<Vec<Range<usize>>, String> {
        let encoding = self.0.encode(text, false).map_err(|e| e.to_string())?;
        Ok(encoding
            .get_offsets()
            .iter()
            .map(|&(start, end)| start..end)
            .collect())
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut folder = None;
    let mut tokenizer_path = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--tokenizer" => {
                tokenizer_path = Some(PathBuf::from(
                    args.next().context("--tokenizer needs a path")?,
                ))
            }
            _ if folder.is_none() => folder = Some(PathBuf::from(arg)),
            _ => bail!("usage: parse_bench FOLDER [--tokenizer tokenizer.json]"),
        }
    }
    let folder = folder.context("usage: parse_bench FOLDER [--tokenizer tokenizer.json]")?;
    let tokens: Box<dyn TokenSpans> = match &tokenizer_path {
        Some(path) => {
            let mut tokenizer =
                tokenizers::Tokenizer::from_file(path).map_err(|e| anyhow::anyhow!("{e}"))?;
            tokenizer.with_padding(None);
            tokenizer
                .with_truncation(None)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            Box::new(HfTokenizer(tokenizer))
        }
        None => Box::new(SimpleTokenizer),
    };
    let mut files = Vec::new();
    collect_pdfs(&folder, &mut files)?;
    files.sort();
    let options = ChunkingOptions::default();
    let limits = Limits::default();
    println!(
        "{:<45} {:>6} {:>7} {:>8} {:>8} {:>8} {:>9}",
        "file", "pages", "chunks", "parse s", "chunk s", "total s", "pages/s"
    );
    let (mut total_pages, mut total_chunks, mut total_parse, mut total_chunk) =
        (0u64, 0usize, Duration::ZERO, Duration::ZERO);
    for path in &files {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let started = Instant::now();
        let document = match parse(&name, &bytes, &limits) {
            Ok(document) => document,
            Err(error) => {
                println!("{name:<45} error: {error}");
                continue;
            }
        };
        let parsed = started.elapsed();
        let chunks = chunk(&document, tokens.as_ref(), &options)?;
        let chunked = started.elapsed() - parsed;
        let pages = u64::from(document.page_count.unwrap_or(0));
        let seconds = (parsed + chunked).as_secs_f64();
        println!(
            "{name:<45} {pages:>6} {:>7} {:>8.2} {:>8.3} {seconds:>8.2} {:>9.1}",
            chunks.len(),
            parsed.as_secs_f64(),
            chunked.as_secs_f64(),
            pages as f64 / seconds
        );
        total_pages += pages;
        total_chunks += chunks.len();
        total_parse += parsed;
        total_chunk += chunked;
    }
    let seconds = (total_parse + total_chunk).as_secs_f64();
    println!(
        "{:<45} {total_pages:>6} {total_chunks:>7} {:>8.2} {:>8.3} {seconds:>8.2} {:>9.1}",
        "TOTAL",
        total_parse.as_secs_f64(),
        total_chunk.as_secs_f64(),
        total_pages as f64 / seconds.max(f64::EPSILON)
    );
    Ok(())
}

fn collect_pdfs(folder: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in
        std::fs::read_dir(folder).with_context(|| format!("reading {}", folder.display()))?
    {
        let path = entry?.path();
        if path.is_dir() {
            collect_pdfs(&path, files)?;
        } else if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("pdf"))
        {
            files.push(path);
        }
    }
    Ok(())
}
