//! Retrieval evaluation on BEIR-format collections (`corpus.jsonl`, `queries.jsonl`,
//! `qrels/test.tsv`): the corpus is chunked and indexed with the same chunker, indexes and
//! fusion as knowledge bases, each query is searched by BM25, by vectors and hybrid (RRF, and
//! the weighted sum of normalized scores), chunks
//! are rolled up to documents (a document ranks at its best chunk), and nDCG@10, Recall@10,
//! Recall@100 and MRR@10 are reported with ingest and query timings. A BM25 over single
//! characters (the usual baseline for Chinese without a segmenter) is reported alongside.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use landfall_documents::{ChunkingOptions, Limits, SimpleTokenizer, TokenSpans};
use landfall_retrieval::backends::tantivy::TantivyKeywordIndex;
use landfall_retrieval::backends::vectors::FlatVectorIndex;
use landfall_retrieval::eval::{Metrics, evaluate, load_beir};
use landfall_retrieval::{Hit, IndexedChunk, KeywordIndex, VectorIndex};
use serde::Serialize;
use serde_json::Map;

use crate::search::{FusionMethod, fuse};
use crate::{Caller, Embedder, KnowledgeError};

/// Chunks each retriever returns per query before they are rolled up to documents.
const CANDIDATE_CHUNKS: usize = 300;
const STORE: &str = "eval";
/// The vector weight of the `hybrid_weighted` mode: `[knowledge.search] vector_weight`'s
/// default.
const WEIGHTED_VECTOR_WEIGHT: f32 = 0.5;

/// One retrieval mode's scores and speed.
#[derive(Debug, Clone, Serialize)]
pub struct ModeReport {
    pub mode: &'static str,
    pub ndcg_at_10: f64,
    pub recall_at_10: f64,
    pub recall_at_100: f64,
    pub mrr_at_10: f64,
    pub query_ms_p50: f64,
    pub query_ms_p99: f64,
}

/// What `landfall eval retrieval` reports for one collection.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub dataset: String,
    pub documents: usize,
    pub chunks: usize,
    pub queries: usize,
    pub embedding_model: Option<String>,
    /// Chunking and BM25 indexing.
    pub index_seconds: f64,
    /// Embedding every chunk (0 without an embedder).
    pub embed_seconds: f64,
    pub modes: Vec<ModeReport>,
}

/// Evaluates the collection in `dataset`, keeping indexes under `work_dir`.
///
/// # Errors
/// When the collection cannot be read, or an index or the embedder fails.
pub async fn evaluate_dataset(
    dataset: &Path,
    work_dir: &Path,
    embedder: Option<Arc<dyn Embedder>>,
    max_queries: Option<usize>,
) -> Result<EvalReport, KnowledgeError> {
    let path = dataset.to_owned();
    let mut data = tokio::task::spawn_blocking(move || load_beir(&path, "test"))
        .await
        .map_err(|error| KnowledgeError::Unavailable(error.to_string()))?
        .map_err(|error| KnowledgeError::invalid("dataset", error.to_string()))?;
    if let Some(limit) = max_queries {
        data.queries.truncate(limit);
    }
    let tokenizer: Arc<dyn TokenSpans> = match &embedder {
        Some(embedder) => embedder.tokenizer(),
        None => Arc::new(SimpleTokenizer),
    };

    let started = Instant::now();
    let corpus = std::mem::take(&mut data.corpus);
    let documents = corpus.len();
    let (chunks, chunk_docs) =
        tokio::task::spawn_blocking(move || chunk_corpus(&corpus, tokenizer.as_ref()))
            .await
            .map_err(|error| KnowledgeError::Unavailable(error.to_string()))??;
    let keyword_dir = work_dir.join("keyword");
    let keyword = tokio::task::spawn_blocking(move || TantivyKeywordIndex::open(&keyword_dir))
        .await
        .map_err(|error| KnowledgeError::Unavailable(error.to_string()))??;
    for batch in chunks.chunks(5000) {
        keyword.add(batch).await?;
    }
    keyword.commit(1).await?;
    let unigram = UnigramBm25::build(&chunks, unigram_terms);
    let whitespace = UnigramBm25::build(&chunks, whitespace_terms);
    let index_seconds = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let vectors = FlatVectorIndex::new();
    // The operator's own run: nobody to charge.
    let caller = Caller::background("eval");
    if let Some(embedder) = &embedder {
        let texts: Vec<String> = chunks.iter().map(|chunk| chunk.text.clone()).collect();
        let embedded = embedder.embed(texts, &caller).await?;
        let with_vectors: Vec<IndexedChunk> = chunks
            .iter()
            .zip(embedded)
            .map(|(chunk, vector)| IndexedChunk {
                vector,
                ..chunk.clone()
            })
            .collect();
        vectors.add(&with_vectors).await?;
        vectors.commit(1).await?;
    }
    let embed_seconds = if embedder.is_some() {
        started.elapsed().as_secs_f64()
    } else {
        0.0
    };

    let stores = [STORE.to_owned()];
    let mut runs: HashMap<&'static str, Run> = HashMap::new();
    for query in &data.queries {
        let started = Instant::now();
        let keyword_hits = keyword
            .search(&stores, &query.text, None, CANDIDATE_CHUNKS)
            .await?;
        runs.entry("bm25")
            .or_default()
            .record(&query.id, &keyword_hits, &chunk_docs, started);

        let started = Instant::now();
        let whitespace_hits = whitespace.search(&query.text, CANDIDATE_CHUNKS);
        runs.entry("bm25_whitespace").or_default().record(
            &query.id,
            &whitespace_hits,
            &chunk_docs,
            started,
        );

        let started = Instant::now();
        let unigram_hits = unigram.search(&query.text, CANDIDATE_CHUNKS);
        runs.entry("bm25_unigram").or_default().record(
            &query.id,
            &unigram_hits,
            &chunk_docs,
            started,
        );

        let Some(embedder) = &embedder else { continue };
        let started = Instant::now();
        let vector = embedder
            .embed(vec![query.text.clone()], &caller)
            .await?
            .pop()
            .unwrap_or_default();
        let vector_hits = vectors
            .search(&stores, &vector, None, CANDIDATE_CHUNKS)
            .await?;
        let vector_elapsed = started.elapsed();
        runs.entry("vector")
            .or_default()
            .record(&query.id, &vector_hits, &chunk_docs, started);

        // Hybrid time: both retrievals plus fusion.
        let keyword_ms = runs
            .get("bm25")
            .and_then(|run| run.latencies_ms.last())
            .copied()
            .unwrap_or(0.0);
        for (mode, fusion) in [
            ("hybrid", FusionMethod::Rrf),
            (
                "hybrid_weighted",
                FusionMethod::Weighted {
                    vector_weight: WEIGHTED_VECTOR_WEIGHT,
                },
            ),
        ] {
            let started = Instant::now();
            let fused: Vec<Hit> = fuse(
                std::slice::from_ref(&keyword_hits),
                std::slice::from_ref(&vector_hits),
                fusion,
                0.0,
                CANDIDATE_CHUNKS,
            )
            .into_iter()
            .map(|(hit, ..)| Hit {
                id: hit.id,
                score: hit.score,
            })
            .collect();
            let run = runs.entry(mode).or_default();
            run.record(&query.id, &fused, &chunk_docs, started);
            if let Some(last) = run.latencies_ms.last_mut() {
                *last += vector_elapsed.as_secs_f64() * 1000.0 + keyword_ms;
            }
        }
    }

    let mut modes = Vec::new();
    for mode in [
        "bm25_whitespace",
        "bm25_unigram",
        "bm25",
        "vector",
        "hybrid",
        "hybrid_weighted",
    ] {
        let Some(run) = runs.get_mut(mode) else {
            continue;
        };
        let at_10: Metrics = evaluate(&data.qrels_for(&run.rankings), &run.rankings, 10);
        let at_100 = evaluate(&data.qrels_for(&run.rankings), &run.rankings, 100);
        run.latencies_ms.sort_by(f64::total_cmp);
        modes.push(ModeReport {
            mode,
            ndcg_at_10: at_10.ndcg,
            recall_at_10: at_10.recall,
            recall_at_100: at_100.recall,
            mrr_at_10: at_10.mrr,
            query_ms_p50: percentile(&run.latencies_ms, 0.50),
            query_ms_p99: percentile(&run.latencies_ms, 0.99),
        });
    }
    Ok(EvalReport {
        dataset: dataset
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default(),
        documents,
        chunks: chunks.len(),
        queries: data.queries.len(),
        embedding_model: embedder.as_ref().map(|e| e.model_id().to_owned()),
        index_seconds,
        embed_seconds,
        modes,
    })
}

trait QrelsFor {
    fn qrels_for(&self, rankings: &HashMap<String, Vec<String>>)
    -> landfall_retrieval::eval::Qrels;
}

impl QrelsFor for landfall_retrieval::eval::BeirDataset {
    /// The judgements of the queries that were run (all of them, or the first `max_queries`).
    fn qrels_for(
        &self,
        rankings: &HashMap<String, Vec<String>>,
    ) -> landfall_retrieval::eval::Qrels {
        self.qrels
            .iter()
            .filter(|(query, _)| rankings.contains_key(*query))
            .map(|(query, judgements)| (query.clone(), judgements.clone()))
            .collect()
    }
}

#[derive(Default)]
struct Run {
    rankings: HashMap<String, Vec<String>>,
    latencies_ms: Vec<f64>,
}

impl Run {
    fn record(&mut self, query: &str, hits: &[Hit], chunk_docs: &[String], started: Instant) {
        self.latencies_ms
            .push(started.elapsed().as_secs_f64() * 1000.0);
        let mut seen = HashSet::new();
        let ranking = hits
            .iter()
            .filter_map(|hit| chunk_docs.get(usize::try_from(hit.id).ok()?))
            .filter(|doc| seen.insert(doc.as_str()))
            .cloned()
            .collect();
        self.rankings.insert(query.to_owned(), ranking);
    }
}

fn percentile(sorted: &[f64], quantile: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * quantile).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Chunks every document (title and text) as a knowledge base would; chunk ids index the
/// returned document-id list.
fn chunk_corpus(
    corpus: &[landfall_retrieval::eval::BeirDocument],
    tokenizer: &dyn TokenSpans,
) -> Result<(Vec<IndexedChunk>, Vec<String>), KnowledgeError> {
    let limits = Limits::default();
    let options = ChunkingOptions::default();
    let mut chunks = Vec::new();
    let mut docs = Vec::new();
    for document in corpus {
        let text = if document.title.is_empty() {
            document.text.clone()
        } else {
            format!("{}\n\n{}", document.title, document.text)
        };
        let Ok(parsed) = landfall_documents::parse("document.txt", text.as_bytes(), &limits) else {
            continue; // empty documents
        };
        let pieces = landfall_documents::chunk(&parsed, tokenizer, &options)
            .map_err(|error| KnowledgeError::Embedding(error.to_string()))?;
        for piece in pieces {
            let id = i64::try_from(docs.len()).unwrap_or(i64::MAX);
            docs.push(document.id.clone());
            chunks.push(IndexedChunk {
                id,
                store_id: STORE.to_owned(),
                file_id: document.id.clone(),
                text: piece.text,
                attributes: Map::new(),
                vector: Vec::new(),
            });
        }
    }
    Ok((chunks, docs))
}

/// Plain BM25 (k1 = 1.2, b = 0.75) over the terms of a baseline tokenizer: single characters
/// (letter and digit runs stay words), what a search engine without a Chinese segmenter
/// gives, or whitespace-separated words.
struct UnigramBm25 {
    terms: fn(&str) -> Vec<String>,
    postings: HashMap<String, Vec<(u32, u32)>>,
    lengths: Vec<u32>,
    average_length: f32,
}

impl UnigramBm25 {
    fn build(chunks: &[IndexedChunk], terms: fn(&str) -> Vec<String>) -> Self {
        let mut postings: HashMap<String, Vec<(u32, u32)>> = HashMap::new();
        let mut lengths = Vec::with_capacity(chunks.len());
        for (index, chunk) in chunks.iter().enumerate() {
            let chunk_terms = terms(&chunk.text);
            lengths.push(chunk_terms.len() as u32);
            let mut counts: HashMap<String, u32> = HashMap::new();
            for term in chunk_terms {
                *counts.entry(term).or_default() += 1;
            }
            for (term, count) in counts {
                postings
                    .entry(term)
                    .or_default()
                    .push((index as u32, count));
            }
        }
        let average_length =
            lengths.iter().map(|&l| l as f32).sum::<f32>() / lengths.len().max(1) as f32;
        Self {
            terms,
            postings,
            lengths,
            average_length,
        }
    }

    fn search(&self, query: &str, limit: usize) -> Vec<Hit> {
        let (k1, b) = (1.2_f32, 0.75_f32);
        let total = self.lengths.len() as f32;
        let mut scores: HashMap<u32, f32> = HashMap::new();
        let terms: HashSet<String> = (self.terms)(query).into_iter().collect();
        for term in terms {
            let Some(list) = self.postings.get(&term) else {
                continue;
            };
            let frequency = list.len() as f32;
            let idf = ((total - frequency + 0.5) / (frequency + 0.5) + 1.0).ln();
            for &(doc, count) in list {
                let length = self.lengths[doc as usize] as f32;
                let tf = count as f32;
                let norm =
                    tf * (k1 + 1.0) / (tf + k1 * (1.0 - b + b * length / self.average_length));
                *scores.entry(doc).or_default() += idf * norm;
            }
        }
        let mut hits: Vec<Hit> = scores
            .into_iter()
            .map(|(doc, score)| Hit {
                id: i64::from(doc),
                score,
            })
            .collect();
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
        hits.truncate(limit);
        hits
    }
}

fn whitespace_terms(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|word| {
            word.trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase()
        })
        .filter(|word| !word.is_empty())
        .collect()
}

fn unigram_terms(text: &str) -> Vec<String> {
    SimpleTokenizer
        .token_spans(text)
        .unwrap_or_default()
        .into_iter()
        .map(|span| text[span].to_lowercase())
        .filter(|term| term.chars().any(char::is_alphanumeric))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unigram_bm25_ranks_the_document_sharing_most_characters_first() {
        let chunk = |id: i64, text: &str| IndexedChunk {
            id,
            store_id: STORE.to_owned(),
            file_id: id.to_string(),
            text: text.to_owned(),
            attributes: Map::new(),
            vector: Vec::new(),
        };
        let index = UnigramBm25::build(
            &[
                chunk(0, "天气很好"),
                chunk(1, "医疗费用报销"),
                chunk(2, "pump seal"),
            ],
            unigram_terms,
        );
        let hits = index.search("报销费用", 10);
        assert_eq!(hits[0].id, 1);
        assert_eq!(index.search("Pump", 10)[0].id, 2);
        assert!(index.search("无关", 10).is_empty());
    }

    #[test]
    fn percentiles_of_sorted_latencies() {
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&sorted, 0.5), 51.0);
        assert_eq!(percentile(&sorted, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
