/// A metadata store failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or opened.
    #[error("metadata store unavailable: {0}")]
    Unavailable(String),
    #[error("{entity} `{id}` already exists")]
    Conflict { entity: &'static str, id: String },
    #[error("{entity} `{id}` does not exist")]
    NotFound { entity: &'static str, id: String },
    /// A stored value could not be decoded (a bug or a hand-edited database).
    #[error("corrupt {entity} record `{id}`: {message}")]
    Corrupt {
        entity: &'static str,
        id: String,
        message: String,
    },
    /// Any other database error.
    #[error("metadata store error: {0}")]
    Database(String),
}
