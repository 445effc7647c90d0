//! OpenAI's Vector Stores API: stores, their files and file batches, and search. Every route
//! is scoped to the caller's tenant, and a key whose scopes name knowledge bases may use only
//! those stores (by id or name).

use std::collections::HashMap;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use landfall_accounting::RequestLog;
use landfall_config::Fusion;
use landfall_governance::Principal;
use landfall_knowledge::{
    Attachment, FileChunking, FusionMethod, Knowledge, NewStore, SearchHit, SearchMode,
    SearchRequest, StoreView,
};
use landfall_retrieval::Filter;
use landfall_storage::{BatchRecord, FileCounts, IngestStatus, StoreFileQuery, StoreFileRecord};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::extract::JsonBody;
use crate::routes::json_response;
use crate::routes::knowledge::{Page, knowledge, list_page, listed, seconds};
use crate::{ApiError, AppState};

// ----- wire shapes -----

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateStore {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    file_ids: Vec<String>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
    #[serde(default)]
    chunking_strategy: Option<ChunkingStrategy>,
    #[serde(default)]
    expires_after: Option<Value>,
    /// Accepted for compatibility; the store's embedding model is the server's.
    #[serde(default)]
    description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ChunkingStrategy {
    Auto,
    Static {
        #[serde(rename = "static")]
        settings: StaticChunking,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StaticChunking {
    max_chunk_size_tokens: usize,
    chunk_overlap_tokens: usize,
}

fn chunking(strategy: Option<ChunkingStrategy>) -> Result<Option<FileChunking>, ApiError> {
    match strategy {
        None | Some(ChunkingStrategy::Auto) => Ok(None),
        Some(ChunkingStrategy::Static { settings }) => Ok(Some(FileChunking::checked(
            settings.max_chunk_size_tokens,
            settings.chunk_overlap_tokens,
        )?)),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ModifyStore {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
    #[serde(default, with = "double_option")]
    expires_after: Option<Option<Value>>,
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
mod double_option {
    use serde::{Deserialize, Deserializer};

    pub(crate) fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        deserializer: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(deserializer).map(Some)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AttachFile {
    file_id: String,
    #[serde(default)]
    attributes: Option<Map<String, Value>>,
    #[serde(default)]
    chunking_strategy: Option<ChunkingStrategy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateFile {
    attributes: Option<Map<String, Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateBatch {
    #[serde(default)]
    file_ids: Vec<String>,
    #[serde(default)]
    files: Vec<AttachFile>,
    #[serde(default)]
    attributes: Option<Map<String, Value>>,
    #[serde(default)]
    chunking_strategy: Option<ChunkingStrategy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Search {
    query: Query1,
    #[serde(default)]
    filters: Option<Filter>,
    #[serde(default)]
    max_num_results: Option<usize>,
    #[serde(default)]
    ranking_options: Option<RankingOptions>,
    #[serde(default)]
    rewrite_query: bool,
    /// Landfall: embed a model-written hypothetical answer with the query.
    #[serde(default)]
    hyde: bool,
    /// Landfall: also search this many model-written rewrites and fuse (RAG-Fusion).
    #[serde(default)]
    fusion_queries: usize,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Query1 {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RankingOptions {
    /// OpenAI's `auto` or `default-2024-11-15`: the configured fusion, then the configured
    /// reranker if there is one. Landfall's `none`: fusion only, no reranking.
    #[serde(default)]
    ranker: Option<String>,
    #[serde(default)]
    score_threshold: Option<f32>,
    /// Landfall: `hybrid` (default), `keyword` or `vector`.
    #[serde(default)]
    mode: Option<SearchMode>,
    /// Landfall: `rrf` or `weighted`.
    #[serde(default)]
    fusion: Option<Fusion>,
    /// Landfall: weight of the vector score in `weighted` fusion.
    #[serde(default)]
    vector_weight: Option<f32>,
}

// ----- JSON out -----

fn counts_json(counts: &FileCounts) -> Value {
    json!({
        "in_progress": counts.in_progress,
        "completed": counts.completed,
        "failed": counts.failed,
        "cancelled": counts.cancelled,
        "total": counts.total(),
    })
}

fn store_json(view: &StoreView) -> Value {
    let record = &view.record;
    let status =
        if landfall_knowledge::is_expired(record.expires_at, landfall_storage::now_millis()) {
            "expired"
        } else if view.counts.in_progress > 0 {
            "in_progress"
        } else {
            "completed"
        };
    json!({
        "id": record.id,
        "object": "vector_store",
        "created_at": seconds(record.created_at),
        "name": record.name,
        "usage_bytes": view.usage_bytes,
        "file_counts": counts_json(&view.counts),
        "status": status,
        "expires_after": view.settings.expires_after,
        "expires_at": record.expires_at.map(seconds),
        "last_active_at": seconds(record.last_active_at),
        "metadata": record.metadata,
        "landfall": {
            "embedding_model": view.settings.embedding_model,
            "chunking": {
                "max_chunk_size_tokens": view.settings.chunking.max_tokens,
                "chunk_overlap_tokens": view.settings.chunking.overlap_tokens,
            },
        },
    })
}

fn store_file_json(file: &StoreFileRecord) -> Value {
    let chunking = file
        .chunking
        .as_object()
        .map(|object| {
            json!({
                "type": "static",
                "static": {
                    "max_chunk_size_tokens": object.get("max_tokens"),
                    "chunk_overlap_tokens": object.get("overlap_tokens"),
                },
            })
        })
        .unwrap_or(Value::Null);
    json!({
        "id": file.file_id,
        "object": "vector_store.file",
        "usage_bytes": file.usage_bytes,
        "created_at": seconds(file.created_at),
        "vector_store_id": file.store_id,
        "status": file.status.as_str(),
        "last_error": file.last_error.as_ref().map(|error| json!({"code": error.code, "message": error.message})),
        "chunking_strategy": chunking,
        "attributes": file.attributes,
        "landfall": {"chunks": file.chunk_count},
    })
}

fn batch_json(batch: &BatchRecord, counts: &FileCounts) -> Value {
    let status = if batch.cancelled {
        "cancelled"
    } else if counts.in_progress > 0 {
        "in_progress"
    } else if counts.failed > 0 && counts.completed == 0 {
        "failed"
    } else {
        "completed"
    };
    json!({
        "id": batch.id,
        "object": "vector_store.file_batch",
        "created_at": seconds(batch.created_at),
        "vector_store_id": batch.store_id,
        "status": status,
        "file_counts": counts_json(counts),
    })
}

fn hit_json(hit: &SearchHit) -> Value {
    json!({
        "file_id": hit.file_id,
        "filename": hit.filename,
        "score": hit.score,
        "attributes": hit.attributes,
        "content": [{"type": "text", "text": hit.text}],
        "landfall": {
            "vector_store_id": hit.store_id,
            "chunk_id": hit.chunk_id,
            "page": hit.page,
            "char_start": hit.char_start,
            "char_end": hit.char_end,
            "heading_path": hit.heading_path,
            "keyword": hit.keyword,
            "vector": hit.vector,
            "rerank_score": hit.rerank_score,
        },
    })
}

// ----- scope -----

/// Checks that the store exists for the tenant and the key may use it.
async fn allowed_store(
    knowledge: &Knowledge,
    principal: &Principal,
    store_id: &str,
) -> Result<(), ApiError> {
    let record = knowledge
        .store_record(&principal.tenant.id, store_id)
        .await?;
    if principal.may_use_knowledge_base(&record.id)
        || principal.may_use_knowledge_base(&record.name)
    {
        Ok(())
    } else {
        Err(landfall_knowledge::KnowledgeError::Forbidden {
            store_id: store_id.to_owned(),
        }
        .into())
    }
}

// ----- stores -----

pub(crate) async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    JsonBody(request): JsonBody<CreateStore>,
) -> Result<Response, ApiError> {
    let knowledge = knowledge(&state)?;
    let name = request.name.unwrap_or_default();
    if !principal.may_use_knowledge_base("*") && !principal.may_use_knowledge_base(&name) {
        return Err(ApiError::InvalidValue {
            message: "this API key may only use the vector stores its scopes name; a store \
                      it creates must have one of those names"
                .to_owned(),
            param: "name",
        });
    }
    let _ = request.description;
    let new = NewStore {
        name,
        metadata: request.metadata.unwrap_or_default(),
        chunking: chunking(request.chunking_strategy)?,
        expires_after: request.expires_after,
        file_ids: request.file_ids,
    };
    let view = knowledge.create_store(&principal.tenant.id, new).await?;
    Ok(json_response(&store_json(&view)))
}

pub(crate) async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let knowledge = knowledge(&state)?;
    let (page, descending) = list_page(&params)?;
    let mut stores = knowledge
        .list_stores(&principal.tenant.id, &page.fetch(), descending)
        .await?;
    let has_more = page.trim(&mut stores);
    let data = stores
        .iter()
        .filter(|view| {
            principal.may_use_knowledge_base(&view.record.id)
                || principal.may_use_knowledge_base(&view.record.name)
        })
        .map(store_json)
        .collect();
    Ok(json_response(&listed(data, has_more)))
}

pub(crate) async fn retrieve(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(store_id): Path<String>,
) -> Result<Response, ApiError> {
    let knowledge = knowledge(&state)?;
    allowed_store(knowledge, &principal, &store_id).await?;
    let view = knowledge.get_store(&principal.tenant.id, &store_id).await?;
    Ok(json_response(&store_json(&view)))
}

pub(crate) async fn modify(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(store_id): Path<String>,
    JsonBody(request): JsonBody<ModifyStore>,
) -> Result<Response, ApiError> {
    let knowledge = knowledge(&state)?;
    allowed_store(knowledge, &principal, &store_id).await?;
    let view = knowledge
        .update_store(
            &principal.tenant.id,
            &store_id,
            request.name,
            request.metadata,
            request.expires_after,
        )
        .await?;
    Ok(json_response(&store_json(&view)))
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(store_id): Path<String>,
) -> Result<Response, ApiError> {
    let knowledge = knowledge(&state)?;
    allowed_store(knowledge, &principal, &store_id).await?;
    knowledge
        .delete_store(&principal.tenant.id, &store_id)
        .await?;
    Ok(json_response(
        &json!({"id": store_id, "object": "vector_store.deleted", "deleted": true}),
    ))
}

// ----- files of a store -----

pub(crate) async fn attach(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(store_id): Path<String>,
    JsonBody(request): JsonBody<AttachFile>,
) -> Result<Response, ApiError> {
    let knowledge = knowledge(&state)?;
    allowed_store(knowledge, &principal, &store_id).await?;
    let attachment = Attachment {
        file_id: request.file_id,
        attributes: request.attributes.unwrap_or_default(),
        chunking: chunking(request.chunking_strategy)?,
    };
    let record = knowledge
        .attach(&principal.tenant.id, &store_id, attachment, None)
        .await?;
    Ok(json_response(&store_file_json(&record)))
}

fn file_query(params: &HashMap<String, String>) -> Result<(Page, StoreFileQuery), ApiError> {
    let (page, descending) = list_page(params)?;
    let status = match params.get("filter").map(String::as_str) {
        None => None,
        Some("in_progress") => Some(IngestStatus::InProgress),
        Some("completed") => Some(IngestStatus::Completed),
        Some("failed") => Some(IngestStatus::Failed),
        Some("cancelled") => Some(IngestStatus::Cancelled),
        Some(other) => {
            return Err(ApiError::InvalidValue {
                message: format!(
                    "filter must be in_progress, completed, failed or cancelled, got `{other}`"
                ),
                param: "filter",
            });
        }
    };
    let query = StoreFileQuery {
        status,
        batch_id: None,
        page: page.fetch(),
        descending,
    };
    Ok((page, query))
}

async fn list_files_of(
    state: &AppState,
    principal: &Principal,
    store_id: &str,
    (page, mut query): (Page, StoreFileQuery),
    batch_id: Option<String>,
) -> Result<Response, ApiError> {
    let knowledge = knowledge(state)?;
    allowed_store(knowledge, principal, store_id).await?;
    query.batch_id = batch_id;
    let mut files = knowledge
        .list_store_files(&principal.tenant.id, store_id, &query)
        .await?;
    let has_more = page.trim(&mut files);
    Ok(json_response(&listed(
        files.iter().map(store_file_json).collect(),
        has_more,
    )))
}

pub(crate) async fn list_files(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(store_id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let query = file_query(&params)?;
    list_files_of(&state, &principal, &store_id, query, None).await
}

pub(crate) async fn get_file(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((store_id, file_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let knowledge = knowledge(&state)?;
    allowed_store(knowledge, &principal, &store_id).await?;
    let record = knowledge
        .get_store_file(&principal.tenant.id, &store_id, &file_id)
        .await?;
    Ok(json_response(&store_file_json(&record)))
}

pub(crate) async fn update_file(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((store_id, file_id)): Path<(String, String)>,
    JsonBody(request): JsonBody<UpdateFile>,
) -> Result<Response, ApiError> {
    let knowledge = knowledge(&state)?;
    allowed_store(knowledge, &principal, &store_id).await?;
    let record = knowledge
        .update_attributes(
            &principal.tenant.id,
            &store_id,
            &file_id,
            request.attributes.unwrap_or_default(),
        )
        .await?;
    Ok(json_response(&store_file_json(&record)))
}

pub(crate) async fn detach(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((store_id, file_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let knowledge = knowledge(&state)?;
    allowed_store(knowledge, &principal, &store_id).await?;
    knowledge
        .detach(&principal.tenant.id, &store_id, &file_id)
        .await?;
    Ok(json_response(
        &json!({"id": file_id, "object": "vector_store.file.deleted", "deleted": true}),
    ))
}

/// Landfall: the chunks of an attached file, with pages, offsets and heading paths.
pub(crate) async fn file_chunks(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((store_id, file_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let knowledge = knowledge(&state)?;
    allowed_store(knowledge, &principal, &store_id).await?;
    let chunks = knowledge
        .file_chunks(&principal.tenant.id, &store_id, &file_id)
        .await?;
    let data: Vec<Value> = chunks
        .iter()
        .map(|stored| {
            json!({
                "id": stored.id,
                "object": "vector_store.file.chunk",
                "position": stored.position,
                "text": stored.chunk.text,
                "page": stored.chunk.page,
                "char_start": stored.chunk.char_start,
                "char_end": stored.chunk.char_end,
                "heading_path": stored.chunk.heading_path,
                "tokens": stored.chunk.token_count,
            })
        })
        .collect();
    Ok(json_response(&listed(data, false)))
}

// ----- batches -----

pub(crate) async fn create_batch(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(store_id): Path<String>,
    JsonBody(request): JsonBody<CreateBatch>,
) -> Result<Response, ApiError> {
    let knowledge = knowledge(&state)?;
    allowed_store(knowledge, &principal, &store_id).await?;
    let shared_chunking = chunking(request.chunking_strategy)?;
    let shared_attributes = request.attributes.unwrap_or_default();
    let mut files: Vec<Attachment> = request
        .file_ids
        .into_iter()
        .map(|file_id| Attachment {
            file_id,
            attributes: shared_attributes.clone(),
            chunking: shared_chunking,
        })
        .collect();
    for file in request.files {
        files.push(Attachment {
            file_id: file.file_id,
            attributes: file.attributes.unwrap_or_else(|| shared_attributes.clone()),
            chunking: chunking(file.chunking_strategy)?.or(shared_chunking),
        });
    }
    let (batch, counts) = knowledge
        .create_batch(&principal.tenant.id, &store_id, files)
        .await?;
    Ok(json_response(&batch_json(&batch, &counts)))
}

pub(crate) async fn get_batch(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((store_id, batch_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let knowledge = knowledge(&state)?;
    allowed_store(knowledge, &principal, &store_id).await?;
    let (batch, counts) = knowledge
        .get_batch(&principal.tenant.id, &store_id, &batch_id)
        .await?;
    Ok(json_response(&batch_json(&batch, &counts)))
}

pub(crate) async fn cancel_batch(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((store_id, batch_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let knowledge = knowledge(&state)?;
    allowed_store(knowledge, &principal, &store_id).await?;
    let (batch, counts) = knowledge
        .cancel_batch(&principal.tenant.id, &store_id, &batch_id)
        .await?;
    Ok(json_response(&batch_json(&batch, &counts)))
}

pub(crate) async fn batch_files(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((store_id, batch_id)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let query = file_query(&params)?;
    knowledge(&state)?
        .get_batch(&principal.tenant.id, &store_id, &batch_id)
        .await?;
    list_files_of(&state, &principal, &store_id, query, Some(batch_id)).await
}

// ----- search -----

pub(crate) async fn search(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(log): Extension<RequestLog>,
    Path(store_id): Path<String>,
    JsonBody(request): JsonBody<Search>,
) -> Result<Response, ApiError> {
    let knowledge = knowledge(&state)?;
    allowed_store(knowledge, &principal, &store_id).await?;
    let query = match request.query {
        Query1::One(text) => text,
        Query1::Many(texts) => texts.join(" "),
    };
    let defaults = state.knowledge_search_defaults();
    let ranking = request.ranking_options.unwrap_or_default();
    let rerank = match ranking.ranker.as_deref() {
        None | Some("auto" | "default-2024-11-15") => true,
        Some("none") => false,
        Some(_) => {
            return Err(ApiError::InvalidValue {
                message: "ranker must be `auto`, `default-2024-11-15` or `none`".to_owned(),
                param: "ranking_options.ranker",
            });
        }
    };
    let fusion = match ranking.fusion.unwrap_or(defaults.fusion) {
        Fusion::Rrf => FusionMethod::Rrf,
        Fusion::Weighted => FusionMethod::Weighted {
            vector_weight: ranking.vector_weight.unwrap_or(defaults.vector_weight),
        },
    };
    if ranking
        .vector_weight
        .is_some_and(|weight| !(0.0..=1.0).contains(&weight))
    {
        return Err(ApiError::InvalidValue {
            message: "vector_weight must be between 0 and 1".to_owned(),
            param: "ranking_options.vector_weight",
        });
    }
    let search = SearchRequest {
        query,
        filter: request.filters,
        max_results: request.max_num_results.unwrap_or(defaults.max_num_results),
        score_threshold: ranking.score_threshold.unwrap_or(0.0),
        mode: ranking.mode.unwrap_or_default(),
        fusion,
        rewrite_query: request.rewrite_query,
        hyde: request.hyde,
        fusion_queries: request.fusion_queries.min(8),
        rerank,
    };
    let results = knowledge
        .search(
            &crate::knowledge::caller(&principal, &log),
            &[store_id],
            &search,
        )
        .await?;
    Ok(json_response(&json!({
        "object": "vector_store.search_results.page",
        "search_query": results.queries,
        "data": results.hits.iter().map(hit_json).collect::<Vec<_>>(),
        "has_more": false,
        "next_page": null,
    })))
}
