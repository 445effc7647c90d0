//! Provider adapters: the [`ChatModel`] and [`EmbeddingModel`] traits and their
//! implementations for upstream model services. Each adapter translates Landfall's domain
//! types to one wire API and back, and classifies every failure into an
//! [`ErrorClass`](landfall_types::ErrorClass).
//!
//! Adapters make exactly one upstream call per method call: retries, fallback and circuit
//! breaking belong to the gateway. The `local` adapter runs a GGUF model in process
//! (`landfall-models`) instead of calling out. Adding an adapter touches its module, one
//! [`ProviderKind`] variant and one arm of [`build`].

mod anthropic;
mod error;
mod http;
pub mod hub;
mod local;
mod openai;
mod sse;

use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use landfall_config::{ProviderConfig, ProviderKind};
use landfall_types::{ChatChunk, ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse};

pub use error::{BuildError, ProviderError, TimeoutPhase, classify_status};
pub use local::{LocalModel, LocalModels, LocalState, LocalStatus};

/// The chunks of one streamed completion. The stream ends after the last chunk (the usage
/// chunk, when the upstream sends one); an `Err` item is the last item.
pub type ChatStream = BoxStream<'static, Result<ChatChunk, ProviderError>>;

/// A chat completion service.
///
/// Each call makes one upstream request for `upstream_model`, whatever `request.model` says.
/// Implementations never retry. Dropping a returned future or stream cancels the upstream
/// request.
#[async_trait]
pub trait ChatModel: Send + Sync {
    /// A whole completion.
    ///
    /// # Errors
    /// The upstream failure, classified.
    async fn chat(
        &self,
        request: &ChatRequest,
        upstream_model: &str,
    ) -> Result<ChatResponse, ProviderError>;

    /// A streamed completion. Returns once the upstream accepted the request; the stream
    /// yields chunks as they arrive. Usage is always requested from the upstream, so the
    /// stream ends with a usage chunk whenever the upstream can count tokens.
    ///
    /// # Errors
    /// The upstream failure before the stream began, classified.
    async fn chat_stream(
        &self,
        request: &ChatRequest,
        upstream_model: &str,
    ) -> Result<ChatStream, ProviderError>;
}

/// An embedding service. Same guarantees as [`ChatModel`].
#[async_trait]
pub trait EmbeddingModel: Send + Sync {
    /// # Errors
    /// The upstream failure, classified.
    async fn embed(
        &self,
        request: &EmbeddingRequest,
        upstream_model: &str,
    ) -> Result<EmbeddingResponse, ProviderError>;
}

/// What one configured provider offers.
#[derive(Clone)]
pub struct Provider {
    pub chat: Arc<dyn ChatModel>,
    /// `None` when the API has no embeddings.
    pub embeddings: Option<Arc<dyn EmbeddingModel>>,
    /// The model itself, for a `local` provider (to load, unload and inspect it).
    pub local: Option<Arc<LocalModel>>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Provider")
            .field("embeddings", &self.embeddings.is_some())
            .finish_non_exhaustive()
    }
}

/// Builds the adapter a provider's configuration names. A `local` provider's model comes from
/// `locals` (the same one as before when its settings did not change); it is not loaded here.
///
/// # Errors
/// When the HTTP client cannot be built (bad header value, TLS setup).
pub fn build(
    name: &str,
    config: &ProviderConfig,
    locals: &LocalModels,
) -> Result<Provider, BuildError> {
    match &config.kind {
        ProviderKind::Openai {} => {
            let adapter = Arc::new(openai::OpenAi::new(&config.http)?);
            Ok(Provider {
                chat: adapter.clone(),
                embeddings: Some(adapter),
                local: None,
            })
        }
        ProviderKind::Anthropic {
            anthropic_version,
            default_max_tokens,
        } => {
            let adapter =
                anthropic::Anthropic::new(&config.http, anthropic_version, *default_max_tokens)?;
            Ok(Provider {
                chat: Arc::new(adapter),
                embeddings: None,
                local: None,
            })
        }
        ProviderKind::Local(local) => {
            let model = locals.get_or_create(name, local);
            Ok(Provider {
                chat: model.clone(),
                embeddings: None,
                local: Some(model),
            })
        }
    }
}
