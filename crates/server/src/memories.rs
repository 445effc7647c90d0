//! Long-term memory: facts about one end user of a tenant (`user` in a request), saved
//! through `/v1/memories` or by the model's `remember` tool (`{"type": "memory"}` in a
//! response's tools), embedded with the knowledge embedder, and recalled into later
//! responses of the same user by cosine similarity to their input.
//!
//! A user's memories are compared by brute force: they are few (a store holds at most
//! 10,000 per user), and it needs no vector index on either backend.

use std::sync::Arc;

use async_trait::async_trait;
use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use landfall_accounting::RequestLog;
use landfall_agents::{Tool, ToolContext, ToolError, ToolOutput, ToolSpec};
use landfall_governance::Principal;
use landfall_knowledge::{Caller, Embedder};
use landfall_storage::{MemoryRecord, MemoryStore, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::extract::JsonBody;
use crate::responses::new_id;
use crate::routes::json_response;
use crate::{ApiError, AppState};

/// Longest fact, in characters.
const MAX_TEXT_CHARS: usize = 2_000;
/// The name of the model's tool.
pub(crate) const REMEMBER: &str = "remember";

fn store(state: &AppState) -> Result<Arc<dyn MemoryStore>, ApiError> {
    state.memory_store().ok_or_else(|| {
        ApiError::from(StoreError::Unavailable(
            "long-term memory needs a metadata store, and this server has none".to_owned(),
        ))
    })
}

fn embedder(state: &AppState) -> Result<Arc<dyn Embedder>, ApiError> {
    state
        .knowledge()
        .and_then(|knowledge| knowledge.embedder().cloned())
        .ok_or_else(|| ApiError::InvalidValue {
            message: "long-term memory needs an embedding model: configure \
                      [knowledge.embedder]"
                .to_owned(),
            param: "user",
        })
}

fn invalid(param: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::InvalidValue {
        message: message.into(),
        param,
    }
}

fn check_user(user: &str) -> Result<(), ApiError> {
    if user.is_empty() || user.chars().count() > 256 {
        return Err(invalid("user", "`user` must be 1 to 256 characters"));
    }
    Ok(())
}

fn check_text(text: &str) -> Result<String, ApiError> {
    let text = text.trim();
    if text.is_empty() || text.chars().count() > MAX_TEXT_CHARS {
        return Err(invalid(
            "text",
            format!("a memory is 1 to {MAX_TEXT_CHARS} characters"),
        ));
    }
    Ok(text.to_owned())
}

fn view(memory: &MemoryRecord, score: Option<f32>) -> Value {
    let mut view = json!({
        "id": memory.id,
        "object": "memory",
        "user": memory.user_id,
        "text": memory.text,
        "source": memory.source,
        "created_at": memory.created_at.div_euclid(1000),
    });
    if let Some(score) = score {
        view["score"] = json!(score);
    }
    view
}

async fn embed_one(
    embedder: &dyn Embedder,
    text: &str,
    caller: &Caller,
) -> Result<Vec<f32>, ApiError> {
    let mut vectors = embedder.embed(vec![text.to_owned()], caller).await?;
    vectors.pop().ok_or_else(|| {
        ApiError::from(landfall_knowledge::KnowledgeError::Embedding(
            "the embedder returned no vector".to_owned(),
        ))
    })
}

/// Saves `text` as a memory of `user`.
async fn save(
    state: &AppState,
    caller: &Caller,
    user: &str,
    text: &str,
    source: &str,
) -> Result<MemoryRecord, ApiError> {
    let embedding = embed_one(embedder(state)?.as_ref(), text, caller).await?;
    let memory = MemoryRecord {
        id: new_id("mem"),
        tenant_id: caller.tenant_id.clone(),
        user_id: user.to_owned(),
        text: text.to_owned(),
        embedding,
        source: source.to_owned(),
        created_at: landfall_storage::now_millis(),
    };
    store(state)?.save_memory(&memory).await?;
    Ok(memory)
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return -1.0;
    }
    let (mut dot, mut norm_a, mut norm_b) = (0.0f32, 0.0f32, 0.0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        norm_a += x * x;
        norm_b += y * y;
    }
    if norm_a == 0.0 || norm_b == 0.0 {
        return 0.0;
    }
    dot / (norm_a.sqrt() * norm_b.sqrt())
}

/// The `limit` memories of `user` most similar to `query`, at least `min_score`, best first.
/// Nothing (and no embedding call) when the user has no memories.
async fn search(
    state: &AppState,
    caller: &Caller,
    user: &str,
    query: &str,
    limit: usize,
    min_score: f32,
) -> Result<Vec<(MemoryRecord, f32)>, ApiError> {
    let memories = store(state)?.list_memories(&caller.tenant_id, user).await?;
    if memories.is_empty() || limit == 0 {
        return Ok(Vec::new());
    }
    let query = embed_one(embedder(state)?.as_ref(), query, caller).await?;
    let mut scored: Vec<(MemoryRecord, f32)> = memories
        .into_iter()
        .map(|memory| {
            let score = cosine(&memory.embedding, &query);
            (memory, score)
        })
        .filter(|(_, score)| *score >= min_score)
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    scored.truncate(limit);
    Ok(scored)
}

/// The system message of recalled memories for a response of `user` whose input is
/// `query`; `None` when recall is off or nothing is similar enough.
pub(crate) async fn recall(
    state: &AppState,
    caller: &Caller,
    user: &str,
    query: &str,
) -> Result<Option<String>, ApiError> {
    let (limit, min_score) = {
        let routes = state.routes();
        let agents = &routes.config.agents;
        (agents.memory_recall as usize, agents.memory_min_score)
    };
    if limit == 0 || query.trim().is_empty() || state.memory_store().is_none() {
        return Ok(None);
    }
    let recalled = search(state, caller, user, query, limit, min_score).await?;
    if recalled.is_empty() {
        return Ok(None);
    }
    let mut text = "What you know about this user from earlier conversations:".to_owned();
    for (memory, _) in &recalled {
        text.push_str("\n- ");
        text.push_str(&memory.text);
    }
    Ok(Some(text))
}

/// The model's `remember` tool: saves a fact about the response's end user.
pub(crate) struct Remember {
    spec: ToolSpec,
    state: AppState,
    caller: Caller,
    user: String,
}

impl Remember {
    pub(crate) fn new(state: AppState, caller: Caller, user: String) -> Self {
        Self {
            spec: ToolSpec {
                name: REMEMBER.to_owned(),
                description: "Saves a lasting fact about the user (a preference, their \
                              product, their situation) so later conversations can use it. \
                              One short sentence per fact; never secrets or passwords."
                    .to_owned(),
                parameters: json!({
                    "type": "object",
                    "properties": {"fact": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT_CHARS}},
                    "required": ["fact"],
                    "additionalProperties": false,
                }),
                sensitive: false,
            },
            state,
            caller,
            user,
        }
    }
}

#[async_trait]
impl Tool for Remember {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, arguments: Value, _: &ToolContext) -> Result<ToolOutput, ToolError> {
        let fact = arguments["fact"].as_str().unwrap_or_default();
        let fact = check_text(fact).map_err(|error| ToolError::InvalidArguments {
            message: error.detail().message,
        })?;
        let memory = save(&self.state, &self.caller, &self.user, &fact, "model")
            .await
            .map_err(|error| ToolError::failed(error.detail().message))?;
        Ok(ToolOutput {
            text: format!("Saved: {}", memory.text),
            data: Some(json!({"id": memory.id})),
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateMemory {
    user: String,
    text: String,
}

/// `POST /v1/memories`.
pub(crate) async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(log): Extension<RequestLog>,
    JsonBody(request): JsonBody<CreateMemory>,
) -> Result<Response, ApiError> {
    check_user(&request.user)?;
    let text = check_text(&request.text)?;
    let caller = crate::knowledge::caller(&principal, &log);
    let memory = save(&state, &caller, &request.user, &text, "api").await?;
    Ok(json_response(&view(&memory, None)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    user: String,
}

/// `GET /v1/memories?user=U`: oldest first.
pub(crate) async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|rejection| invalid("user", rejection.body_text()))?;
    check_user(&query.user)?;
    let memories = store(&state)?
        .list_memories(&principal.tenant.id, &query.user)
        .await?;
    let data: Vec<Value> = memories.iter().map(|memory| view(memory, None)).collect();
    Ok(json_response(&json!({"object": "list", "data": data})))
}

/// `DELETE /v1/memories/{id}`.
pub(crate) async fn delete(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if !store(&state)?
        .delete_memory(&principal.tenant.id, &id)
        .await?
    {
        return Err(ApiError::MemoryNotFound { id });
    }
    Ok(json_response(
        &json!({"id": id, "object": "memory.deleted", "deleted": true}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SearchMemories {
    user: String,
    query: String,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    min_score: Option<f32>,
}

/// `POST /v1/memories/search`: what a response would recall.
pub(crate) async fn search_route(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(log): Extension<RequestLog>,
    JsonBody(request): JsonBody<SearchMemories>,
) -> Result<Response, ApiError> {
    check_user(&request.user)?;
    if request.query.trim().is_empty() {
        return Err(invalid("query", "`query` must not be empty"));
    }
    let caller = crate::knowledge::caller(&principal, &log);
    let limit = request.limit.unwrap_or(10).clamp(1, 50);
    let min_score = request.min_score.unwrap_or(-1.0);
    let found = search(
        &state,
        &caller,
        &request.user,
        &request.query,
        limit,
        min_score,
    )
    .await?;
    let data: Vec<Value> = found
        .iter()
        .map(|(memory, score)| view(memory, Some(*score)))
        .collect();
    Ok(json_response(&json!({"object": "list", "data": data})))
}
