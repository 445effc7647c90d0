//! [`CrossEncoder`]: a BERT-family reranker that reads a query and a passage together and
//! scores how well the passage answers it, as sentence-transformers' `CrossEncoder` does
//! (e.g. `cross-encoder/ms-marco-MiniLM-L-6-v2`). XLM-RoBERTa rerankers such as
//! `BAAI/bge-reranker-base` are not BERT and are refused at load.

use std::path::Path;

use tokenizers::{Tokenizer, TruncationParams, TruncationStrategy};

use crate::bert::{Encoder, Weights};
use crate::error::ModelError;
use crate::settings::{WeightsFile, locate_files, read_bert_config};
use crate::weights::load_tensors;

/// A `BertForSequenceClassification` checkpoint with one output: `[CLS]` → pooler (dense,
/// tanh) → classifier. Scores are the raw logits (higher is more relevant); order is what
/// reranking needs, so no sigmoid is applied.
///
/// `Send + Sync`: share it in an `Arc` and call [`score`](Self::score) from blocking threads.
pub struct CrossEncoder {
    model_id: String,
    encoder: Encoder,
    /// `pooler.dense` as `[out, in]` row-major, and its bias.
    pooler: (Vec<f32>, Vec<f32>),
    /// `classifier`: one row of weights and one bias.
    classifier: (Vec<f32>, Vec<f32>),
    tokenizer: Tokenizer,
    batch_size: usize,
}

impl std::fmt::Debug for CrossEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrossEncoder")
            .field("model_id", &self.model_id)
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

impl CrossEncoder {
    /// Loads the cross-encoder in `dir` (`config.json`, `tokenizer.json`, `model.safetensors`
    /// or `pytorch_model.bin`, with `pooler.dense` and `classifier` weights). Pairs longer
    /// than `max_tokens` (default: the model's `max_position_embeddings`) are truncated
    /// longest side first.
    ///
    /// # Errors
    /// [`ModelError`] naming the missing or malformed file, or a classifier with more than
    /// one output.
    pub fn load(
        dir: &Path,
        max_tokens: Option<usize>,
        batch_size: usize,
    ) -> Result<Self, ModelError> {
        if batch_size == 0 {
            return Err(ModelError::InvalidOptions {
                reason: "batch_size must be at least 1".to_owned(),
            });
        }
        let files = locate_files(dir)?;
        let config = read_bert_config(&files.config)?;
        let max_tokens = max_tokens
            .unwrap_or(config.max_position_embeddings)
            .min(config.max_position_embeddings);
        let malformed_tokenizer = |error: tokenizers::Error| ModelError::Malformed {
            path: files.tokenizer.clone(),
            reason: error.to_string(),
        };
        let mut tokenizer = Tokenizer::from_file(&files.tokenizer).map_err(malformed_tokenizer)?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                strategy: TruncationStrategy::LongestFirst,
                ..TruncationParams::default()
            }))
            .map_err(malformed_tokenizer)?;

        let weights_path = match &files.weights {
            WeightsFile::Safetensors(path) | WeightsFile::Pytorch(path) => path.clone(),
        };
        let mismatch = |reason: String| ModelError::Malformed {
            path: weights_path.clone(),
            reason: format!("weights do not match a BERT cross-encoder: {reason}"),
        };
        let mut weights = Weights::new(load_tensors(&files.weights)?);
        let outputs = weights.rows("classifier.weight");
        if outputs != Some(1) {
            return Err(ModelError::Unsupported {
                path: weights_path.clone(),
                reason: match outputs {
                    Some(count) => format!("a classifier with {count} outputs (rerankers have 1)"),
                    None => "no classifier weights: not a cross-encoder".to_owned(),
                },
            });
        }
        let encoder = Encoder::load(&mut weights, &config).map_err(mismatch)?;
        let hidden = config.hidden_size;
        let pooler = weights
            .matrix("pooler.dense", hidden, hidden)
            .map_err(mismatch)?;
        let classifier = weights.matrix("classifier", hidden, 1).map_err(mismatch)?;
        Ok(Self {
            model_id: crate::embedder::model_id_for(dir),
            encoder,
            pooler,
            classifier,
            tokenizer,
            batch_size,
        })
    }

    /// The model's name (its folder's, or `org/name` from a Hub cache).
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// One relevance score per passage for `query`, in order.
    ///
    /// Blocking and CPU-heavy: async callers run it off the reactor.
    ///
    /// # Errors
    /// [`ModelError::Tokenize`] or [`ModelError::Inference`].
    pub fn score(&self, query: &str, passages: &[&str]) -> Result<Vec<f32>, ModelError> {
        let mut scores = Vec::with_capacity(passages.len());
        for batch in passages.chunks(self.batch_size) {
            let pairs: Vec<(String, String)> = batch
                .iter()
                .map(|passage| (query.to_owned(), (*passage).to_owned()))
                .collect();
            let encodings = self
                .tokenizer
                .encode_batch_fast(pairs, true)
                .map_err(|error| ModelError::Tokenize {
                    reason: error.to_string(),
                })?;
            let rows: Vec<(&[u32], &[u32])> = encodings
                .iter()
                .map(|encoding| (encoding.get_ids(), encoding.get_type_ids()))
                .collect();
            scores.extend(self.score_batch(&rows)?);
        }
        Ok(scores)
    }

    fn score_batch(&self, rows: &[(&[u32], &[u32])]) -> Result<Vec<f32>, ModelError> {
        let hidden = self.encoder.forward(rows)?;
        let width = hidden.width();
        let (pooler_weight, pooler_bias) = &self.pooler;
        let (classifier_weight, classifier_bias) = &self.classifier;
        Ok((0..hidden.len())
            .map(|index| {
                let cls = &hidden.sequence(index)[..width];
                let logit: f32 = pooler_weight
                    .chunks_exact(width)
                    .zip(pooler_bias)
                    .zip(classifier_weight)
                    .map(|((row, bias), weight)| (dot(row, cls) + bias).tanh() * weight)
                    .sum();
                logit + classifier_bias.first().copied().unwrap_or_default()
            })
            .collect())
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(a, b)| a * b).sum()
}
