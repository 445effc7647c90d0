//! Opening the knowledge service from the configuration: the embedder it names (loaded from a
//! folder, or fetched from the Hugging Face Hub into a cache) and the metadata store.

use std::sync::Arc;

use async_trait::async_trait;
use landfall_config::{Config, EmbedderConfig, RerankerConfig};
use landfall_documents::{SimpleTokenizer, TokenSpans};
use landfall_gateway::Gateway;
use landfall_knowledge::{
    Embedder, Knowledge, KnowledgeError, LocalEmbedder, LocalReranker, Reranker, Rewriter,
};
use landfall_storage::Store;
use landfall_types::{
    ChatMessage, ChatRequest, EmbeddingInput, EmbeddingRequest, EmbeddingResponse, EmbeddingVector,
    Role,
};

use crate::Inner;

/// Query rewrites and HyDE passages written by `knowledge.search.rewrite_model` through the
/// gateway (its routing, retries, fallback and metrics apply).
pub(crate) struct GatewayRewriter {
    pub(crate) state: std::sync::Weak<Inner>,
    pub(crate) model: String,
}

#[async_trait]
impl Rewriter for GatewayRewriter {
    async fn generate(&self, instructions: &str, input: &str) -> Result<String, KnowledgeError> {
        let Some(inner) = self.state.upgrade() else {
            return Err(KnowledgeError::Unavailable(
                "the server is stopping".to_owned(),
            ));
        };
        let request = ChatRequest {
            model: self.model.clone(),
            messages: vec![
                ChatMessage::text(Role::System, instructions),
                ChatMessage::text(Role::User, input),
            ],
            stream: None,
            stream_options: None,
            max_tokens: Some(512),
            max_completion_tokens: None,
            temperature: Some(0.0),
            top_p: None,
            stop: None,
            tools: None,
            tool_choice: None,
            extra: Default::default(),
        };
        let served = inner
            .gateway
            .chat(&request)
            .await
            .map_err(|error| KnowledgeError::Generation(error.to_string()))?;
        let text = served
            .value
            .choices
            .first()
            .map(|choice| choice.message.text_content())
            .unwrap_or_default();
        Ok(text)
    }
}

/// The server's gateway, or (for CLI commands that run without a server) one of its own.
enum GatewaySource {
    Server(std::sync::Weak<Inner>),
    Own(Box<Gateway>),
}

impl GatewaySource {
    async fn embed(&self, request: &EmbeddingRequest) -> Result<EmbeddingResponse, KnowledgeError> {
        let served = match self {
            Self::Server(state) => {
                let Some(inner) = state.upgrade() else {
                    return Err(KnowledgeError::Unavailable(
                        "the server is stopping".to_owned(),
                    ));
                };
                inner.gateway.embed(request).await
            }
            Self::Own(gateway) => gateway.embed(request).await,
        };
        served
            .map(|served| served.value)
            .map_err(|error| KnowledgeError::Embedding(error.to_string()))
    }
}

/// Chunk and query embeddings from an embeddings model alias, through the gateway.
pub(crate) struct GatewayEmbedder {
    gateway: GatewaySource,
    model: String,
    dimensions: usize,
    batch_size: usize,
}

#[async_trait]
impl Embedder for GatewayEmbedder {
    fn model_id(&self) -> &str {
        &self.model
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    fn tokenizer(&self) -> Arc<dyn TokenSpans> {
        Arc::new(SimpleTokenizer)
    }

    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, KnowledgeError> {
        let mut vectors = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.batch_size) {
            let request = EmbeddingRequest {
                model: self.model.clone(),
                input: EmbeddingInput::Texts(batch.to_vec()),
                encoding_format: None,
                dimensions: None,
                extra: Default::default(),
            };
            let mut data = self.gateway.embed(&request).await?.data;
            if data.len() != batch.len() {
                return Err(KnowledgeError::Embedding(format!(
                    "`{}` returned {} embeddings for {} inputs",
                    self.model,
                    data.len(),
                    batch.len()
                )));
            }
            data.sort_by_key(|embedding| embedding.index);
            for embedding in data {
                let EmbeddingVector::Float(values) = embedding.embedding else {
                    return Err(KnowledgeError::Embedding(format!(
                        "`{}` returned base64 embeddings to a float request",
                        self.model
                    )));
                };
                if values.len() != self.dimensions {
                    return Err(KnowledgeError::Embedding(format!(
                        "`{}` returned {} dimensions, knowledge.embedder.dimensions is {}",
                        self.model,
                        values.len(),
                        self.dimensions
                    )));
                }
                vectors.push(unit_length(values));
            }
        }
        Ok(vectors)
    }
}

/// The vector scaled to length 1: indexes compare by cosine, and not every provider
/// normalizes.
fn unit_length(values: Vec<f64>) -> Vec<f32> {
    let norm = values.iter().map(|value| value * value).sum::<f64>().sqrt();
    let scale = if norm > 0.0 { 1.0 / norm } else { 1.0 };
    values
        .into_iter()
        .map(|value| (value * scale) as f32)
        .collect()
}

/// Opens the knowledge service `config` describes over `store`, for commands that run
/// without a server (a gateway embedder gets a gateway of its own).
///
/// # Errors
/// When the embedding model cannot be loaded or the indexes cannot be opened.
pub async fn open(
    config: &Config,
    store: Arc<dyn Store>,
    rewriter: Option<Arc<dyn Rewriter>>,
) -> Result<Arc<Knowledge>, KnowledgeError> {
    open_with(config, store, None, rewriter).await
}

/// Opens the knowledge service `config` describes over `store`. `state` is the server's, so
/// a gateway embedder shares its gateway; without it one is built.
///
/// # Errors
/// When the embedding model cannot be loaded or the indexes cannot be opened.
pub(crate) async fn open_with(
    config: &Config,
    store: Arc<dyn Store>,
    state: Option<std::sync::Weak<Inner>>,
    rewriter: Option<Arc<dyn Rewriter>>,
) -> Result<Arc<Knowledge>, KnowledgeError> {
    let embedder: Option<Arc<dyn Embedder>> = match &config.knowledge.embedder {
        EmbedderConfig::None => None,
        EmbedderConfig::Local {
            model,
            cache_dir,
            batch_size,
        } => {
            let batch_size = *batch_size;
            let embedder = load_model(model, cache_dir.as_ref(), move |dir| {
                LocalEmbedder::load(dir, batch_size)
            })
            .await?;
            tracing::info!(
                model = embedder.model_id(),
                dimensions = embedder.dimensions(),
                "embedding model loaded"
            );
            Some(Arc::new(embedder))
        }
        EmbedderConfig::Gateway {
            model,
            dimensions,
            batch_size,
        } => Some(Arc::new(GatewayEmbedder {
            gateway: match state {
                Some(state) => GatewaySource::Server(state),
                None => GatewaySource::Own(Box::new(
                    Gateway::new(config)
                        .map_err(|error| KnowledgeError::Embedding(error.to_string()))?,
                )),
            },
            model: model.clone(),
            dimensions: *dimensions,
            batch_size: *batch_size,
        })),
    };
    let reranker: Option<Arc<dyn Reranker>> = match &config.knowledge.reranker {
        RerankerConfig::None => None,
        RerankerConfig::Local {
            model,
            cache_dir,
            candidates,
            batch_size,
        } => {
            let (candidates, batch_size) = (*candidates, *batch_size);
            let reranker = load_model(model, cache_dir.as_ref(), move |dir| {
                LocalReranker::load(dir, candidates, batch_size)
            })
            .await?;
            tracing::info!(model = reranker.model_id(), "reranking model loaded");
            Some(Arc::new(reranker))
        }
    };
    Knowledge::open(&config.knowledge, store, embedder, rewriter, reranker).await
}

/// Resolves `model` (a folder, or a Hub repository id fetched into `cache_dir`) and loads it
/// with `load`, on the blocking pool.
async fn load_model<T: Send + 'static>(
    model: &str,
    cache_dir: Option<&std::path::PathBuf>,
    load: impl FnOnce(&std::path::Path) -> Result<T, KnowledgeError> + Send + 'static,
) -> Result<T, KnowledgeError> {
    let model = model.to_owned();
    let cache_dir = cache_dir
        .cloned()
        .unwrap_or_else(landfall_models::default_cache_dir);
    tokio::task::spawn_blocking(move || {
        let dir = landfall_models::resolve_model(&model, &cache_dir, None)
            .map_err(|error| KnowledgeError::Embedding(error.to_string()))?;
        load(&dir)
    })
    .await
    .map_err(|error| KnowledgeError::Unavailable(error.to_string()))?
}
