//! [`BertEmbedder`]: a BERT-family sentence embedder on CPU.

use std::ops::Range;
use std::path::{Component, Path};

use tokenizers::{Encoding, Tokenizer};

use crate::bert::{Encoder, Weights};
use crate::error::ModelError;
use crate::pooling::{Pooling, l2_normalize};
use crate::settings::{WeightsFile, locate_files, read_bert_config, read_sentence_settings};
use crate::weights::load_tensors;

/// Choices made when loading a [`BertEmbedder`]; `None` means "as the model folder says".
#[derive(Debug, Clone, PartialEq)]
pub struct EmbedderOptions {
    /// Texts per forward pass (default 32). Larger batches use more memory for little gain on
    /// CPU.
    pub batch_size: usize,
    /// Tokens per input, special tokens included; longer inputs are truncated. Default:
    /// `max_seq_length` from `sentence_bert_config.json`, else the model's
    /// `max_position_embeddings`. Never more than `max_position_embeddings`.
    pub max_tokens: Option<usize>,
    /// Pooling. Default: `1_Pooling/config.json` (the folder `modules.json` names), else
    /// [`Pooling::Mean`].
    pub pooling: Option<Pooling>,
    /// L2-normalize the vectors. Default: whether `modules.json` lists a `Normalize` module;
    /// `true` when the folder has no `modules.json`.
    pub normalize: Option<bool>,
}

impl Default for EmbedderOptions {
    fn default() -> Self {
        Self {
            batch_size: 32,
            max_tokens: None,
            pooling: None,
            normalize: None,
        }
    }
}

/// A tokenized input, truncated to the model's length.
struct Tokens {
    ids: Vec<u32>,
    type_ids: Vec<u32>,
}

/// A BERT-family sentence embedder (all-MiniLM-L6-v2, bge-*, text2vec-*) running on the CPU.
///
/// `Send + Sync`: share it in an `Arc` and call [`embed`](Self::embed) from several blocking
/// threads at once; each call runs its own forward passes (the matrix kernels use the global
/// rayon pool).
pub struct BertEmbedder {
    model_id: String,
    encoder: Encoder,
    /// Padding and truncation off: inputs are truncated by [`Self::tokenize`], batches are
    /// packed without padding, and token counts must not include padding.
    tokenizer: Tokenizer,
    dimensions: usize,
    max_tokens: usize,
    pooling: Pooling,
    normalize: bool,
    batch_size: usize,
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<BertEmbedder>();
};

impl std::fmt::Debug for BertEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BertEmbedder")
            .field("model_id", &self.model_id)
            .field("dimensions", &self.dimensions)
            .field("max_tokens", &self.max_tokens)
            .field("pooling", &self.pooling)
            .field("normalize", &self.normalize)
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

impl BertEmbedder {
    /// Loads the model in `dir`: `config.json`, `tokenizer.json`, `model.safetensors` (or
    /// `pytorch_model.bin` when there is no safetensors file) and, when present, the
    /// sentence-transformers files `modules.json`, `1_Pooling/config.json` and
    /// `sentence_bert_config.json`. Without them: mean pooling, normalized vectors. Weight
    /// names may carry a `bert.` prefix or not.
    ///
    /// The model id is the folder's name, or `org/name` for a folder inside a Hugging Face
    /// cache (`models--org--name/snapshots/…`).
    ///
    /// # Errors
    /// [`ModelError`] naming the missing, unreadable, malformed or unsupported file, or the
    /// invalid option.
    pub fn load(dir: &Path, options: EmbedderOptions) -> Result<Self, ModelError> {
        if options.batch_size == 0 {
            return Err(ModelError::InvalidOptions {
                reason: "batch_size must be at least 1".to_owned(),
            });
        }
        let files = locate_files(dir)?;
        let config = read_bert_config(&files.config)?;
        let settings = read_sentence_settings(dir)?;

        let mut tokenizer =
            Tokenizer::from_file(&files.tokenizer).map_err(|error| ModelError::Malformed {
                path: files.tokenizer.clone(),
                reason: error.to_string(),
            })?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|error| ModelError::Malformed {
                path: files.tokenizer.clone(),
                reason: error.to_string(),
            })?;
        let tokenizer_vocab = tokenizer.get_vocab_size(true);
        if tokenizer_vocab > config.vocab_size {
            return Err(ModelError::Malformed {
                path: files.tokenizer.clone(),
                reason: format!(
                    "its vocabulary has {tokenizer_vocab} tokens but config.json's vocab_size \
                     is {}",
                    config.vocab_size
                ),
            });
        }

        let max_tokens = options
            .max_tokens
            .or(settings.max_seq_length)
            .unwrap_or(config.max_position_embeddings)
            .min(config.max_position_embeddings);
        if max_tokens < 2 {
            return Err(ModelError::InvalidOptions {
                reason: format!("max_tokens {max_tokens} leaves no room for text"),
            });
        }

        let weights_path = match &files.weights {
            WeightsFile::Safetensors(path) | WeightsFile::Pytorch(path) => path.clone(),
        };
        let mut weights = Weights::new(load_tensors(&files.weights)?);
        let encoder =
            Encoder::load(&mut weights, &config).map_err(|reason| ModelError::Malformed {
                path: weights_path,
                reason: format!("weights do not match config.json: {reason}"),
            })?;

        let embedder = Self {
            model_id: model_id_for(dir),
            encoder,
            tokenizer,
            dimensions: config.hidden_size,
            max_tokens,
            pooling: options.pooling.unwrap_or(settings.pooling),
            normalize: options.normalize.unwrap_or(settings.normalize),
            batch_size: options.batch_size,
        };
        tracing::debug!(embedder = ?embedder, "loaded sentence embedder");
        Ok(embedder)
    }

    /// The model's name: its folder's name, or `org/name` when loaded from a Hub cache.
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// Length of the vectors [`embed`](Self::embed) returns.
    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// Tokens per input, special tokens included; longer inputs are truncated.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// The pooling in use.
    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    /// Whether vectors are L2-normalized.
    pub fn normalizes(&self) -> bool {
        self.normalize
    }

    /// Embeds `texts`, one vector per text, in order. An empty list gives an empty list, an
    /// empty string embeds like any other, and a text longer than
    /// [`max_tokens`](Self::max_tokens) is truncated.
    ///
    /// Blocking and CPU-heavy: async callers run it off the reactor (`spawn_blocking`).
    ///
    /// # Errors
    /// [`ModelError::Tokenize`] or [`ModelError::Inference`]; neither is expected for a model
    /// that loaded.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ModelError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let tokens = self.tokenize(texts)?;
        let mut vectors = Vec::with_capacity(texts.len());
        for batch in tokens.chunks(self.batch_size) {
            vectors.extend(self.embed_batch(batch)?);
        }
        Ok(vectors)
    }

    /// Byte ranges in `text` of each of its tokens, without special tokens and without
    /// truncation; every range starts and ends on a char boundary. The chunker counts token
    /// windows with this.
    ///
    /// # Errors
    /// [`ModelError::Tokenize`].
    pub fn token_spans(&self, text: &str) -> Result<Vec<Range<usize>>, ModelError> {
        let encoding =
            self.tokenizer
                .encode(text, false)
                .map_err(|error| ModelError::Tokenize {
                    reason: error.to_string(),
                })?;
        Ok(encoding
            .get_offsets()
            .iter()
            .map(|&(start, end)| start..end)
            .collect())
    }

    /// Number of tokens in `text`, without special tokens and without truncation.
    ///
    /// # Errors
    /// [`ModelError::Tokenize`].
    pub fn count_tokens(&self, text: &str) -> Result<usize, ModelError> {
        self.tokenizer
            .encode_fast(text, false)
            .map(|encoding| encoding.len())
            .map_err(|error| ModelError::Tokenize {
                reason: error.to_string(),
            })
    }

    fn tokenize(&self, texts: &[&str]) -> Result<Vec<Tokens>, ModelError> {
        let encodings = self
            .tokenizer
            .encode_batch_fast(texts.to_vec(), true)
            .map_err(|error| ModelError::Tokenize {
                reason: error.to_string(),
            })?;
        Ok(encodings
            .iter()
            .map(|encoding| truncate(encoding, self.max_tokens))
            .collect())
    }

    /// One forward pass over `rows`.
    fn embed_batch(&self, rows: &[Tokens]) -> Result<Vec<Vec<f32>>, ModelError> {
        let rows: Vec<(&[u32], &[u32])> = rows
            .iter()
            .map(|row| (row.ids.as_slice(), row.type_ids.as_slice()))
            .collect();
        let hidden = self.encoder.forward(&rows)?;
        Ok((0..hidden.len())
            .map(|index| {
                let mut vector = self.pooling.pool(hidden.sequence(index), hidden.width());
                if self.normalize {
                    l2_normalize(&mut vector);
                }
                vector
            })
            .collect())
    }
}

/// The encoding's ids cut to `max_tokens`, keeping a trailing special token (`[SEP]`) last.
fn truncate(encoding: &Encoding, max_tokens: usize) -> Tokens {
    let ids = encoding.get_ids();
    let type_ids = encoding.get_type_ids();
    if ids.len() <= max_tokens {
        return Tokens {
            ids: ids.to_vec(),
            type_ids: type_ids.to_vec(),
        };
    }
    let last = ids.len() - 1;
    let ends_special = encoding.get_special_tokens_mask().get(last) == Some(&1);
    let keep = if ends_special {
        max_tokens - 1
    } else {
        max_tokens
    };
    let mut kept_ids = ids[..keep].to_vec();
    let mut kept_type_ids = type_ids[..keep].to_vec();
    if ends_special {
        kept_ids.push(ids[last]);
        kept_type_ids.push(type_ids[last]);
    }
    Tokens {
        ids: kept_ids,
        type_ids: kept_type_ids,
    }
}

/// `org/name` for a Hugging Face cache snapshot (`…/models--org--name/snapshots/REV`), else
/// the folder's own name.
pub(crate) fn model_id_for(dir: &Path) -> String {
    let resolved = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    for component in resolved.components().rev() {
        if let Component::Normal(name) = component
            && let Some(repo) = name.to_string_lossy().strip_prefix("models--")
        {
            return repo.replacen("--", "/", 1);
        }
    }
    resolved.file_name().map_or_else(
        || resolved.display().to_string(),
        |name| name.to_string_lossy().into_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_ids() {
        let cases = [
            (
                "/c/hub/models--BAAI--bge-small-zh-v1.5/snapshots/abc123",
                "BAAI/bge-small-zh-v1.5",
            ),
            ("/c/hub/models--gpt2/snapshots/abc", "gpt2"),
            ("/models/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"),
        ];
        for (path, expected) in cases {
            assert_eq!(model_id_for(Path::new(path)), expected, "{path}");
        }
    }
}
