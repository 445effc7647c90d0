//! Retrieval evaluation: a loader for BEIR-format collections and the standard ranking
//! metrics, computed as `pytrec_eval` (and so BEIR) computes them.
//!
//! - nDCG@k: gain = the graded relevance itself (not `2^rel − 1`), discount `log2(rank + 1)`,
//!   normalized by the ideal ordering of the query's judged documents.
//! - Recall@k: relevant documents in the top k over all relevant documents.
//! - MRR@k: `1 / rank` of the first relevant document in the top k, else 0.
//!
//! A document is relevant when its grade is > 0. Averages are over the queries with at least
//! one relevant document; a query without a ranking counts as 0.

use std::collections::{HashMap, HashSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Relevance judgements: query id → document id → grade (0 = judged not relevant).
pub type Qrels = HashMap<String, HashMap<String, i32>>;

/// A failure loading an evaluation collection.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// One document of a BEIR corpus.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BeirDocument {
    #[serde(rename = "_id")]
    pub id: String,
    #[serde(default)]
    pub title: String,
    pub text: String,
}

/// One query of a BEIR collection.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BeirQuery {
    #[serde(rename = "_id")]
    pub id: String,
    pub text: String,
}

/// A BEIR collection: corpus, queries and the qrels of one split.
#[derive(Debug, Clone, Default)]
pub struct BeirDataset {
    pub corpus: Vec<BeirDocument>,
    /// Only the queries that have judgements in the split's qrels.
    pub queries: Vec<BeirQuery>,
    pub qrels: Qrels,
}

/// Loads `dir/corpus.jsonl`, `dir/queries.jsonl` and `dir/qrels/{split}.tsv`.
///
/// # Errors
/// [`EvalError::Read`] when a file is missing or unreadable, [`EvalError::Parse`] with the
/// line number when a line is malformed.
pub fn load_beir(dir: &Path, split: &str) -> Result<BeirDataset, EvalError> {
    let corpus = read_jsonl(&dir.join("corpus.jsonl"))?;
    let qrels = read_qrels(&dir.join("qrels").join(format!("{split}.tsv")))?;
    let queries: Vec<BeirQuery> = read_jsonl(&dir.join("queries.jsonl"))?;
    let queries = queries
        .into_iter()
        .filter(|q| qrels.contains_key(&q.id))
        .collect();
    Ok(BeirDataset {
        corpus,
        queries,
        qrels,
    })
}

fn lines(path: &Path) -> Result<impl Iterator<Item = (usize, std::io::Result<String>)>, EvalError> {
    let file = std::fs::File::open(path).map_err(|source| EvalError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(std::io::BufReader::new(file)
        .lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line)))
}

fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, EvalError> {
    let mut items = Vec::new();
    for (line_number, line) in lines(path)? {
        let line = line.map_err(|source| EvalError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let item = serde_json::from_str(&line).map_err(|e| EvalError::Parse {
            path: path.to_path_buf(),
            line: line_number,
            message: e.to_string(),
        })?;
        items.push(item);
    }
    Ok(items)
}

/// Reads a qrels TSV (`query-id corpus-id score`, with a header line).
///
/// # Errors
/// As [`load_beir`].
pub fn read_qrels(path: &Path) -> Result<Qrels, EvalError> {
    let mut qrels = Qrels::new();
    for (line_number, line) in lines(path)? {
        let line = line.map_err(|source| EvalError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let fields: Vec<&str> = line.split('\t').map(str::trim).collect();
        if line.trim().is_empty() || (line_number == 1 && fields.first() == Some(&"query-id")) {
            continue;
        }
        let parse_error = |message: String| EvalError::Parse {
            path: path.to_path_buf(),
            line: line_number,
            message,
        };
        let [query, document, grade] = fields[..] else {
            return Err(parse_error(format!(
                "expected 3 tab-separated fields, got {}",
                fields.len()
            )));
        };
        let grade: i32 = grade
            .parse()
            .map_err(|e| parse_error(format!("grade {grade:?}: {e}")))?;
        qrels
            .entry(query.to_string())
            .or_default()
            .insert(document.to_string(), grade);
    }
    Ok(qrels)
}

/// The first `k` distinct ids of a ranking (a duplicate counts at its first position only).
fn top_k(ranking: &[String], k: usize) -> impl Iterator<Item = &String> {
    let mut seen = HashSet::new();
    ranking
        .iter()
        .filter(move |id| seen.insert(id.as_str()))
        .take(k)
}

fn grade(judgements: &HashMap<String, i32>, id: &str) -> i32 {
    judgements.get(id).copied().unwrap_or(0).max(0)
}

/// nDCG@k of one ranking against one query's judgements (0 when nothing is relevant).
pub fn ndcg_at_k(ranking: &[String], judgements: &HashMap<String, i32>, k: usize) -> f64 {
    let discount = |position: usize| ((position + 2) as f64).log2();
    let dcg: f64 = top_k(ranking, k)
        .enumerate()
        .map(|(position, id)| f64::from(grade(judgements, id)) / discount(position))
        .sum();
    let mut ideal: Vec<i32> = judgements.values().copied().filter(|&g| g > 0).collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let ideal_dcg: f64 = ideal
        .iter()
        .take(k)
        .enumerate()
        .map(|(position, &g)| f64::from(g) / discount(position))
        .sum();
    if ideal_dcg > 0.0 {
        dcg / ideal_dcg
    } else {
        0.0
    }
}

/// Recall@k of one ranking (0 when nothing is relevant).
pub fn recall_at_k(ranking: &[String], judgements: &HashMap<String, i32>, k: usize) -> f64 {
    let relevant = judgements.values().filter(|&&g| g > 0).count();
    if relevant == 0 {
        return 0.0;
    }
    let found = top_k(ranking, k)
        .filter(|id| grade(judgements, id) > 0)
        .count();
    found as f64 / relevant as f64
}

/// Reciprocal rank of the first relevant document in the top k (0 when none).
pub fn mrr_at_k(ranking: &[String], judgements: &HashMap<String, i32>, k: usize) -> f64 {
    top_k(ranking, k)
        .position(|id| grade(judgements, id) > 0)
        .map_or(0.0, |position| 1.0 / (position + 1) as f64)
}

/// Metrics averaged over the evaluated queries.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Metrics {
    pub ndcg: f64,
    pub recall: f64,
    pub mrr: f64,
    /// How many queries were averaged (those with at least one relevant document).
    pub queries: usize,
}

/// Averages nDCG@k, Recall@k and MRR@k of `rankings` (query id → ranked document ids) over
/// the queries of `qrels` with at least one relevant document.
pub fn evaluate(qrels: &Qrels, rankings: &HashMap<String, Vec<String>>, k: usize) -> Metrics {
    let mut totals = Metrics::default();
    let empty = Vec::new();
    for (query, judgements) in qrels {
        if !judgements.values().any(|&g| g > 0) {
            continue;
        }
        let ranking = rankings.get(query).unwrap_or(&empty);
        totals.ndcg += ndcg_at_k(ranking, judgements, k);
        totals.recall += recall_at_k(ranking, judgements, k);
        totals.mrr += mrr_at_k(ranking, judgements, k);
        totals.queries += 1;
    }
    if totals.queries == 0 {
        return totals;
    }
    let n = totals.queries as f64;
    Metrics {
        ndcg: totals.ndcg / n,
        recall: totals.recall / n,
        mrr: totals.mrr / n,
        ..totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judgements(pairs: &[(&str, i32)]) -> HashMap<String, i32> {
        pairs.iter().map(|&(id, g)| (id.to_string(), g)).collect()
    }

    fn ranking(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn ndcg_uses_graded_gains_and_log2_discounts() {
        // Judged: a=2, b=1, c=0. Ranking: c, a, x, b.
        // DCG@3 = 0/log2(2) + 2/log2(3) + 0/log2(4) = 1.2618595071429148
        // IDCG@3 = 2/log2(2) + 1/log2(3) = 2.6309297535714573
        let judged = judgements(&[("a", 2), ("b", 1), ("c", 0)]);
        let ranked = ranking(&["c", "a", "x", "b"]);
        assert!(close(
            ndcg_at_k(&ranked, &judged, 3),
            1.2618595071429148 / 2.6309297535714573
        ));
        // @4 adds b: DCG += 1/log2(5) = 0.43067655807339306; IDCG unchanged.
        let expected = (1.2618595071429148 + 0.43067655807339306) / 2.6309297535714573;
        assert!(close(ndcg_at_k(&ranked, &judged, 4), expected));
        assert!(close(ndcg_at_k(&ranking(&["a", "b"]), &judged, 10), 1.0));
        assert!(close(ndcg_at_k(&ranked, &judgements(&[("c", 0)]), 10), 0.0));
    }

    #[test]
    fn recall_and_mrr() {
        let judged = judgements(&[("a", 1), ("b", 3), ("c", 0), ("d", 1)]);
        let ranked = ranking(&["c", "x", "b", "b", "a", "d"]);
        assert!(close(recall_at_k(&ranked, &judged, 2), 0.0));
        assert!(close(recall_at_k(&ranked, &judged, 3), 1.0 / 3.0));
        // The duplicate "b" does not take a place in the top 4.
        assert!(close(recall_at_k(&ranked, &judged, 4), 2.0 / 3.0));
        assert!(close(mrr_at_k(&ranked, &judged, 10), 1.0 / 3.0));
        assert!(close(mrr_at_k(&ranked, &judged, 2), 0.0));
    }

    #[test]
    fn averages_skip_queries_without_relevant_documents() {
        let mut qrels = Qrels::new();
        qrels.insert("q1".into(), judgements(&[("a", 1)]));
        qrels.insert("q2".into(), judgements(&[("b", 1)]));
        qrels.insert("q3".into(), judgements(&[("c", 0)]));
        let mut rankings = HashMap::new();
        rankings.insert("q1".to_string(), ranking(&["a"]));
        rankings.insert("q3".to_string(), ranking(&["c"]));
        let metrics = evaluate(&qrels, &rankings, 10);
        assert_eq!(metrics.queries, 2);
        assert!(close(metrics.ndcg, 0.5));
        assert!(close(metrics.recall, 0.5));
        assert!(close(metrics.mrr, 0.5));
    }

    #[test]
    fn loads_a_small_beir_directory() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir(dir.path().join("qrels"))?;
        std::fs::write(
            dir.path().join("corpus.jsonl"),
            "{\"_id\":\"d1\",\"title\":\"T\",\"text\":\"one\"}\n{\"_id\":\"d2\",\"text\":\"two\"}\n",
        )?;
        std::fs::write(
            dir.path().join("queries.jsonl"),
            "{\"_id\":\"q1\",\"text\":\"one?\"}\n{\"_id\":\"q9\",\"text\":\"unjudged\"}\n",
        )?;
        std::fs::write(
            dir.path().join("qrels/test.tsv"),
            "query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td2\t0\n",
        )?;
        let data = load_beir(dir.path(), "test")?;
        assert_eq!(data.corpus.len(), 2);
        assert_eq!(data.corpus[1].title, "");
        assert_eq!(data.queries.len(), 1);
        assert_eq!(data.qrels["q1"]["d1"], 2);
        std::fs::write(dir.path().join("qrels/test.tsv"), "q1\td1\n")?;
        assert!(matches!(
            load_beir(dir.path(), "test"),
            Err(EvalError::Parse { line: 1, .. })
        ));
        Ok(())
    }
}
