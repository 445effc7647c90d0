//! Domain types shared by every Landfall crate: chat and embedding requests and responses,
//! streamed chunks, token usage, and the error classes that drive retries and fallback.
//!
//! The chat and embedding types follow the OpenAI wire schema, the lingua franca of every
//! provider Landfall speaks to, and keep every field they do not name in `extra` so that a
//! request or response passes through the gateway unchanged. This crate has no I/O and knows
//! no transport.

mod chat;
mod embedding;
mod error_class;
mod price;

pub use chat::{
    ChatChunk, ChatMessage, ChatRequest, ChatResponse, Choice, ChunkChoice, Delta, FunctionCall,
    FunctionCallDelta, FunctionDefinition, MessageContent, Role, Stop, StreamOptions, Tool,
    ToolCall, ToolCallDelta, Usage,
};
pub use embedding::{
    Embedding, EmbeddingInput, EmbeddingRequest, EmbeddingResponse, EmbeddingUsage, EmbeddingVector,
};
pub use error_class::ErrorClass;
pub use price::TokenPrice;

/// Fields a type does not name, kept verbatim so they pass through.
pub type Extra = serde_json::Map<String, serde_json::Value>;
