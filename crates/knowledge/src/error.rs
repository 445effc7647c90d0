use landfall_retrieval::IndexError;
use landfall_storage::StoreError;

/// A knowledge-base failure, classed by what the caller may do about it.
#[derive(Debug, thiserror::Error)]
pub enum KnowledgeError {
    /// No such file, store, batch or attachment for this tenant.
    #[error("{entity} `{id}` does not exist")]
    NotFound { entity: &'static str, id: String },
    /// The request is wrong (bad chunking, an empty query, a filter the index cannot run).
    #[error("{message}")]
    Invalid {
        /// The request field at fault, when there is one.
        param: Option<&'static str>,
        message: String,
    },
    /// The key may not use this store.
    #[error("this API key may not use vector store `{store_id}`")]
    Forbidden { store_id: String },
    /// A file is attached to the store already, or a similar clash.
    #[error("{message}")]
    Conflict { message: String },
    /// The request needs something this deployment does not have configured.
    #[error("{message}")]
    Unsupported { message: String },
    /// The metadata store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The embedder failed.
    #[error("embedding failed: {0}")]
    Embedding(String),
    /// Generating a query rewrite or hypothetical answer failed.
    #[error("query rewriting failed: {0}")]
    Generation(String),
    /// The caller's limits or budgets refused a model call made for it. The source is the
    /// refusal as the server's governance layer gave it, so the server answers it with the
    /// same status and headers as a direct call.
    #[error("{0}")]
    Refused(Box<dyn std::error::Error + Send + Sync>),
    /// The service is shutting down or a background task died.
    #[error("knowledge service unavailable: {0}")]
    Unavailable(String),
}

impl KnowledgeError {
    pub(crate) fn invalid(param: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            param: Some(param),
            message: message.into(),
        }
    }

    pub(crate) fn not_found(entity: &'static str, id: &str) -> Self {
        Self::NotFound {
            entity,
            id: id.to_owned(),
        }
    }
}
