//! The `file_search` tool: hybrid search over the request's vector stores, with the caller's
//! scopes and guardrails, numbering its sources across the run so the answer's `[n]` markers
//! become `file_citation` annotations.

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use landfall_accounting::RequestLog;
use landfall_agents::{Tool, ToolContext, ToolError, ToolOutput, ToolSpec};
use landfall_governance::Principal;
use landfall_knowledge::{FusionMethod, SearchHit, SearchMode, SearchRequest};
use landfall_retrieval::Filter;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::routes::grounding;
use crate::{ApiError, AppState};

pub(crate) const NAME: &str = "file_search";

/// The tool as the request defines it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Definition {
    #[serde(rename = "type")]
    _kind: String,
    vector_store_ids: Vec<String>,
    #[serde(default)]
    max_num_results: Option<usize>,
    #[serde(default)]
    filters: Option<Filter>,
    #[serde(default)]
    ranking_options: Option<Ranking>,
}

#[derive(Debug, Deserialize)]
struct Ranking {
    #[serde(default)]
    ranker: Option<String>,
    #[serde(default)]
    score_threshold: Option<f32>,
}

/// The sources every search of one run found, numbered from 1 in order.
pub(crate) type Sources = Arc<Mutex<Vec<SearchHit>>>;

pub(crate) struct FileSearch {
    spec: ToolSpec,
    state: AppState,
    principal: Principal,
    log: RequestLog,
    guardrails: Option<landfall_guardrails::Selection>,
    store_ids: Vec<String>,
    max_results: usize,
    filter: Option<Filter>,
    score_threshold: f32,
    rerank: bool,
    pub(crate) sources: Sources,
}

impl FileSearch {
    /// Checks the definition and the caller's access to its stores.
    ///
    /// # Errors
    /// A bad definition, knowledge bases switched off, or a store the caller cannot read.
    pub(crate) async fn build(
        state: &AppState,
        principal: &Principal,
        log: &RequestLog,
        guardrails: Option<&landfall_guardrails::Selection>,
        definition: &Value,
    ) -> Result<Self, ApiError> {
        let definition: Definition =
            serde_json::from_value(definition.clone()).map_err(|error| ApiError::InvalidBody {
                detail: format!("file_search tool: {error}"),
                param: Some("tools".to_owned()),
            })?;
        if definition.vector_store_ids.is_empty() {
            return Err(ApiError::InvalidValue {
                message: "the file_search tool needs at least one vector store id".to_owned(),
                param: "tools",
            });
        }
        let knowledge = crate::routes::knowledge::knowledge(state)?;
        let store_ids =
            grounding::resolve_stores(knowledge, principal, &definition.vector_store_ids).await?;
        let ranking = definition.ranking_options;
        let rerank = match ranking
            .as_ref()
            .and_then(|ranking| ranking.ranker.as_deref())
        {
            None | Some("auto" | "default-2024-11-15") => true,
            Some("none") => false,
            Some(_) => {
                return Err(ApiError::InvalidValue {
                    message: "ranker must be `auto`, `default-2024-11-15` or `none`".to_owned(),
                    param: "tools",
                });
            }
        };
        Ok(Self {
            spec: ToolSpec {
                name: NAME.to_owned(),
                description: "Search the knowledge base (manuals, policies, documents) for \
                    passages relevant to a query. Cite what you use with the source numbers in \
                    square brackets, like [1]."
                    .to_owned(),
                parameters: json!({
                    "type": "object",
                    "properties": {"query": {"type": "string", "description": "What to look for, in the documents' language."}},
                    "required": ["query"],
                }),
                sensitive: false,
            },
            state: state.clone(),
            principal: principal.clone(),
            log: log.clone(),
            guardrails: guardrails.cloned(),
            store_ids,
            max_results: definition
                .max_num_results
                .unwrap_or(state.knowledge_search_defaults().max_num_results)
                .clamp(1, 50),
            filter: definition.filters,
            score_threshold: ranking
                .and_then(|ranking| ranking.score_threshold)
                .unwrap_or(0.0),
            rerank,
            sources: Sources::default(),
        })
    }
}

#[async_trait]
impl Tool for FileSearch {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, arguments: Value, _: &ToolContext) -> Result<ToolOutput, ToolError> {
        let query = arguments
            .get("query")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let knowledge = self
            .state
            .knowledge()
            .ok_or_else(|| ToolError::failed("knowledge bases are switched off"))?;
        let search = SearchRequest {
            query: query.clone(),
            filter: self.filter.clone(),
            max_results: self.max_results,
            score_threshold: self.score_threshold,
            mode: SearchMode::Hybrid,
            fusion: FusionMethod::Rrf,
            rewrite_query: false,
            hyde: false,
            fusion_queries: 0,
            rerank: self.rerank,
        };
        let caller = crate::knowledge::caller(&self.principal, &self.log);
        let mut hits = knowledge
            .search(&caller, &self.store_ids, &search)
            .await
            .map_err(ToolError::failed)?
            .hits;
        if let Some(selection) = &self.guardrails {
            crate::guard::check_retrieved(selection, &mut hits, &self.log);
        }
        let results: Vec<Value> = hits
            .iter()
            .map(|hit| {
                json!({
                    "file_id": hit.file_id,
                    "filename": hit.filename,
                    "score": hit.score,
                    "text": hit.text,
                    "attributes": hit.attributes,
                })
            })
            .collect();
        let text = {
            let mut sources = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
            let text = grounding::numbered_sources(&hits, sources.len() + 1);
            sources.extend(hits);
            text
        };
        Ok(ToolOutput {
            text,
            data: Some(json!({"queries": [query], "results": results})),
        })
    }
}

/// Responses-style `file_citation` annotations for the `[n]` markers of `text`.
pub(crate) fn annotations(text: &str, sources: &[SearchHit]) -> Vec<Value> {
    grounding::markers(text, sources.len())
        .into_iter()
        .map(|marker| {
            let hit = &sources[marker.number - 1];
            json!({
                "type": "file_citation",
                "file_id": hit.file_id,
                "filename": hit.filename,
                "index": marker.start,
            })
        })
        .collect()
}
