/// An index failure.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The backend cannot be reached or opened (a remote server down, a directory locked).
    #[error("index unavailable: {0}")]
    Unavailable(String),
    /// The caller asked for something the index cannot do (wrong vector dimensions, a filter
    /// on a value type the backend does not support).
    #[error("invalid index request: {0}")]
    Invalid(String),
    /// The index's own files or the backend's answer could not be read.
    #[error("index corrupt: {0}")]
    Corrupt(String),
    /// Any other backend error.
    #[error("index error: {0}")]
    Backend(String),
}
