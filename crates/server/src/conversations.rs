//! `/v1/conversations`: OpenAI's Conversations API — a conversation is an ordered list of
//! items that `/v1/responses` with `conversation` continues from and appends its input and
//! output to — plus Landfall's `POST /v1/conversations/{id}/summarize`, which has a model
//! summarize the turns outside the short-term window so later responses send the summary in
//! their place.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use landfall_accounting::RequestLog;
use landfall_gateway::Operation;
use landfall_governance::Principal;
use landfall_storage::{ConversationRecord, ItemQuery, ItemRecord, MemoryStore, StoreError};
use landfall_types::{ChatMessage, ChatRequest, Role};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::extract::JsonBody;
use crate::responses::model::GovernedModel;
use crate::responses::new_id;
use crate::responses::request::push_item;
use crate::routes::chat::token_usage;
use crate::routes::json_response;
use crate::{ApiError, AppState};

/// Items a conversation sends a model at most; older ones need a summary.
pub(crate) const MAX_ITEMS: u32 = 10_000;
/// Items read per turn of the window: enough for a turn with many tool calls.
const ITEMS_PER_TURN: u32 = 32;

/// How many of the newest items a response reads for its window.
pub(crate) fn window_items(state: &AppState) -> u32 {
    match state.routes().config.agents.history_turns {
        0 => MAX_ITEMS,
        turns => turns.saturating_mul(ITEMS_PER_TURN).min(MAX_ITEMS),
    }
}
/// Items one `POST` adds at most, as OpenAI limits it.
const MAX_NEW_ITEMS: usize = 20;

fn store(state: &AppState) -> Result<Arc<dyn MemoryStore>, ApiError> {
    state.memory_store().ok_or_else(|| {
        ApiError::from(StoreError::Unavailable(
            "conversations need a metadata store, and this server has none".to_owned(),
        ))
    })
}

fn invalid(param: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::InvalidValue {
        message: message.into(),
        param,
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::ConversationNotFound { id: id.to_owned() }
}

fn view(conversation: &ConversationRecord) -> Value {
    let mut view = json!({
        "id": conversation.id,
        "object": "conversation",
        "created_at": conversation.created_at.div_euclid(1000),
        "metadata": conversation.metadata,
    });
    if let Some(summary) = &conversation.summary {
        view["landfall_summary"] = json!(summary);
    }
    view
}

fn item_view(item: &ItemRecord) -> Value {
    let mut view = item.item.clone();
    if let Some(object) = view.as_object_mut() {
        object.insert("id".to_owned(), json!(item.id));
        object.entry("status").or_insert_with(|| json!("completed"));
    }
    view
}

fn item_list(items: &[ItemRecord], has_more: bool) -> Response {
    let data: Vec<Value> = items.iter().map(item_view).collect();
    json_response(&json!({
        "object": "list",
        "data": data,
        "first_id": items.first().map(|item| item.id.clone()),
        "last_id": items.last().map(|item| item.id.clone()),
        "has_more": has_more,
    }))
}

/// New items from a request: each checked the way `/v1/responses` reads input items, and
/// given an id of its kind unless it has one.
pub(crate) fn new_items(
    items: Vec<Value>,
    param: &'static str,
) -> Result<Vec<ItemRecord>, ApiError> {
    let now = landfall_storage::now_millis();
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            let item = normalized(item);
            let mut scratch = Vec::new();
            push_item(&mut scratch, &item)
                .map_err(|message| invalid(param, format!("{param}[{index}]: {message}")))?;
            let kind = item
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("message");
            let id = item
                .get("id")
                .and_then(Value::as_str)
                .map_or_else(|| new_id(id_prefix(kind)), str::to_owned);
            Ok(ItemRecord {
                seq: 0,
                id,
                item,
                created_at: now,
            })
        })
        .collect()
}

/// An item as OpenAI lists it: a message has a `type` and its content is a list of parts.
fn normalized(mut item: Value) -> Value {
    let Some(object) = item.as_object_mut() else {
        return item;
    };
    if object.get("type").is_none() && object.contains_key("role") {
        object.insert("type".to_owned(), json!("message"));
    }
    if object.get("type").and_then(Value::as_str) == Some("message")
        && let Some(Value::String(text)) = object.get("content")
    {
        let part = if object.get("role").and_then(Value::as_str) == Some("assistant") {
            "output_text"
        } else {
            "input_text"
        };
        let parts = json!([{"type": part, "text": text}]);
        object.insert("content".to_owned(), parts);
    }
    item
}

fn id_prefix(kind: &str) -> &'static str {
    match kind {
        "function_call" => "fc",
        "function_call_output" => "fco",
        "mcp_call" => "mcp",
        "file_search_call" => "fs",
        "reasoning" => "rs",
        _ => "msg",
    }
}

/// A conversation's id from a request's `conversation`: a string or `{"id": …}`.
pub(crate) fn reference(value: &Value) -> Result<String, ApiError> {
    match value {
        Value::String(id) => Ok(id.clone()),
        Value::Object(object) => object
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| invalid("conversation", "`conversation` needs an `id`")),
        _ => Err(invalid(
            "conversation",
            "`conversation` must be an id or {\"id\": …}",
        )),
    }
}

/// A conversation's history as chat messages: its summary (when one was written) in place of
/// the items before it, then the items after; `seqs[i]` is the item message `i` came from.
pub(crate) struct History {
    pub(crate) conversation: ConversationRecord,
    pub(crate) messages: Vec<ChatMessage>,
    /// `mcp_approval_request` items no `mcp_call` has answered yet.
    pub(crate) pending_approvals: Vec<Value>,
    seqs: Vec<i64>,
    /// Messages at the start that are the summary, not items.
    summary_messages: usize,
}

pub(crate) async fn history(
    state: &AppState,
    tenant_id: &str,
    id: &str,
    newest: u32,
) -> Result<History, ApiError> {
    let store = store(state)?;
    let conversation = store
        .get_conversation(tenant_id, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    let mut items = store
        .list_items(
            id,
            &ItemQuery {
                after: None,
                limit: newest,
                descending: true,
            },
        )
        .await?;
    let truncated = items.len() >= newest as usize;
    items.reverse();
    let mut messages = Vec::new();
    let mut seqs = Vec::new();
    if let Some(summary) = &conversation.summary {
        messages.push(ChatMessage::text(
            Role::System,
            format!("Summary of the earlier conversation:\n{summary}"),
        ));
        seqs.push(0);
    }
    let summary_messages = messages.len();
    let after = conversation.summary_seq.unwrap_or(i64::MIN);
    for item in items.iter().filter(|item| item.seq >= after) {
        // Items were checked when they were added; one that no longer reads is skipped
        // rather than making the conversation unusable.
        if push_item(&mut messages, &item.item).is_err() {
            continue;
        }
        seqs.resize(messages.len(), item.seq);
    }
    if truncated {
        // The oldest fetched turn may have lost its start: begin at a user message.
        let first_user = messages[summary_messages..]
            .iter()
            .position(|message| message.role == Role::User)
            .unwrap_or(messages.len() - summary_messages);
        messages.drain(summary_messages..summary_messages + first_user);
        seqs.drain(summary_messages..summary_messages + first_user);
    }
    let answered: std::collections::HashSet<&str> = items
        .iter()
        .filter(|item| item.item["type"] == "mcp_call")
        .filter_map(|item| item.item["approval_request_id"].as_str())
        .collect();
    let pending_approvals = items
        .iter()
        .filter(|item| item.item["type"] == "mcp_approval_request")
        .filter(|item| {
            item.item["id"]
                .as_str()
                .is_some_and(|id| !answered.contains(id))
        })
        .map(|item| item.item.clone())
        .collect();
    Ok(History {
        conversation,
        messages,
        pending_approvals,
        seqs,
        summary_messages,
    })
}

/// The short-term window of `history`: the summary (if any) and the last turns within
/// `[agents] history_turns` and `history_tokens`.
pub(crate) fn window(
    state: &AppState,
    history: Vec<ChatMessage>,
    pinned: usize,
) -> Vec<ChatMessage> {
    let routes = state.routes();
    let agents = &routes.config.agents;
    let start = pinned
        + landfall_agents::window_start(
            &history[pinned..],
            agents.history_turns as usize,
            agents.history_tokens,
            |message| landfall_governance::text_tokens(&message.text_content()),
        );
    if start == pinned {
        return history;
    }
    let mut kept = history;
    kept.drain(pinned..start);
    kept
}

impl History {
    /// The messages to send: the window, the summary kept in front.
    pub(crate) fn windowed(self, state: &AppState) -> Vec<ChatMessage> {
        window(state, self.messages, self.summary_messages)
    }
}

/// Appends a response's input and output items to its conversation.
pub(crate) async fn append(
    state: &AppState,
    tenant_id: &str,
    id: &str,
    items: Vec<Value>,
) -> Result<(), ApiError> {
    let items = new_items(items, "input")?;
    if !store(state)?.append_items(tenant_id, id, &items).await? {
        return Err(not_found(id));
    }
    Ok(())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateConversation {
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
    #[serde(default)]
    items: Vec<Value>,
}

fn check_metadata(metadata: &Map<String, Value>) -> Result<(), ApiError> {
    if metadata.len() > 16 {
        return Err(invalid("metadata", "`metadata` holds at most 16 keys"));
    }
    for (key, value) in metadata {
        let fits = key.chars().count() <= 64
            && value
                .as_str()
                .is_some_and(|text| text.chars().count() <= 512);
        if !fits {
            return Err(invalid(
                "metadata",
                format!("metadata `{key}`: keys are up to 64 characters, values strings up to 512"),
            ));
        }
    }
    Ok(())
}

/// `POST /v1/conversations`.
pub(crate) async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    JsonBody(request): JsonBody<CreateConversation>,
) -> Result<Response, ApiError> {
    let metadata = request.metadata.unwrap_or_default();
    check_metadata(&metadata)?;
    if request.items.len() > MAX_NEW_ITEMS {
        return Err(invalid(
            "items",
            format!("at most {MAX_NEW_ITEMS} items at once"),
        ));
    }
    let items = new_items(request.items, "items")?;
    let conversation = ConversationRecord {
        id: new_id("conv"),
        tenant_id: principal.tenant.id.clone(),
        metadata: Value::Object(metadata),
        summary: None,
        summary_seq: None,
        created_at: landfall_storage::now_millis(),
    };
    store(&state)?
        .create_conversation(&conversation, &items)
        .await?;
    Ok(json_response(&view(&conversation)))
}

/// `GET /v1/conversations/{id}`.
pub(crate) async fn retrieve(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let conversation = store(&state)?
        .get_conversation(&principal.tenant.id, &id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    Ok(json_response(&view(&conversation)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateConversation {
    metadata: Map<String, Value>,
}

/// `POST /v1/conversations/{id}`: replaces the metadata.
pub(crate) async fn update(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<UpdateConversation>,
) -> Result<Response, ApiError> {
    check_metadata(&request.metadata)?;
    let store = store(&state)?;
    let mut conversation = store
        .get_conversation(&principal.tenant.id, &id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    conversation.metadata = Value::Object(request.metadata);
    if !store.update_conversation(&conversation).await? {
        return Err(not_found(&id));
    }
    Ok(json_response(&view(&conversation)))
}

/// `DELETE /v1/conversations/{id}`: the conversation and its items.
pub(crate) async fn delete(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if !store(&state)?
        .delete_conversation(&principal.tenant.id, &id)
        .await?
    {
        return Err(not_found(&id));
    }
    Ok(json_response(
        &json!({"id": id, "object": "conversation.deleted", "deleted": true}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ItemsQuery {
    after: Option<String>,
    limit: Option<u32>,
    order: Option<String>,
    include: Option<Value>,
}

/// The conversation, checked to be the caller's.
async fn owned(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<(Arc<dyn MemoryStore>, ConversationRecord), ApiError> {
    let store = store(state)?;
    let conversation = store
        .get_conversation(&principal.tenant.id, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    Ok((store, conversation))
}

/// `GET /v1/conversations/{id}/items`: newest first unless `order=asc`.
pub(crate) async fn list_items(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    query: Result<Query<ItemsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let query = query
        .map(|Query(query)| query)
        .map_err(|rejection| invalid("query", rejection.body_text()))?;
    // `include` (extra fields of items) is accepted as the SDK sends it; items carry all
    // their fields already.
    let _ = query.include;
    let descending = match query.order.as_deref() {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(other) => {
            return Err(invalid(
                "order",
                format!("order must be asc or desc, not `{other}`"),
            ));
        }
    };
    let limit = query.limit.unwrap_or(20).clamp(1, 100);
    let (store, _) = owned(&state, &principal, &id).await?;
    let mut items = store
        .list_items(
            &id,
            &ItemQuery {
                after: query.after,
                limit: limit + 1,
                descending,
            },
        )
        .await?;
    let has_more = items.len() > limit as usize;
    items.truncate(limit as usize);
    Ok(item_list(&items, has_more))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateItems {
    items: Vec<Value>,
}

/// `POST /v1/conversations/{id}/items`.
pub(crate) async fn create_items(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<CreateItems>,
) -> Result<Response, ApiError> {
    if request.items.is_empty() || request.items.len() > MAX_NEW_ITEMS {
        return Err(invalid("items", format!("send 1 to {MAX_NEW_ITEMS} items")));
    }
    let items = new_items(request.items, "items")?;
    if !store(&state)?
        .append_items(&principal.tenant.id, &id, &items)
        .await?
    {
        return Err(not_found(&id));
    }
    Ok(item_list(&items, false))
}

/// `GET /v1/conversations/{id}/items/{item_id}`.
pub(crate) async fn get_item(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((id, item_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (store, _) = owned(&state, &principal, &id).await?;
    let item = store
        .get_item(&id, &item_id)
        .await?
        .ok_or(ApiError::ConversationItemNotFound { id: item_id })?;
    Ok(json_response(&item_view(&item)))
}

/// `DELETE /v1/conversations/{id}/items/{item_id}`: returns the conversation.
pub(crate) async fn delete_item(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((id, item_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (store, conversation) = owned(&state, &principal, &id).await?;
    if !store.delete_item(&id, &item_id).await? {
        return Err(ApiError::ConversationItemNotFound { id: item_id });
    }
    Ok(json_response(&view(&conversation)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Summarize {
    model: String,
    /// Turns kept as they are; the default is `[agents] history_turns`.
    #[serde(default)]
    keep_turns: Option<u32>,
}

const SUMMARY_INSTRUCTIONS: &str = "Summarize the conversation below for the assistant who \
    will continue it: what the user wants, facts and preferences they gave, what was decided \
    or done, and what is still open. Be brief and factual. Write in the language of the \
    conversation.";

/// `POST /v1/conversations/{id}/summarize`: a model summarizes the turns before the last
/// `keep_turns` (with the previous summary); later responses send the summary instead of them.
pub(crate) async fn summarize(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(log): Extension<RequestLog>,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<Summarize>,
) -> Result<Response, ApiError> {
    log.model(Operation::Chat, &request.model, false);
    if !state.gateway().has_model(&request.model) {
        return Err(ApiError::ModelNotFound {
            model: request.model,
        });
    }
    state
        .governance()
        .authorize_model(&principal, &request.model)?;
    let keep_turns = request
        .keep_turns
        .unwrap_or(state.routes().config.agents.history_turns)
        .max(1) as usize;
    let history = history(&state, &principal.tenant.id, &id, MAX_ITEMS).await?;
    let pinned = history.summary_messages;
    let start =
        pinned + landfall_agents::window_start(&history.messages[pinned..], keep_turns, 0, |_| 0);
    if start == pinned {
        // Everything fits in the window: nothing to summarize.
        return Ok(json_response(&view(&history.conversation)));
    }
    let mut transcript = String::new();
    for message in &history.messages[..start] {
        let text = message.text_content();
        if text.is_empty() {
            continue;
        }
        let speaker = match message.role {
            Role::User => "User",
            Role::Assistant => "Assistant",
            Role::Tool | Role::Function => "Tool result",
            Role::System | Role::Developer => "Context",
        };
        transcript.push_str(&format!("{speaker}: {text}\n"));
    }
    let chat = ChatRequest::instructed(&request.model, SUMMARY_INSTRUCTIONS, transcript, 1024);
    let model = GovernedModel::new(state.clone(), principal.clone(), log.clone());
    let turn = landfall_agents::Model::complete(&model, chat, None).await;
    let (usage, reported) = model.usage();
    log.usage(token_usage(&usage, reported));
    let turn = match turn {
        Ok(turn) => turn,
        Err(error) => {
            return Err(model.take_failure().unwrap_or(ApiError::AgentFailed {
                message: error.to_string(),
            }));
        }
    };
    let summary = turn.message.text_content().trim().to_owned();
    if summary.is_empty() {
        return Err(ApiError::AgentFailed {
            message: "the model returned an empty summary".to_owned(),
        });
    }
    let mut conversation = history.conversation;
    conversation.summary = Some(summary);
    conversation.summary_seq = history.seqs.get(start).copied();
    if !store(&state)?.update_conversation(&conversation).await? {
        return Err(not_found(&id));
    }
    Ok(json_response(&view(&conversation)))
}
