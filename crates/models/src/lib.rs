//! In-process inference on CPU with candle: quantized GGUF chat models (llama, qwen2,
//! qwen3: [`LocalChatModel`]), BERT-family sentence embedders
//! (all-MiniLM-L6-v2, bge-small/base en and zh, text2vec-large-chinese and the like) and
//! cross-encoder rerankers (ms-marco-MiniLM and the like), loaded from a local folder in the
//! Hugging Face / sentence-transformers layout, or from a snapshot in the Hugging Face Hub's
//! cache (fetched by `landfall-providers`' `hub`).
//!
//! The only crate that knows candle and tokenizers. It does no async I/O and knows nothing of
//! HTTP, configuration files or the [`EmbeddingModel`] trait: the `providers` crate adapts a
//! [`BertEmbedder`] to it and runs [`BertEmbedder::embed`] off the async reactor.
//!
//! [`EmbeddingModel`]: https://docs.rs/landfall-providers

mod bert;
mod chat;
mod cross_encoder;
mod embedder;
mod error;
mod hub;
mod pooling;
mod settings;
#[cfg(feature = "test-support")]
pub mod test_support;
mod weights;

pub use chat::{
    ChatTemplate, FinishReason, GenerateError, Generation, GenerationEvent, GenerationParams,
    LocalChatModel, LocalChatOptions, LocalModelInfo, SamplingParams, TemplateMessage,
};
pub use cross_encoder::CrossEncoder;
pub use embedder::{BertEmbedder, EmbedderOptions};
pub use error::ModelError;
pub use hub::{
    FALLBACK_WEIGHTS, MODEL_FILES, ModelSource, REQUIRED_FILES, cached_file, cached_snapshot,
    default_cache_dir, is_complete, locate,
};
pub use pooling::Pooling;
