//! Grounded answers: a chat completion with Landfall's `knowledge` extension
//! (`{"vector_store_ids": [...], "max_num_results": 5, "filters": {...}}`), or to a model alias
//! configured with `knowledge = { vector_store_ids = [...] }`, retrieves from those
//! stores with the last user message, puts the numbered sources in a system prompt that asks
//! for `[n]` citations, and returns the answer with `file_citation` annotations for every
//! `[n]` it contains (a final chunk carries them when streaming) and every source under
//! `landfall.sources`.

use futures::StreamExt;
use landfall_accounting::RequestLog;
use landfall_governance::Principal;
use landfall_knowledge::{FusionMethod, SearchHit, SearchMode, SearchRequest};
use landfall_providers::ChatStream;
use landfall_retrieval::Filter;
use landfall_types::{ChatChunk, ChatMessage, ChatRequest, ChatResponse, Role};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::routes::knowledge::knowledge;
use crate::{ApiError, AppState};

/// The request extension.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KnowledgeOptions {
    vector_store_ids: Vec<String>,
    #[serde(default)]
    max_num_results: Option<usize>,
    #[serde(default)]
    filters: Option<Filter>,
    #[serde(default)]
    score_threshold: Option<f32>,
}

/// The default of `[knowledge.search] grounding_instructions`.
const INSTRUCTIONS: &str = "You answer questions using only the numbered sources below.\n\
Task: answer the user's last question from the sources.\n\
Constraints: if the sources do not contain the answer, say so instead of guessing; keep the \
user's language; do not invent facts, numbers or sources.\n\
Output format: cite every statement with the number of its source in square brackets, like \
[1] or [2][3].";

/// Retrieves for `request` when it carries the `knowledge` extension, and adds the sources'
/// system message. Returns the sources, numbered from 1 in order (`None`: not grounded).
pub(crate) async fn ground(
    state: &AppState,
    principal: &Principal,
    log: &RequestLog,
    request: &mut ChatRequest,
    guardrails: Option<&landfall_guardrails::Selection>,
) -> Result<Option<Vec<SearchHit>>, ApiError> {
    let options = match request.extra.remove("knowledge") {
        Some(options) => {
            serde_json::from_value(options).map_err(|error| ApiError::InvalidBody {
                detail: format!("`knowledge`: {error}"),
                param: Some("knowledge".to_owned()),
            })?
        }
        None => match state.model_knowledge(&request.model) {
            Some(bound) => KnowledgeOptions {
                vector_store_ids: bound.vector_store_ids.clone(),
                max_num_results: bound.max_num_results,
                filters: None,
                score_threshold: None,
            },
            None => return Ok(None),
        },
    };
    if options.vector_store_ids.is_empty() {
        return Err(ApiError::InvalidValue {
            message: "`knowledge.vector_store_ids` must name at least one vector store".to_owned(),
            param: "knowledge.vector_store_ids",
        });
    }
    let knowledge = knowledge(state)?;
    let store_ids = resolve_stores(knowledge, principal, &options.vector_store_ids).await?;
    let Some(question) = request
        .messages
        .iter()
        .rev()
        .find(|message| message.role == Role::User)
        .map(ChatMessage::text_content)
        .filter(|text| !text.trim().is_empty())
    else {
        return Err(ApiError::InvalidValue {
            message: "grounded answers need a user message with text".to_owned(),
            param: "messages",
        });
    };
    let search = SearchRequest {
        query: question,
        filter: options.filters,
        max_results: options.max_num_results.unwrap_or(5).clamp(1, 20),
        score_threshold: options.score_threshold.unwrap_or(0.0),
        mode: SearchMode::Hybrid,
        fusion: FusionMethod::Rrf,
        rewrite_query: false,
        hyde: false,
        fusion_queries: 0,
        rerank: true,
    };
    let hits = knowledge
        .search(
            &crate::knowledge::caller(principal, log),
            &store_ids,
            &search,
        )
        .await?
        .hits;
    let mut hits = hits;
    if let Some(selection) = guardrails {
        crate::guard::check_retrieved(selection, &mut hits, log);
    }
    let instructions = state
        .knowledge_search_defaults()
        .grounding_instructions
        .as_deref()
        .unwrap_or(INSTRUCTIONS);
    request.messages.insert(
        0,
        ChatMessage::text(Role::System, prompt(instructions, &hits)),
    );
    Ok(Some(hits))
}

/// The ids of `stores` (ids, or names of the caller's tenant, as aliases bound in the
/// configuration name them), each checked against the key's scopes.
///
/// # Errors
/// `NotFound` for a store the tenant does not have, `Forbidden` for one the key may not read.
pub(crate) async fn resolve_stores(
    knowledge: &landfall_knowledge::Knowledge,
    principal: &Principal,
    stores: &[String],
) -> Result<Vec<String>, ApiError> {
    let mut store_ids = Vec::with_capacity(stores.len());
    for store_id in stores {
        let store = knowledge
            .find_store(&principal.tenant.id, store_id)
            .await?
            .ok_or_else(|| landfall_knowledge::KnowledgeError::NotFound {
                entity: "vector store",
                id: store_id.clone(),
            })?;
        if !principal.may_use_knowledge_base(&store.id)
            && !principal.may_use_knowledge_base(&store.name)
        {
            return Err(landfall_knowledge::KnowledgeError::Forbidden {
                store_id: store_id.clone(),
            }
            .into());
        }
        store_ids.push(store.id);
    }
    Ok(store_ids)
}

/// The system prompt: `instructions`, then the numbered sources.
fn prompt(instructions: &str, hits: &[SearchHit]) -> String {
    let mut prompt = String::from(instructions.trim_end());
    prompt.push_str("\n\nSources:\n");
    prompt.push_str(&numbered_sources(hits, 1));
    prompt
}

/// Each source as `[n] filename, page: text`, numbered from `first`.
pub(crate) fn numbered_sources(hits: &[SearchHit], first: usize) -> String {
    if hits.is_empty() {
        return "(none found)\n".to_owned();
    }
    let mut text = String::new();
    for (index, hit) in hits.iter().enumerate() {
        let page = hit
            .page
            .map(|page| format!(", page {page}"))
            .unwrap_or_default();
        text.push_str(&format!(
            "[{}] {}{page}:\n{}\n\n",
            index + first,
            hit.filename,
            hit.text
        ));
    }
    text
}

fn source_json(number: usize, hit: &SearchHit) -> Value {
    json!({
        "index": number,
        "file_id": hit.file_id,
        "filename": hit.filename,
        "vector_store_id": hit.store_id,
        "chunk_id": hit.chunk_id,
        "page": hit.page,
        "char_start": hit.char_start,
        "char_end": hit.char_end,
        "heading_path": hit.heading_path,
        "score": hit.score,
        "text": hit.text,
    })
}

/// A `[n]` citation marker in an answer: character offsets of the brackets and `n`.
pub(crate) struct Marker {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) number: usize,
}

/// Every `[n]` in `text` with `n` in `1..=sources`, in order.
pub(crate) fn markers(text: &str, sources: usize) -> Vec<Marker> {
    let chars: Vec<char> = text.chars().collect();
    let mut found = Vec::new();
    let mut position = 0;
    while position < chars.len() {
        if chars[position] == '['
            && let Some(length) = chars[position + 1..].iter().position(|c| *c == ']')
        {
            let inside: String = chars[position + 1..position + 1 + length].iter().collect();
            if let Ok(number) = inside.trim().parse::<usize>()
                && (1..=sources).contains(&number)
            {
                found.push(Marker {
                    start: position,
                    end: position + length + 2,
                    number,
                });
                position += length + 2;
                continue;
            }
        }
        position += 1;
    }
    found
}

/// `file_citation` annotations for each `[n]` in `text` that names a source; indexes are
/// character offsets of the marker.
fn annotations(text: &str, hits: &[SearchHit]) -> Vec<Value> {
    markers(text, hits.len())
        .into_iter()
        .map(|marker| {
            let hit = &hits[marker.number - 1];
            json!({
                "type": "file_citation",
                "file_citation": {
                    "start_index": marker.start,
                    "end_index": marker.end,
                    "index": marker.number,
                    "file_id": hit.file_id,
                    "filename": hit.filename,
                    "page": hit.page,
                    "chunk_id": hit.chunk_id,
                },
            })
        })
        .collect()
}

/// Adds the annotations and sources to a whole completion.
pub(crate) fn annotate(response: &mut ChatResponse, hits: &[SearchHit]) {
    for choice in &mut response.choices {
        let text = choice.message.text_content();
        choice.message.extra.insert(
            "annotations".to_owned(),
            Value::Array(annotations(&text, hits)),
        );
    }
    response.extra.insert("landfall".to_owned(), sources(hits));
}

fn sources(hits: &[SearchHit]) -> Value {
    let sources: Vec<Value> = hits
        .iter()
        .enumerate()
        .map(|(index, hit)| source_json(index + 1, hit))
        .collect();
    json!({ "sources": sources })
}

/// Passes the stream through, then (if it ended cleanly) sends one more chunk whose delta
/// carries the annotations of the whole text and whose `landfall` field lists the sources.
pub(crate) fn annotate_stream(stream: ChatStream, hits: Vec<SearchHit>) -> ChatStream {
    let state = std::sync::Arc::new(std::sync::Mutex::new((
        String::new(),
        None::<ChatChunk>,
        true,
    )));
    let seen = state.clone();
    let passed = stream.inspect(move |item| {
        let mut state = seen.lock().unwrap_or_else(|e| e.into_inner());
        match item {
            Ok(chunk) => {
                for choice in &chunk.choices {
                    if let Some(text) = &choice.delta.content {
                        state.0.push_str(text);
                    }
                }
                state.1 = Some(chunk.clone());
            }
            Err(_) => state.2 = false,
        }
    });
    let last = futures::stream::once(async move {
        let (text, template, clean) = {
            let state = state.lock().unwrap_or_else(|e| e.into_inner());
            (state.0.clone(), state.1.clone(), state.2)
        };
        let template = template.filter(|_| clean)?;
        let chunk = json!({
            "id": template.id,
            "object": "chat.completion.chunk",
            "created": template.created,
            "model": template.model,
            "choices": [{"index": 0, "delta": {"annotations": annotations(&text, &hits)}, "finish_reason": null}],
            "landfall": sources(&hits),
        });
        serde_json::from_value::<ChatChunk>(chunk).ok().map(Ok)
    })
    .filter_map(|item| async move { item });
    passed.chain(last).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    fn hit(file: &str) -> SearchHit {
        SearchHit {
            chunk_id: 1,
            store_id: "vs_1".to_owned(),
            file_id: file.to_owned(),
            filename: format!("{file}.pdf"),
            score: 0.5,
            keyword: None,
            vector: None,
            rerank_score: None,
            text: "text".to_owned(),
            page: Some(3),
            char_start: 0,
            char_end: 4,
            heading_path: Vec::new(),
            attributes: Map::new(),
        }
    }

    #[test]
    fn markers_naming_sources_become_annotations() {
        let hits = [hit("a"), hit("b")];
        let found = annotations("Seal yearly [2]. Bolts 40 Nm [1][3] [x] 中文[1]", &hits);
        let files: Vec<&str> = found
            .iter()
            .map(|a| a["file_citation"]["file_id"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(files, ["b", "a", "a"], "[3] and [x] name no source");
        assert_eq!(found[0]["file_citation"]["start_index"], 12);
        assert_eq!(found[0]["file_citation"]["end_index"], 15);
        let last = &found[2]["file_citation"];
        assert_eq!(last["start_index"], 42, "character, not byte, offsets");
    }

    #[test]
    fn the_prompt_numbers_sources_and_asks_for_citations() {
        let text = prompt(INSTRUCTIONS, &[hit("a")]);
        assert!(text.contains("[1] a.pdf, page 3:\ntext"));
        assert!(text.contains("square brackets"));
        assert!(prompt(INSTRUCTIONS, &[]).contains("(none found)"));
        let custom = prompt("Answer as a pharmacist; cite as [n].\n", &[hit("a")]);
        assert!(custom.starts_with("Answer as a pharmacist; cite as [n].\n\nSources:\n[1] a.pdf"));
        assert!(!custom.contains("square brackets"));
    }
}
