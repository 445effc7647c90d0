//! Opening the knowledge service from the configuration: the embedder it names (loaded from a
//! folder, or fetched from the Hugging Face Hub into a cache) and the metadata store.

use std::sync::Arc;

use landfall_config::{Config, EmbedderConfig};
use landfall_knowledge::{Embedder, Knowledge, KnowledgeError, LocalEmbedder};
use landfall_storage::Store;

/// Opens the knowledge service `config` describes over `store`.
///
/// # Errors
/// When the embedding model cannot be loaded or the indexes cannot be opened.
pub async fn open(
    config: &Config,
    store: Arc<dyn Store>,
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
    Knowledge::open(&config.knowledge, store, embedder, None).await
}
