//! Errors of a run, and of one tool call.

/// Why a run ended without an answer.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The model call failed; `source` says why (the server maps its class to a status).
    #[error("model call failed: {message}")]
    Model {
        message: String,
        /// The caller's own error, to map back after the run.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The overall deadline passed before the model answered.
    #[error("the run took longer than its deadline of {deadline_ms} ms")]
    Deadline { deadline_ms: u64 },
    /// The request itself is unusable (a tool definition, say).
    #[error("{message}")]
    Invalid { message: String },
}

impl AgentError {
    /// Wraps the caller's model error.
    pub fn model(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Model {
            message: source.to_string(),
            source: Box::new(source),
        }
    }
}

/// Why one tool call failed. Every variant goes back to the model as an observation; none
/// ends the run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolError {
    #[error("there is no tool named `{name}` available to you")]
    Unknown { name: String },
    #[error("invalid arguments: {message}")]
    InvalidArguments { message: String },
    #[error("timed out after {timeout_ms} ms")]
    Timeout { timeout_ms: u64 },
    #[error("refused: {message}")]
    Refused { message: String },
    #[error("{message}")]
    Failed { message: String },
}

impl ToolError {
    pub fn failed(message: impl std::fmt::Display) -> Self {
        Self::Failed {
            message: message.to_string(),
        }
    }

    /// A short name for metrics and audit records.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unknown { .. } => "unknown_tool",
            Self::InvalidArguments { .. } => "invalid_arguments",
            Self::Timeout { .. } => "timeout",
            Self::Refused { .. } => "refused",
            Self::Failed { .. } => "failed",
        }
    }
}
