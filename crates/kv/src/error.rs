/// A failure of the backend itself (not a refusal: refusals are [`crate::Verdict`]s).
#[derive(Debug, Clone, thiserror::Error)]
pub enum KvError {
    /// The backend cannot be reached or did not answer in time.
    #[error("{backend} unavailable: {message}")]
    Unavailable {
        backend: &'static str,
        message: String,
    },
    /// The backend answered something this crate did not expect.
    #[error("{backend} protocol error: {message}")]
    Protocol {
        backend: &'static str,
        message: String,
    },
}
