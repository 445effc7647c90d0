//! A [`VectorIndex`] in a Chroma server (REST API v2): one collection per index, in cosine
//! space, with our own embeddings. Record ids are chunk ids; record metadata is the chunk's
//! filterable attributes (its file's attributes plus `file_id`, numbers as floats) and the
//! store id under [`STORE_KEY`]. The checkpoint lives in the collection's metadata.
//!
//! What "commit" means here: changes are queued in memory and sent at `commit`, followed by
//! the checkpoint. Chroma has no transactions, so a crash in the middle of a commit can leave
//! part of it applied under the previous checkpoint; replaying the change log from that
//! checkpoint repairs it, because adds and deletes are idempotent.
//!
//! Chroma's HNSW search is approximate. Chroma cannot order strings: a `gt`/`gte`/`lt`/`lte`
//! comparison with a string value is left out of the pushed-down `where` (which so selects a
//! superset) and checked here on the returned metadata, asking Chroma for more candidates
//! until `limit` pass or the candidates run out.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Map, Value, json};
use tokio::sync::Mutex;

use crate::filter::{Comparison, ComparisonOp, CompoundOp};
use crate::{Checkpoint, Filter, Hit, IndexError, IndexedChunk, VectorIndex};

/// The metadata key of a record's store id.
pub const STORE_KEY: &str = "landfall_store_id";
/// The collection metadata key of the checkpoint.
const CHECKPOINT_KEY: &str = "landfall_checkpoint";
/// Records sent per upsert call (Chroma's default maximum batch is larger).
const UPSERT_BATCH: usize = 500;
/// Candidates asked for at first when part of a filter is checked here, not in Chroma.
const MIN_CANDIDATES: usize = 64;
/// Longest error body quoted in an error.
const MAX_ERROR_CHARS: usize = 500;

/// Where a [`ChromaIndex`] lives.
#[derive(Debug, Clone)]
pub struct ChromaOptions {
    /// The server's base URL, e.g. `http://127.0.0.1:8000`.
    pub url: String,
    pub tenant: String,
    pub database: String,
    /// The collection holding this index; created at open when missing.
    pub collection: String,
    /// Limit for each HTTP call, connection included.
    pub timeout: Duration,
}

impl ChromaOptions {
    /// Options for `collection` in Chroma's default tenant and database, with a 30 s timeout.
    pub fn new(url: &str, collection: &str) -> Self {
        Self {
            url: url.trim_end_matches('/').to_string(),
            tenant: "default_tenant".to_string(),
            database: "default_database".to_string(),
            collection: collection.to_string(),
            timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug)]
enum Change {
    Add(Vec<IndexedChunk>),
    Delete(Value),
}

#[derive(Debug, Default)]
struct State {
    dimensions: Option<usize>,
    pending: Vec<Change>,
}

/// A Chroma-backed vector index; see the module docs for its consistency model.
pub struct ChromaIndex {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// `{url}/api/v2/tenants/{tenant}/databases/{database}/collections`
    collections_url: String,
    /// The collection's UUID, which record endpoints take.
    collection_id: String,
    timeout: Duration,
    state: Mutex<State>,
}

impl ChromaIndex {
    /// Opens (creating if needed) the collection `options.collection`.
    ///
    /// # Errors
    /// [`IndexError::Unavailable`] when the server cannot be reached, [`IndexError::Corrupt`]
    /// when it answers something unexpected.
    pub async fn open(options: ChromaOptions) -> Result<Self, IndexError> {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(options.timeout));
        http.enforce_http(false);
        let tls = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_platform_verifier(rustls::crypto::ring::default_provider())
            .map_err(|error| IndexError::Unavailable(format!("TLS setup failed: {error}")))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let collections_url = format!(
            "{}/api/v2/tenants/{}/databases/{}/collections",
            options.url.trim_end_matches('/'),
            path_segment(&options.tenant)?,
            path_segment(&options.database)?
        );
        let mut index = Self {
            client: Client::builder(TokioExecutor::new()).build(tls),
            collections_url,
            collection_id: String::new(),
            timeout: options.timeout,
            state: Mutex::new(State::default()),
        };
        let name = path_segment(&options.collection)?;
        let url = format!("{}/{name}", index.collections_url);
        let (status, mut collection) = index.call(Method::GET, &url, None).await?;
        if status == StatusCode::NOT_FOUND {
            let body = json!({
                "name": options.collection,
                "get_or_create": true,
                "metadata": {"hnsw:space": "cosine", CHECKPOINT_KEY: 0},
                "configuration": {"hnsw": {"space": "cosine"}},
            });
            collection = index
                .expect_ok(Method::POST, &index.collections_url, Some(body))
                .await?;
        } else if !status.is_success() {
            return Err(status_error(status, &collection));
        }
        index.collection_id = collection
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| IndexError::Corrupt(format!("collection without id: {collection}")))?
            .to_string();
        index.state.get_mut().dimensions = collection
            .get("dimension")
            .and_then(Value::as_u64)
            .and_then(|dimensions| usize::try_from(dimensions).ok());
        Ok(index)
    }

    /// Deletes the whole collection (for tests and for removing an index for good).
    ///
    /// # Errors
    /// As for any call to the server.
    pub async fn drop_collection(&self) -> Result<(), IndexError> {
        let collection = self.collection().await?;
        let name = collection
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| IndexError::Corrupt("collection without name".to_string()))?;
        let url = format!("{}/{}", self.collections_url, path_segment(name)?);
        self.expect_ok(Method::DELETE, &url, None).await?;
        Ok(())
    }

    async fn collection(&self) -> Result<Value, IndexError> {
        let url = format!("{}/by-id/{}", self.collections_url, self.collection_id);
        self.expect_ok(Method::GET, &url, None).await
    }

    fn records_url(&self, operation: &str) -> String {
        format!(
            "{}/{}/{operation}",
            self.collections_url, self.collection_id
        )
    }

    /// One HTTP exchange within the timeout: the status and the JSON body (`null` if empty).
    async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value), IndexError> {
        let body = body.map(|body| body.to_string()).unwrap_or_default();
        let request = Request::builder()
            .method(method)
            .uri(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|error| IndexError::Invalid(format!("bad Chroma URL {url}: {error}")))?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|error| {
                IndexError::Unavailable(format!("Chroma at {url}: {}", error_chain(&error)))
            })?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|error| IndexError::Unavailable(format!("Chroma body: {error}")))?
                .to_bytes();
            Ok::<_, IndexError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| {
                IndexError::Unavailable(format!("Chroma did not answer within {:?}", self.timeout))
            })??;
        if bytes.is_empty() {
            return Ok((status, Value::Null));
        }
        let value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            Value::String(
                String::from_utf8_lossy(&bytes)
                    .chars()
                    .take(MAX_ERROR_CHARS)
                    .collect(),
            )
        });
        Ok((status, value))
    }

    async fn expect_ok(
        &self,
        method: Method,
        url: &str,
        body: Option<Value>,
    ) -> Result<Value, IndexError> {
        let (status, value) = self.call(method, url, body).await?;
        if status.is_success() {
            Ok(value)
        } else {
            Err(status_error(status, &value))
        }
    }

    async fn upsert(&self, chunks: &[IndexedChunk]) -> Result<(), IndexError> {
        for batch in chunks.chunks(UPSERT_BATCH) {
            let ids: Vec<String> = batch.iter().map(|chunk| chunk.id.to_string()).collect();
            let embeddings: Vec<&[f32]> =
                batch.iter().map(|chunk| chunk.vector.as_slice()).collect();
            let metadatas: Vec<Value> = batch.iter().map(record_metadata).collect();
            let body = json!({"ids": ids, "embeddings": embeddings, "metadatas": metadatas});
            self.expect_ok(Method::POST, &self.records_url("upsert"), Some(body))
                .await?;
        }
        Ok(())
    }
}

#[async_trait]
impl VectorIndex for ChromaIndex {
    async fn add(&self, chunks: &[IndexedChunk]) -> Result<(), IndexError> {
        if chunks.is_empty() {
            return Ok(());
        }
        let mut state = self.state.lock().await;
        let dimensions = super::batch_dimensions(chunks, state.dimensions)?;
        // Chroma refuses a batch naming an id twice.
        let batch = super::last_copy_of_each(chunks);
        state.dimensions = Some(dimensions);
        state.pending.push(Change::Add(batch));
        Ok(())
    }

    async fn delete_file(&self, store_id: &str, file_id: &str) -> Result<(), IndexError> {
        let clause =
            json!({"$and": [{STORE_KEY: {"$eq": store_id}}, {"file_id": {"$eq": file_id}}]});
        self.state.lock().await.pending.push(Change::Delete(clause));
        Ok(())
    }

    async fn delete_store(&self, store_id: &str) -> Result<(), IndexError> {
        let clause = json!({STORE_KEY: {"$eq": store_id}});
        self.state.lock().await.pending.push(Change::Delete(clause));
        Ok(())
    }

    async fn commit(&self, checkpoint: Checkpoint) -> Result<(), IndexError> {
        let checkpoint_json = i64::try_from(checkpoint)
            .map_err(|_| IndexError::Invalid(format!("checkpoint {checkpoint} beyond i64")))?;
        let mut state = self.state.lock().await;
        // Applied changes leave the queue one by one, so a failed commit retries only the rest.
        while let Some(change) = state.pending.first() {
            match change {
                Change::Add(chunks) => self.upsert(chunks).await?,
                Change::Delete(clause) => {
                    let body = json!({"where": clause});
                    self.expect_ok(Method::POST, &self.records_url("delete"), Some(body))
                        .await?;
                }
            }
            state.pending.remove(0);
        }
        let body =
            json!({"new_metadata": {"hnsw:space": "cosine", CHECKPOINT_KEY: checkpoint_json}});
        let url = format!("{}/{}", self.collections_url, self.collection_id);
        self.expect_ok(Method::PUT, &url, Some(body)).await?;
        Ok(())
    }

    async fn checkpoint(&self) -> Result<Checkpoint, IndexError> {
        let collection = self.collection().await?;
        match collection.pointer(&format!("/metadata/{CHECKPOINT_KEY}")) {
            None | Some(Value::Null) => Ok(0),
            Some(value) => value
                .as_u64()
                .ok_or_else(|| IndexError::Corrupt(format!("checkpoint {value} in Chroma"))),
        }
    }

    async fn search(
        &self,
        store_ids: &[String],
        vector: &[f32],
        filter: Option<&Filter>,
        limit: usize,
    ) -> Result<Vec<Hit>, IndexError> {
        let stores = match store_ids {
            [] => Where::Nothing,
            [store_id] => Where::Clause(json!({STORE_KEY: {"$eq": store_id}})),
            store_ids => Where::Clause(json!({STORE_KEY: {"$in": store_ids}})),
        };
        let mut checked_here = false;
        let condition = match filter {
            Some(filter) => translate(filter, &mut checked_here),
            None => Where::All,
        };
        let Where::Clause(clause) = and(vec![stores, condition]) else {
            return Ok(Vec::new());
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let collection = self.collection().await?;
        let Some(dimensions) = collection.get("dimension").and_then(Value::as_u64) else {
            return Ok(Vec::new()); // Nothing committed yet.
        };
        if usize::try_from(dimensions).ok() != Some(vector.len()) {
            return Err(IndexError::Invalid(format!(
                "a query of {} dimensions in an index of {dimensions}",
                vector.len()
            )));
        }
        let exact = filter.filter(|_| checked_here);
        let mut candidates = if exact.is_some() {
            limit.max(MIN_CANDIDATES)
        } else {
            limit
        };
        loop {
            let body = json!({
                "query_embeddings": [vector],
                "n_results": candidates,
                "where": clause,
                "include": if exact.is_some() { json!(["distances", "metadatas"]) } else { json!(["distances"]) },
            });
            let answer = self
                .expect_ok(Method::POST, &self.records_url("query"), Some(body))
                .await?;
            let (mut hits, returned) = parse_hits(&answer, exact)?;
            if hits.len() >= limit || returned < candidates {
                hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
                hits.truncate(limit);
                return Ok(hits);
            }
            candidates = candidates.saturating_mul(4);
        }
    }
}

/// The hits of a query answer that pass `exact` (when given), and how many it returned.
fn parse_hits(answer: &Value, exact: Option<&Filter>) -> Result<(Vec<Hit>, usize), IndexError> {
    let ids = answer.pointer("/ids/0").and_then(Value::as_array);
    let distances = answer.pointer("/distances/0").and_then(Value::as_array);
    let (Some(ids), Some(distances)) = (ids, distances) else {
        return Err(IndexError::Corrupt(format!(
            "unexpected Chroma query answer: {answer}"
        )));
    };
    let metadatas = answer.pointer("/metadatas/0").and_then(Value::as_array);
    let mut hits = Vec::with_capacity(ids.len());
    for (position, (id, distance)) in ids.iter().zip(distances).enumerate() {
        if let Some(exact) = exact {
            let metadata = metadatas
                .and_then(|all| all.get(position))
                .and_then(Value::as_object);
            if !metadata.is_some_and(|metadata| exact.matches(metadata)) {
                continue;
            }
        }
        let id = id.as_str().and_then(|id| id.parse().ok());
        let (Some(id), Some(distance)) = (id, distance.as_f64()) else {
            return Err(IndexError::Corrupt(format!(
                "unexpected Chroma hit {id:?} {distance}"
            )));
        };
        hits.push(Hit {
            id,
            score: (1.0 - distance) as f32,
        });
    }
    Ok((hits, ids.len()))
}

/// A record's metadata: the filterable attributes (numbers as floats, non-scalar values
/// dropped: both compare like a missing key) and the store id.
fn record_metadata(chunk: &IndexedChunk) -> Value {
    let mut metadata = Map::new();
    for (key, value) in super::filterable_attributes(chunk) {
        match value {
            Value::Number(number) => {
                if let Some(number) = number.as_f64() {
                    metadata.insert(key, json!(number));
                }
            }
            Value::String(_) | Value::Bool(_) => {
                metadata.insert(key, value);
            }
            Value::Null | Value::Array(_) | Value::Object(_) => {}
        }
    }
    metadata.insert(STORE_KEY.to_string(), Value::String(chunk.store_id.clone()));
    Value::Object(metadata)
}

/// A translated filter: Chroma has no literal true/false `where`, so constants are folded.
#[derive(Debug, Clone, PartialEq)]
enum Where {
    All,
    Nothing,
    Clause(Value),
}

/// Translates a filter into Chroma's `where` language with [`Filter::matches`]'s semantics,
/// except for ordering comparisons of strings, which Chroma cannot do: those become "all"
/// (filters have no negation, so the result selects a superset) and set `checked_here`.
fn translate(filter: &Filter, checked_here: &mut bool) -> Where {
    match filter {
        Filter::Compound { op, filters } => {
            let parts = filters
                .iter()
                .map(|filter| translate(filter, checked_here))
                .collect();
            match op {
                CompoundOp::And => and(parts),
                CompoundOp::Or => or(parts),
            }
        }
        Filter::Comparison(comparison) => translate_comparison(comparison, checked_here),
    }
}

fn translate_comparison(comparison: &Comparison, checked_here: &mut bool) -> Where {
    let key = comparison.key.as_str();
    let clause = |operator: &str, value: Value| Where::Clause(json!({key: {operator: value}}));
    let value = scalar(&comparison.value);
    match comparison.op {
        ComparisonOp::Eq => value.map_or(Where::Nothing, |value| clause("$eq", value)),
        ComparisonOp::Ne => value.map_or(Where::All, |value| clause("$ne", value)),
        ComparisonOp::In | ComparisonOp::Nin => {
            let options = match &comparison.value {
                Value::Array(options) => options.as_slice(),
                _ => &[],
            };
            // Chroma wants lists of one type: one `$in` per type present.
            let mut by_type: [Vec<Value>; 3] = Default::default();
            for option in options {
                match scalar(option) {
                    Some(value @ Value::String(_)) => by_type[0].push(value),
                    Some(value @ Value::Number(_)) => by_type[1].push(value),
                    Some(value @ Value::Bool(_)) => by_type[2].push(value),
                    _ => {}
                }
            }
            let lists = by_type.into_iter().filter(|list| !list.is_empty());
            if comparison.op == ComparisonOp::In {
                or(lists
                    .map(|list| clause("$in", Value::Array(list)))
                    .collect())
            } else {
                and(lists
                    .map(|list| clause("$nin", Value::Array(list)))
                    .collect())
            }
        }
        ComparisonOp::Gt | ComparisonOp::Gte | ComparisonOp::Lt | ComparisonOp::Lte => {
            let operator = match comparison.op {
                ComparisonOp::Gt => "$gt",
                ComparisonOp::Gte => "$gte",
                ComparisonOp::Lt => "$lt",
                _ => "$lte",
            };
            match value {
                Some(number @ Value::Number(_)) => clause(operator, number),
                Some(Value::Bool(boolean)) => bool_range(key, comparison.op, boolean),
                Some(Value::String(_)) => {
                    *checked_here = true;
                    Where::All
                }
                _ => Where::Nothing,
            }
        }
    }
}

/// Orders booleans as `Filter::matches` does (`false < true`) with equality tests, which is
/// all Chroma offers for them.
fn bool_range(key: &str, op: ComparisonOp, value: bool) -> Where {
    let is = |boolean: bool| Where::Clause(json!({key: {"$eq": boolean}}));
    match (op, value) {
        (ComparisonOp::Gt, false) | (ComparisonOp::Gte, true) => is(true),
        (ComparisonOp::Lt, true) | (ComparisonOp::Lte, false) => is(false),
        (ComparisonOp::Gte, false) | (ComparisonOp::Lte, true) => or(vec![is(true), is(false)]),
        _ => Where::Nothing,
    }
}

/// A filter value as stored in metadata: numbers as floats; `None` for values no stored
/// metadata can equal.
fn scalar(value: &Value) -> Option<Value> {
    match value {
        Value::Number(number) => number.as_f64().map(|number| json!(number)),
        Value::String(_) | Value::Bool(_) => Some(value.clone()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

fn and(parts: Vec<Where>) -> Where {
    let mut clauses = Vec::with_capacity(parts.len());
    for part in parts {
        match part {
            Where::Nothing => return Where::Nothing,
            Where::All => {}
            Where::Clause(clause) => clauses.push(clause),
        }
    }
    combine("$and", clauses, Where::All)
}

fn or(parts: Vec<Where>) -> Where {
    let mut clauses = Vec::with_capacity(parts.len());
    for part in parts {
        match part {
            Where::All => return Where::All,
            Where::Nothing => {}
            Where::Clause(clause) => clauses.push(clause),
        }
    }
    combine("$or", clauses, Where::Nothing)
}

fn combine(operator: &str, mut clauses: Vec<Value>, empty: Where) -> Where {
    match clauses.len() {
        0 => empty,
        1 => Where::Clause(clauses.remove(0)),
        _ => Where::Clause(json!({operator: clauses})),
    }
}

/// Tenant, database and collection names go into URL paths: refuse what would need escaping.
fn path_segment(name: &str) -> Result<&str, IndexError> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'.'));
    if valid {
        Ok(name)
    } else {
        Err(IndexError::Invalid(format!(
            "Chroma name {name:?} must be ASCII letters, digits, '_', '-' or '.'"
        )))
    }
}

fn status_error(status: StatusCode, body: &Value) -> IndexError {
    let message = format!("Chroma answered {status}: {body}");
    let message: String = message.chars().take(MAX_ERROR_CHARS).collect();
    let invalid = body.get("error").and_then(Value::as_str) == Some("InvalidArgumentError");
    if invalid || status == StatusCode::UNPROCESSABLE_ENTITY {
        IndexError::Invalid(message)
    } else if status.is_server_error() {
        IndexError::Unavailable(message)
    } else {
        IndexError::Backend(message)
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(value: Value) -> Filter {
        serde_json::from_value(value).unwrap_or_else(|e| unreachable!("bad test filter: {e}"))
    }

    #[test]
    fn filters_translate_to_where_clauses() {
        let cases = [
            (
                json!({"type": "eq", "key": "year", "value": 2024}),
                Where::Clause(json!({"year": {"$eq": 2024.0}})),
            ),
            (
                json!({"type": "in", "key": "r", "value": ["us", 1, true]}),
                Where::Clause(json!({"$or": [
                    {"r": {"$in": ["us"]}}, {"r": {"$in": [1.0]}}, {"r": {"$in": [true]}}
                ]})),
            ),
            (
                json!({"type": "in", "key": "r", "value": []}),
                Where::Nothing,
            ),
            (json!({"type": "nin", "key": "r", "value": []}), Where::All),
            (json!({"type": "ne", "key": "r", "value": null}), Where::All),
            (
                json!({"type": "gt", "key": "draft", "value": false}),
                Where::Clause(json!({"draft": {"$eq": true}})),
            ),
            (
                json!({"type": "lt", "key": "draft", "value": false}),
                Where::Nothing,
            ),
            (
                json!({"type": "and", "filters": [
                    {"type": "in", "key": "r", "value": []},
                    {"type": "eq", "key": "a", "value": "b"}
                ]}),
                Where::Nothing,
            ),
            (
                json!({"type": "or", "filters": [
                    {"type": "in", "key": "r", "value": []},
                    {"type": "eq", "key": "a", "value": "b"}
                ]}),
                Where::Clause(json!({"a": {"$eq": "b"}})),
            ),
        ];
        for (json, expected) in cases {
            let mut checked_here = false;
            let translated = translate(&filter(json.clone()), &mut checked_here);
            assert_eq!(translated, expected, "{json}");
            assert!(!checked_here, "{json}");
        }
    }

    #[test]
    fn string_ordering_is_checked_here() {
        let mut checked_here = false;
        let relaxed = translate(
            &filter(json!({"type": "and", "filters": [
                {"type": "gt", "key": "r", "value": "a"},
                {"type": "eq", "key": "y", "value": 1}
            ]})),
            &mut checked_here,
        );
        assert_eq!(relaxed, Where::Clause(json!({"y": {"$eq": 1.0}})));
        assert!(checked_here);
    }

    #[test]
    fn names_that_need_escaping_are_refused() {
        assert!(path_segment("landfall_test-1.a").is_ok());
        assert!(path_segment("a/b").is_err());
        assert!(path_segment("").is_err());
    }
}
