//! Hybrid search: BM25 and vector retrieval, fused by reciprocal rank or by weighted
//! normalized scores, optionally with a rewritten query, a HyDE passage or several RAG-Fusion
//! rewrites (all generated through the gateway by a [`Rewriter`]), then hydrated from the
//! chunk store into hits that carry each retriever's rank and score and citation data.

use std::collections::HashMap;

use async_trait::async_trait;
use landfall_retrieval::fusion::{
    DEFAULT_RRF_K, FusionOptions, MultiFusedHit, Ranked, reciprocal_rank_fusion_many,
    weighted_fusion_many,
};
use landfall_retrieval::{Filter, Hit};
use serde_json::{Map, Value};

use crate::{Caller, KnowledgeError};

/// Writes text for query rewriting and HyDE; the server implements it over the gateway, so
/// limits, cache and accounting apply to these calls too.
#[async_trait]
pub trait Rewriter: Send + Sync {
    /// One completion of `input` under `instructions`, charged to `caller`.
    ///
    /// # Errors
    /// [`KnowledgeError::Generation`] when the model call fails, [`KnowledgeError::Refused`]
    /// when the caller's limits or budgets refuse it.
    async fn generate(
        &self,
        instructions: &str,
        input: &str,
        caller: &Caller,
    ) -> Result<String, KnowledgeError>;
}

/// Which retrievers a search uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchMode {
    /// BM25 and vectors, fused (keyword only when the store has no embeddings).
    #[default]
    Hybrid,
    Keyword,
    Vector,
}

/// How two or more ranked lists become one.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FusionMethod {
    /// Reciprocal rank fusion; the reported score is scaled so that a chunk ranked first by
    /// every list scores 1.
    Rrf,
    /// `vector_weight · vector + (1 − vector_weight) · keyword`, each min-max normalized.
    Weighted { vector_weight: f32 },
}

/// One search over one or more stores.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub query: String,
    pub filter: Option<Filter>,
    pub max_results: usize,
    /// Hits scoring below this (0..=1) are left out.
    pub score_threshold: f32,
    pub mode: SearchMode,
    pub fusion: FusionMethod,
    /// Replace the query by a model-written search query first (OpenAI's `rewrite_query`).
    pub rewrite_query: bool,
    /// Embed a model-written hypothetical answer together with the query (HyDE).
    pub hyde: bool,
    /// Also search this many model-written rewrites and fuse every list (RAG-Fusion).
    pub fusion_queries: usize,
    /// Reorder the fused hits with the configured reranker (ignored when there is none).
    pub rerank: bool,
}

/// Where one retriever placed a hit.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct RetrieverScore {
    pub rank: usize,
    pub score: f32,
}

/// A chunk found, with what it takes to cite it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SearchHit {
    pub chunk_id: i64,
    pub store_id: String,
    pub file_id: String,
    pub filename: String,
    /// The fused score, or the reranker's when reranked; 0..=1.
    pub score: f32,
    /// Best keyword (BM25) rank and score over the queries searched.
    pub keyword: Option<RetrieverScore>,
    /// Best vector (cosine) rank and score over the queries searched.
    pub vector: Option<RetrieverScore>,
    /// The reranker's logit, when the hits were reranked (`score` is then its sigmoid).
    pub rerank_score: Option<f32>,
    pub text: String,
    pub page: Option<u32>,
    pub char_start: u64,
    pub char_end: u64,
    pub heading_path: Vec<String>,
    pub attributes: Map<String, Value>,
}

/// What a search found, and the queries it ran.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchResults {
    pub queries: Vec<String>,
    pub hits: Vec<SearchHit>,
}

const REWRITE_INSTRUCTIONS: &str = "Rewrite the user's question as one short search query \
     for a document search engine. Keep its language and key terms. Answer with the query only.";
const HYDE_INSTRUCTIONS: &str = "Write a short passage (3 to 5 sentences) that would answer \
     the question, as it might appear in a manual or policy document. Keep the question's \
     language. Answer with the passage only.";
const FUSION_INSTRUCTIONS: &str = "Write different search queries for the user's question, \
     one per line, each looking at it from another angle. Keep its language. Answer with the \
     queries only, no numbering.";

/// Candidates each retriever returns before fusion.
pub(crate) fn candidates(max_results: usize) -> usize {
    (max_results * 5).clamp(50, 200)
}

/// The queries to search: the query (or its rewrite) and any RAG-Fusion rewrites.
pub(crate) async fn plan_queries(
    request: &SearchRequest,
    rewriter: Option<&dyn Rewriter>,
    caller: &Caller,
) -> Result<Vec<String>, KnowledgeError> {
    let needs_model = request.rewrite_query || request.hyde || request.fusion_queries > 0;
    let rewriter = match rewriter {
        Some(rewriter) => Some(rewriter),
        None if needs_model => {
            return Err(KnowledgeError::Unsupported {
                message: "query rewriting, HyDE and RAG-Fusion need \
                          knowledge.search.rewrite_model in the configuration"
                    .to_owned(),
            });
        }
        None => None,
    };
    let mut queries = vec![request.query.clone()];
    if let Some(rewriter) = rewriter {
        if request.rewrite_query {
            let rewritten = rewriter
                .generate(REWRITE_INSTRUCTIONS, &request.query, caller)
                .await?;
            let rewritten = rewritten.trim();
            if !rewritten.is_empty() {
                queries[0] = rewritten.to_owned();
            }
        }
        if request.fusion_queries > 0 {
            let input = format!(
                "Question: {}\nNumber of queries: {}",
                request.query, request.fusion_queries
            );
            let text = rewriter
                .generate(FUSION_INSTRUCTIONS, &input, caller)
                .await?;
            queries.extend(
                text.lines()
                    .map(|line| line.trim().trim_start_matches(['-', '*', ' ']).trim())
                    .filter(|line| !line.is_empty())
                    .take(request.fusion_queries)
                    .map(str::to_owned),
            );
        }
    }
    Ok(queries)
}

/// A HyDE passage for the query.
pub(crate) async fn hypothetical_answer(
    rewriter: &dyn Rewriter,
    query: &str,
    caller: &Caller,
) -> Result<String, KnowledgeError> {
    rewriter.generate(HYDE_INSTRUCTIONS, query, caller).await
}

/// The normalized mean of two unit vectors (query and HyDE passage).
pub(crate) fn combine(query: &[f32], passage: &[f32]) -> Vec<f32> {
    let mut sum: Vec<f32> = query.iter().zip(passage).map(|(a, b)| a + b).collect();
    let norm = sum.iter().map(|value| value * value).sum::<f32>().sqrt();
    if norm > 0.0 {
        for value in &mut sum {
            *value /= norm;
        }
    }
    sum
}

/// A fused hit with its best keyword and vector placements.
pub(crate) type Fused = (MultiFusedHit, Option<Ranked>, Option<Ranked>);

/// One fused list out of every (keyword, vector) list pair. Returns the fused hits and, per
/// hit, its best keyword and vector placements.
pub(crate) fn fuse(
    keyword_lists: &[Vec<Hit>],
    vector_lists: &[Vec<Hit>],
    fusion: FusionMethod,
    threshold: f32,
    limit: usize,
) -> Vec<Fused> {
    let lists: Vec<(&[Hit], bool)> = keyword_lists
        .iter()
        .map(|list| (list.as_slice(), true))
        .chain(vector_lists.iter().map(|list| (list.as_slice(), false)))
        .filter(|(list, _)| !list.is_empty())
        .collect();
    if lists.is_empty() {
        return Vec::new();
    }
    let options = FusionOptions {
        score_threshold: None,
        limit: None,
    };
    let mut fused = match fusion {
        FusionMethod::Rrf => {
            let only: Vec<&[Hit]> = lists.iter().map(|(list, _)| *list).collect();
            let mut fused = reciprocal_rank_fusion_many(&only, DEFAULT_RRF_K, options);
            // Scale to 0..=1: first place in every list.
            let best = only.len() as f32 / (DEFAULT_RRF_K + 1.0);
            for hit in &mut fused {
                hit.score /= best;
            }
            fused
        }
        FusionMethod::Weighted { vector_weight } => {
            let vector_weight = vector_weight.clamp(0.0, 1.0);
            let keyword_count = lists.iter().filter(|(_, keyword)| *keyword).count().max(1);
            let vector_count = lists.iter().filter(|(_, keyword)| !*keyword).count().max(1);
            let only_keyword = lists.iter().all(|(_, keyword)| *keyword);
            let only_vector = lists.iter().all(|(_, keyword)| !*keyword);
            let weighted: Vec<(&[Hit], f32)> = lists
                .iter()
                .map(|(list, keyword)| {
                    let weight = match (keyword, only_keyword, only_vector) {
                        (true, true, _) => 1.0 / keyword_count as f32,
                        (false, _, true) => 1.0 / vector_count as f32,
                        (true, false, _) => (1.0 - vector_weight) / keyword_count as f32,
                        (false, _, false) => vector_weight / vector_count as f32,
                    };
                    (*list, weight)
                })
                .collect();
            weighted_fusion_many(&weighted, options)
        }
    };
    fused.retain(|hit| hit.score >= threshold);
    fused.truncate(limit);
    fused
        .into_iter()
        .map(|hit| {
            let best = |keyword: bool| {
                hit.ranks
                    .iter()
                    .zip(&lists)
                    .filter(|(_, (_, is_keyword))| *is_keyword == keyword)
                    .filter_map(|(ranked, _)| *ranked)
                    .min_by_key(|ranked| ranked.rank)
            };
            let keyword = best(true);
            let vector = best(false);
            (hit, keyword, vector)
        })
        .collect()
}

/// Keyword-only scores relative to the best hit, so they fall in 0..=1 like the others.
pub(crate) fn relative(hits: &mut [Hit]) {
    let top = hits.iter().map(|hit| hit.score).fold(0.0_f32, f32::max);
    if top > 0.0 {
        for hit in hits {
            hit.score /= top;
        }
    }
}

pub(crate) fn by_id<T>(items: Vec<T>, id: impl Fn(&T) -> i64) -> HashMap<i64, T> {
    items.into_iter().map(|item| (id(&item), item)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hits(ids: &[i64]) -> Vec<Hit> {
        ids.iter()
            .enumerate()
            .map(|(rank, id)| Hit {
                id: *id,
                score: 10.0 - rank as f32,
            })
            .collect()
    }

    #[test]
    fn rrf_scores_are_scaled_to_one_for_a_unanimous_first_place() {
        let fused = fuse(
            &[hits(&[1, 2])],
            &[hits(&[1, 3])],
            FusionMethod::Rrf,
            0.0,
            10,
        );
        assert_eq!(fused[0].0.id, 1);
        assert!((fused[0].0.score - 1.0).abs() < 1e-6);
        let (_, keyword, vector) = &fused[0];
        assert_eq!(keyword.map(|k| k.rank), Some(1));
        assert_eq!(vector.map(|v| v.rank), Some(1));
        let third = fused
            .iter()
            .find(|(hit, ..)| hit.id == 3)
            .unwrap_or_else(|| unreachable!());
        assert!(third.1.is_none() && third.2.is_some());
    }

    #[test]
    fn threshold_and_limit_apply_after_fusion() {
        let fused = fuse(&[hits(&[1, 2, 3, 4])], &[], FusionMethod::Rrf, 0.0, 2);
        assert_eq!(fused.len(), 2);
        let strict = fuse(
            &[hits(&[1, 2])],
            &[hits(&[3, 4])],
            FusionMethod::Rrf,
            0.9,
            10,
        );
        assert!(strict.is_empty(), "no chunk is first in both lists");
    }

    #[test]
    fn weighted_fusion_with_full_vector_weight_follows_the_vector_order() {
        let fused = fuse(
            &[hits(&[1, 2, 3])],
            &[hits(&[3, 2, 1])],
            FusionMethod::Weighted { vector_weight: 1.0 },
            0.0,
            10,
        );
        assert_eq!(
            fused.iter().map(|(hit, ..)| hit.id).collect::<Vec<_>>(),
            [3, 2, 1]
        );
    }

    #[test]
    fn hyde_combination_is_unit_length() {
        let combined = combine(&[1.0, 0.0], &[0.0, 1.0]);
        let norm: f32 = combined.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-6);
    }
}
