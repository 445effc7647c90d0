//! The `knowledge` section: knowledge bases (OpenAI's files and vector stores), how documents
//! are chunked and embedded, and which indexes hold them.

use std::path::PathBuf;

use serde::Deserialize;

use crate::Secret;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KnowledgeConfig {
    /// Serve `/v1/files` and `/v1/vector_stores` and ingest in the background.
    pub enabled: bool,
    /// Where the embedded indexes live (BM25, and vectors when `vector_index` is embedded).
    /// They are derived from the chunks in the metadata store and rebuilt from it when lost.
    pub index_dir: PathBuf,
    /// Files ingested at the same time.
    pub ingest_workers: usize,
    /// Largest file `/v1/files` accepts, in bytes.
    pub max_file_bytes: u64,
    /// Default chunking of new vector stores (each store and upload may override it).
    pub chunking: ChunkingConfig,
    pub embedder: EmbedderConfig,
    /// What reorders the fused candidates of a search, if anything.
    pub reranker: RerankerConfig,
    pub vector_index: VectorIndexConfig,
    pub search: SearchConfig,
    /// Where models named by a Hub repository id are fetched from: the public Hub, or a
    /// mirror. `None`: `HF_ENDPOINT`, else `https://huggingface.co`.
    pub hub_endpoint: Option<String>,
}

impl Default for KnowledgeConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            index_dir: PathBuf::from("landfall-data/index"),
            ingest_workers: 1,
            max_file_bytes: 512 * 1024 * 1024,
            chunking: ChunkingConfig::default(),
            embedder: EmbedderConfig::default(),
            reranker: RerankerConfig::default(),
            vector_index: VectorIndexConfig::default(),
            search: SearchConfig::default(),
            hub_endpoint: None,
        }
    }
}

/// Token windows counted in the embedding model's own tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChunkingConfig {
    pub max_tokens: usize,
    pub overlap_tokens: usize,
}

impl Default for ChunkingConfig {
    fn default() -> Self {
        Self {
            max_tokens: 128,
            overlap_tokens: 32,
        }
    }
}

/// What turns text into vectors, chosen by `type`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum EmbedderConfig {
    /// No embeddings: knowledge bases are searched by BM25 only.
    #[default]
    None,
    /// A BERT-family sentence embedder run in this process on CPU.
    Local {
        /// A folder with `config.json`, `tokenizer.json` and weights, or a Hugging Face Hub
        /// repository id (`sentence-transformers/all-MiniLM-L6-v2`) fetched into `cache_dir`.
        model: String,
        #[serde(default)]
        cache_dir: Option<PathBuf>,
        #[serde(default = "default_batch_size")]
        batch_size: usize,
    },
    /// An embeddings model alias of `[models]`, called through the gateway, so its routing,
    /// retries, fallback, circuit breakers and metrics apply. Chunk windows are counted in
    /// Landfall's simple tokens (a CJK character, or a run of letters and digits, each one).
    Gateway {
        /// The alias, as clients would name it in `/v1/embeddings`.
        model: String,
        /// Length of the vectors the model returns; a response of another length is refused.
        dimensions: usize,
        /// Texts per upstream request.
        #[serde(default = "default_gateway_batch_size")]
        batch_size: usize,
    },
}

fn default_batch_size() -> usize {
    32
}

fn default_gateway_batch_size() -> usize {
    64
}

/// What reranks search results, chosen by `type`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RerankerConfig {
    /// Results are ordered by the fused retriever scores.
    #[default]
    None,
    /// A BERT cross-encoder run in this process on CPU (e.g.
    /// `cross-encoder/ms-marco-MiniLM-L-6-v2`): it reads the query with each of the best
    /// `candidates` fused hits and reorders them by its score.
    Local {
        /// A folder with `config.json`, `tokenizer.json` and weights, or a Hub repository id.
        model: String,
        #[serde(default)]
        cache_dir: Option<PathBuf>,
        /// Fused hits read by the cross-encoder per search (at least `max_num_results`).
        #[serde(default = "default_rerank_candidates")]
        candidates: usize,
        #[serde(default = "default_batch_size")]
        batch_size: usize,
    },
}

fn default_rerank_candidates() -> usize {
    30
}

/// Which index holds the vectors, chosen by `type`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum VectorIndexConfig {
    /// In this process, rebuilt from the stored chunks at start.
    #[default]
    Embedded,
    /// PostgreSQL with the pgvector extension, shared by replicas.
    Pgvector {
        url: Secret,
        #[serde(default = "default_table_prefix")]
        table_prefix: String,
    },
    /// A Chroma server.
    Chroma {
        url: String,
        #[serde(default = "default_collection")]
        collection: String,
    },
    /// A Qdrant server or cluster.
    Qdrant {
        url: String,
        #[serde(default)]
        api_key: Option<Secret>,
        #[serde(default = "default_collection")]
        collection: String,
    },
}

fn default_table_prefix() -> String {
    "landfall".to_owned()
}

fn default_collection() -> String {
    "landfall_chunks".to_owned()
}

/// Defaults of `/v1/vector_stores/{id}/search` and grounded answers.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SearchConfig {
    /// How keyword and vector results are combined.
    pub fusion: Fusion,
    /// Weight of the vector score in `weighted` fusion (the keyword score gets 1 - this).
    pub vector_weight: f32,
    /// Results per search when the request does not say.
    pub max_num_results: usize,
    /// Model alias that writes HyDE answers and query rewrites (`rewrite_query`, RAG-Fusion).
    pub rewrite_model: Option<String>,
    /// The instructions of grounded answers' system prompt (role, task, constraints, output
    /// format); the numbered sources follow them. Default: Landfall's own, which asks for
    /// citations as `[n]`.
    pub grounding_instructions: Option<String>,
}

impl Default for SearchConfig {
    fn default() -> Self {
        Self {
            fusion: Fusion::Rrf,
            vector_weight: 0.5,
            max_num_results: 10,
            rewrite_model: None,
            grounding_instructions: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fusion {
    /// Reciprocal rank fusion (k = 60).
    #[default]
    Rrf,
    /// Weighted sum of min-max normalized scores.
    Weighted,
}
