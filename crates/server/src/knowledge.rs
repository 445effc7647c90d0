//! Opening the knowledge service from the configuration: the embedder it names (loaded from a
//! folder, or fetched from the Hugging Face Hub into a cache) and the metadata store.

use std::sync::Arc;

use async_trait::async_trait;
use landfall_config::{Config, EmbedderConfig};
use landfall_knowledge::{Embedder, Knowledge, KnowledgeError, LocalEmbedder, Rewriter};
use landfall_storage::Store;
use landfall_types::{ChatMessage, ChatRequest, Role};

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

/// Opens the knowledge service `config` describes over `store`.
///
/// # Errors
/// When the embedding model cannot be loaded or the indexes cannot be opened.
pub async fn open(
    config: &Config,
    store: Arc<dyn Store>,
    rewriter: Option<Arc<dyn Rewriter>>,
) -> Result<Arc<Knowledge>, KnowledgeError> {
    let embedder: Option<Arc<dyn Embedder>> = match &config.knowledge.embedder {
        EmbedderConfig::None => None,
        EmbedderConfig::Local {
            model,
            cache_dir,
            batch_size,
        } => {
            let model = model.clone();
            let cache_dir = cache_dir
                .clone()
                .unwrap_or_else(landfall_models::default_cache_dir);
            let batch_size = *batch_size;
            let embedder = tokio::task::spawn_blocking(move || {
                let dir = landfall_models::resolve_model(&model, &cache_dir, None)
                    .map_err(|error| KnowledgeError::Embedding(error.to_string()))?;
                LocalEmbedder::load(&dir, batch_size)
            })
            .await
            .map_err(|error| KnowledgeError::Unavailable(error.to_string()))??;
            tracing::info!(
                model = embedder.model_id(),
                dimensions = embedder.dimensions(),
                "embedding model loaded"
            );
            Some(Arc::new(embedder))
        }
    };
    Knowledge::open(&config.knowledge, store, embedder, rewriter).await
}
