//! A [`VectorIndex`] in a Qdrant server (gRPC, `qdrant-client`): one collection of chunks in
//! cosine distance, point ids = chunk ids, payload = the chunk's filterable attributes
//! (numbers as floats, non-scalar values dropped: both compare like a missing key) plus the
//! store id under [`STORE_KEY`], with keyword indexes on the store and file ids. A companion
//! collection `{name}_meta` holds one point with the checkpoint and the dimensions, because the
//! chunk collection can only be created once the first vector fixes its size.
//!
//! What "commit" means here: changes are queued in memory and sent at `commit` (each call
//! waiting until Qdrant applied it), then the checkpoint. Qdrant has no multi-call
//! transactions, so a crash mid-commit can leave part of it applied under the previous
//! checkpoint; replaying the change log from there repairs it (adds and deletes are
//! idempotent). Search is approximate (HNSW). Qdrant cannot order strings: a
//! `gt`/`gte`/`lt`/`lte` comparison with a string value is left out of the pushed-down filter
//! (which so selects a superset) and checked here on the returned payload, asking for more
//! candidates until `limit` pass or the candidates run out.
//! Attribute keys containing `.` address nested payload in Qdrant and so never match.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use qdrant_client::Qdrant;
use qdrant_client::qdrant::point_id::PointIdOptions;
use qdrant_client::qdrant::value::Kind;
use qdrant_client::qdrant::{
    Condition, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder, DeletePointsBuilder,
    Distance, FieldType, GetPointsBuilder, PointId, PointStruct, QueryPointsBuilder, Range,
    SearchParamsBuilder, UpsertPointsBuilder, Value as QdrantValue, VectorParamsBuilder,
};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::filter::{Comparison, ComparisonOp, CompoundOp};
use crate::{Checkpoint, Filter, Hit, IndexError, IndexedChunk, VectorIndex};

type QdrantFilter = qdrant_client::qdrant::Filter;

/// The payload key of a point's store id.
pub const STORE_KEY: &str = "landfall_store_id";
/// Points sent per upsert call.
const UPSERT_BATCH: usize = 256;
/// Candidates asked for at first when part of a filter is checked here, not in Qdrant.
const MIN_CANDIDATES: usize = 64;
/// The HNSW candidate list is at least this long, and at least the requested limit.
const MIN_EF_SEARCH: u64 = 64;

#[derive(Debug)]
enum Change {
    Add(Vec<IndexedChunk>),
    Delete(QdrantFilter),
}

#[derive(Debug, Default)]
struct State {
    /// Dimensions fixed by a committed or queued add.
    dimensions: Option<usize>,
    /// Whether the chunk collection exists.
    created: bool,
    pending: Vec<Change>,
}

/// A Qdrant-backed vector index; see the module docs for its consistency model.
pub struct QdrantIndex {
    client: Qdrant,
    collection: String,
    meta_collection: String,
    state: Mutex<State>,
}

impl QdrantIndex {
    /// Connects to `url` (the gRPC port, e.g. `http://127.0.0.1:6334`) and opens (creating
    /// if needed) the index in `collection` and `{collection}_meta`. Every call is limited to
    /// `timeout`.
    ///
    /// # Errors
    /// [`IndexError::Unavailable`] when the server cannot be reached.
    pub async fn open(
        url: &str,
        api_key: Option<String>,
        collection: &str,
        timeout: Duration,
    ) -> Result<Self, IndexError> {
        let client = Qdrant::from_url(url)
            .api_key(api_key)
            .timeout(timeout)
            .connect_timeout(timeout)
            .skip_compatibility_check()
            .build()
            .map_err(unavailable)?;
        let index = Self {
            client,
            collection: collection.to_string(),
            meta_collection: format!("{collection}_meta"),
            state: Mutex::new(State::default()),
        };
        if !index
            .client
            .collection_exists(&index.meta_collection)
            .await
            .map_err(unavailable)?
        {
            index
                .client
                .create_collection(
                    CreateCollectionBuilder::new(&index.meta_collection)
                        .vectors_config(VectorParamsBuilder::new(1, Distance::Dot)),
                )
                .await
                .map_err(backend)?;
        }
        let (_, dimensions) = index.read_meta().await?;
        let created = index
            .client
            .collection_exists(&index.collection)
            .await
            .map_err(unavailable)?;
        {
            let mut state = index.state.lock().await;
            state.dimensions = dimensions;
            state.created = created;
        }
        Ok(index)
    }

    /// Deletes both collections (for tests and for removing an index for good).
    ///
    /// # Errors
    /// As for any call to the server.
    pub async fn drop_collections(&self) -> Result<(), IndexError> {
        for collection in [&self.collection, &self.meta_collection] {
            self.client
                .delete_collection(collection.as_str())
                .await
                .map_err(backend)?;
        }
        Ok(())
    }

    /// The committed checkpoint and dimensions.
    async fn read_meta(&self) -> Result<(Checkpoint, Option<usize>), IndexError> {
        let answer = self
            .client
            .get_points(
                GetPointsBuilder::new(&self.meta_collection, vec![PointId::from(0_u64)])
                    .with_payload(true),
            )
            .await
            .map_err(backend)?;
        let Some(point) = answer.result.first() else {
            return Ok((0, None));
        };
        let integer = |key: &str| match point.payload.get(key).and_then(|v| v.kind.as_ref()) {
            Some(Kind::IntegerValue(value)) => u64::try_from(*value).ok(),
            _ => None,
        };
        let dimensions = integer("dimensions").and_then(|d| usize::try_from(d).ok());
        Ok((integer("checkpoint").unwrap_or(0), dimensions))
    }

    async fn create_collection(&self, dimensions: usize) -> Result<(), IndexError> {
        let size = u64::try_from(dimensions)
            .map_err(|_| IndexError::Invalid(format!("{dimensions} dimensions")))?;
        self.client
            .create_collection(
                CreateCollectionBuilder::new(&self.collection)
                    .vectors_config(VectorParamsBuilder::new(size, Distance::Cosine)),
            )
            .await
            .map_err(backend)?;
        for field in [STORE_KEY, "file_id"] {
            self.client
                .create_field_index(
                    CreateFieldIndexCollectionBuilder::new(
                        &self.collection,
                        field,
                        FieldType::Keyword,
                    )
                    .wait(true),
                )
                .await
                .map_err(backend)?;
        }
        Ok(())
    }

    async fn upsert(&self, chunks: &[IndexedChunk]) -> Result<(), IndexError> {
        for batch in chunks.chunks(UPSERT_BATCH) {
            let mut points = Vec::with_capacity(batch.len());
            for chunk in batch {
                let id = u64::try_from(chunk.id).map_err(|_| {
                    IndexError::Invalid(format!("negative chunk id {} for Qdrant", chunk.id))
                })?;
                points.push(PointStruct::new(id, chunk.vector.clone(), payload(chunk)));
            }
            self.client
                .upsert_points(UpsertPointsBuilder::new(&self.collection, points).wait(true))
                .await
                .map_err(backend)?;
        }
        Ok(())
    }
}

#[async_trait]
impl VectorIndex for QdrantIndex {
    async fn add(&self, chunks: &[IndexedChunk]) -> Result<(), IndexError> {
        if chunks.is_empty() {
            return Ok(());
        }
        let mut state = self.state.lock().await;
        let dimensions = super::batch_dimensions(chunks, state.dimensions)?;
        if let Some(chunk) = chunks.iter().find(|chunk| chunk.id < 0) {
            return Err(IndexError::Invalid(format!(
                "negative chunk id {}",
                chunk.id
            )));
        }
        state.dimensions = Some(dimensions);
        state.pending.push(Change::Add(chunks.to_vec()));
        Ok(())
    }

    async fn delete_file(&self, store_id: &str, file_id: &str) -> Result<(), IndexError> {
        let filter = QdrantFilter::must([
            Condition::matches(STORE_KEY, store_id.to_string()),
            Condition::matches("file_id", file_id.to_string()),
        ]);
        self.state.lock().await.pending.push(Change::Delete(filter));
        Ok(())
    }

    async fn delete_store(&self, store_id: &str) -> Result<(), IndexError> {
        let filter = QdrantFilter::must([Condition::matches(STORE_KEY, store_id.to_string())]);
        self.state.lock().await.pending.push(Change::Delete(filter));
        Ok(())
    }

    async fn commit(&self, checkpoint: Checkpoint) -> Result<(), IndexError> {
        let checkpoint_value = i64::try_from(checkpoint)
            .map_err(|_| IndexError::Invalid(format!("checkpoint {checkpoint} beyond i64")))?;
        let mut state = self.state.lock().await;
        // Applied changes leave the queue one by one, so a failed commit retries only the rest.
        while let Some(change) = state.pending.first() {
            let created = state.created;
            match change {
                Change::Add(chunks) => {
                    if !created {
                        let dimensions = chunks.first().map_or(0, |chunk| chunk.vector.len());
                        self.create_collection(dimensions).await?;
                    }
                    self.upsert(chunks).await?;
                    state.created = true;
                }
                Change::Delete(filter) if created => {
                    self.client
                        .delete_points(
                            DeletePointsBuilder::new(&self.collection)
                                .points(filter.clone())
                                .wait(true),
                        )
                        .await
                        .map_err(backend)?;
                }
                Change::Delete(_) => {}
            }
            state.pending.remove(0);
        }
        let mut meta = HashMap::new();
        meta.insert(
            "checkpoint".to_string(),
            QdrantValue::from(checkpoint_value),
        );
        if let Some(dimensions) = state.dimensions.and_then(|d| i64::try_from(d).ok()) {
            meta.insert("dimensions".to_string(), QdrantValue::from(dimensions));
        }
        let point = PointStruct::new(0_u64, vec![1.0_f32], meta);
        self.client
            .upsert_points(UpsertPointsBuilder::new(&self.meta_collection, vec![point]).wait(true))
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn checkpoint(&self) -> Result<Checkpoint, IndexError> {
        Ok(self.read_meta().await?.0)
    }

    async fn search(
        &self,
        store_ids: &[String],
        vector: &[f32],
        filter: Option<&Filter>,
        limit: usize,
    ) -> Result<Vec<Hit>, IndexError> {
        let stores = match store_ids {
            [] => Translated::Nothing,
            _ => Translated::Condition(Box::new(Condition::matches(STORE_KEY, store_ids.to_vec()))),
        };
        let mut checked_here = false;
        let condition = match filter {
            Some(filter) => translate(filter, &mut checked_here),
            None => Translated::All,
        };
        let Translated::Condition(condition) = and(vec![stores, condition]) else {
            return Ok(Vec::new());
        };
        let (_, dimensions) = self.read_meta().await?;
        let Some(dimensions) = dimensions else {
            return Ok(Vec::new()); // Nothing committed yet.
        };
        if dimensions != vector.len() {
            return Err(IndexError::Invalid(format!(
                "a query of {} dimensions in an index of {dimensions}",
                vector.len()
            )));
        }
        if limit == 0 {
            return Ok(Vec::new());
        }
        let exact = filter.filter(|_| checked_here);
        let mut candidates = if exact.is_some() {
            limit.max(MIN_CANDIDATES)
        } else {
            limit
        };
        loop {
            let wanted = u64::try_from(candidates).unwrap_or(u64::MAX);
            let answer = self
                .client
                .query(
                    QueryPointsBuilder::new(&self.collection)
                        .query(vector.to_vec())
                        .filter(QdrantFilter::must([(*condition).clone()]))
                        .params(SearchParamsBuilder::default().hnsw_ef(wanted.max(MIN_EF_SEARCH)))
                        .with_payload(exact.is_some())
                        .limit(wanted),
                )
                .await
                .map_err(backend)?;
            let returned = answer.result.len();
            let mut hits = Vec::with_capacity(returned);
            for point in answer.result {
                if exact.is_some_and(|exact| !exact.matches(&json_payload(&point.payload))) {
                    continue;
                }
                let id = match point.id.and_then(|id| id.point_id_options) {
                    Some(PointIdOptions::Num(id)) => i64::try_from(id).ok(),
                    _ => None,
                };
                let Some(id) = id else {
                    return Err(IndexError::Corrupt(
                        "a Qdrant point without a numeric id".to_string(),
                    ));
                };
                hits.push(Hit {
                    id,
                    score: point.score,
                });
            }
            if hits.len() >= limit || returned < candidates {
                hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
                hits.truncate(limit);
                return Ok(hits);
            }
            candidates = candidates.saturating_mul(4);
        }
    }
}

/// A payload as the attributes [`Filter::matches`] reads.
fn json_payload(payload: &HashMap<String, QdrantValue>) -> serde_json::Map<String, Value> {
    let mut attributes = serde_json::Map::new();
    for (key, value) in payload {
        let value = match &value.kind {
            Some(Kind::DoubleValue(number)) => {
                serde_json::Number::from_f64(*number).map(Value::Number)
            }
            Some(Kind::IntegerValue(number)) => Some(Value::from(*number)),
            Some(Kind::StringValue(text)) => Some(Value::String(text.clone())),
            Some(Kind::BoolValue(boolean)) => Some(Value::Bool(*boolean)),
            _ => None,
        };
        if let Some(value) = value {
            attributes.insert(key.clone(), value);
        }
    }
    attributes
}

/// A point's payload: the filterable attributes (numbers as floats) and the store id.
fn payload(chunk: &IndexedChunk) -> HashMap<String, QdrantValue> {
    let mut payload = HashMap::new();
    for (key, value) in super::filterable_attributes(chunk) {
        let value = match value {
            Value::Number(number) => number.as_f64().map(QdrantValue::from),
            Value::String(text) => Some(QdrantValue::from(text)),
            Value::Bool(boolean) => Some(QdrantValue::from(boolean)),
            Value::Null | Value::Array(_) | Value::Object(_) => None,
        };
        if let Some(value) = value {
            payload.insert(key, value);
        }
    }
    payload.insert(
        STORE_KEY.to_string(),
        QdrantValue::from(chunk.store_id.clone()),
    );
    payload
}

/// A translated filter, with constants folded (an empty Qdrant `should` would match all).
#[derive(Debug, Clone)]
enum Translated {
    All,
    Nothing,
    /// Boxed: a `Condition` is over 400 bytes.
    Condition(Box<Condition>),
}

/// Translates a filter into Qdrant conditions with [`Filter::matches`]'s semantics, except
/// for ordering comparisons of strings, which Qdrant cannot do: those become "all" (filters
/// have no negation above a comparison's own, so the result selects a superset) and set
/// `checked_here`.
fn translate(filter: &Filter, checked_here: &mut bool) -> Translated {
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

fn translate_comparison(comparison: &Comparison, checked_here: &mut bool) -> Translated {
    let key = comparison.key.as_str();
    let positive = match comparison.op {
        ComparisonOp::Eq | ComparisonOp::Ne => equals(key, &comparison.value),
        ComparisonOp::In | ComparisonOp::Nin => match &comparison.value {
            Value::Array(options) => or(options.iter().map(|option| equals(key, option)).collect()),
            _ => Translated::Nothing,
        },
        ComparisonOp::Gt | ComparisonOp::Gte | ComparisonOp::Lt | ComparisonOp::Lte => {
            match &comparison.value {
                Value::Number(number) => match number.as_f64() {
                    Some(number) => {
                        let mut range = Range::default();
                        match comparison.op {
                            ComparisonOp::Gt => range.gt = Some(number),
                            ComparisonOp::Gte => range.gte = Some(number),
                            ComparisonOp::Lt => range.lt = Some(number),
                            _ => range.lte = Some(number),
                        }
                        Translated::Condition(Box::new(Condition::range(key, range)))
                    }
                    None => Translated::Nothing,
                },
                Value::Bool(boolean) => bool_range(key, comparison.op, *boolean),
                Value::String(_) => {
                    *checked_here = true;
                    Translated::All
                }
                _ => Translated::Nothing,
            }
        }
    };
    match comparison.op {
        ComparisonOp::Ne | ComparisonOp::Nin => not(positive),
        _ => positive,
    }
}

/// Equality with `Filter::matches`'s typing: numbers through a closed range (a keyword or
/// integer match would miss floats), strings and booleans through exact matches.
fn equals(key: &str, value: &Value) -> Translated {
    match value {
        Value::Number(number) => match number.as_f64() {
            Some(number) => Translated::Condition(Box::new(Condition::range(
                key,
                Range {
                    gte: Some(number),
                    lte: Some(number),
                    ..Range::default()
                },
            ))),
            None => Translated::Nothing,
        },
        Value::String(text) => {
            Translated::Condition(Box::new(Condition::matches(key, text.clone())))
        }
        Value::Bool(boolean) => Translated::Condition(Box::new(Condition::matches(key, *boolean))),
        Value::Null | Value::Array(_) | Value::Object(_) => Translated::Nothing,
    }
}

/// Orders booleans as `Filter::matches` does (`false < true`) with equality tests.
fn bool_range(key: &str, op: ComparisonOp, value: bool) -> Translated {
    let is = |boolean: bool| Translated::Condition(Box::new(Condition::matches(key, boolean)));
    match (op, value) {
        (ComparisonOp::Gt, false) | (ComparisonOp::Gte, true) => is(true),
        (ComparisonOp::Lt, true) | (ComparisonOp::Lte, false) => is(false),
        (ComparisonOp::Gte, false) | (ComparisonOp::Lte, true) => or(vec![is(true), is(false)]),
        _ => Translated::Nothing,
    }
}

fn not(part: Translated) -> Translated {
    match part {
        Translated::All => Translated::Nothing,
        Translated::Nothing => Translated::All,
        Translated::Condition(condition) => {
            Translated::Condition(Box::new(QdrantFilter::must_not([*condition]).into()))
        }
    }
}

fn and(parts: Vec<Translated>) -> Translated {
    let mut conditions = Vec::with_capacity(parts.len());
    for part in parts {
        match part {
            Translated::Nothing => return Translated::Nothing,
            Translated::All => {}
            Translated::Condition(condition) => conditions.push(*condition),
        }
    }
    match conditions.len() {
        0 => Translated::All,
        1 => conditions.pop().map_or(Translated::All, |condition| {
            Translated::Condition(Box::new(condition))
        }),
        _ => Translated::Condition(Box::new(QdrantFilter::must(conditions).into())),
    }
}

fn or(parts: Vec<Translated>) -> Translated {
    let mut conditions = Vec::with_capacity(parts.len());
    for part in parts {
        match part {
            Translated::All => return Translated::All,
            Translated::Nothing => {}
            Translated::Condition(condition) => conditions.push(*condition),
        }
    }
    match conditions.len() {
        0 => Translated::Nothing,
        1 => conditions.pop().map_or(Translated::Nothing, |condition| {
            Translated::Condition(Box::new(condition))
        }),
        _ => Translated::Condition(Box::new(QdrantFilter::should(conditions).into())),
    }
}

fn unavailable(error: qdrant_client::QdrantError) -> IndexError {
    IndexError::Unavailable(format!("Qdrant: {error}"))
}

fn backend(error: qdrant_client::QdrantError) -> IndexError {
    use qdrant_client::QdrantError;
    match &error {
        QdrantError::ResponseError { status } => match status.code() {
            tonic::Code::InvalidArgument => IndexError::Invalid(format!("Qdrant: {error}")),
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => {
                IndexError::Unavailable(format!("Qdrant: {error}"))
            }
            _ => IndexError::Backend(format!("Qdrant: {error}")),
        },
        QdrantError::ResourceExhaustedError { .. } => {
            IndexError::Unavailable(format!("Qdrant: {error}"))
        }
        _ => IndexError::Backend(format!("Qdrant: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn filter(value: Value) -> Filter {
        serde_json::from_value(value).unwrap_or_else(|e| unreachable!("bad test filter: {e}"))
    }

    #[test]
    fn constants_fold_and_string_ordering_is_checked_here() {
        let mut checked_here = false;
        let nothing = translate(
            &filter(json!({"type": "in", "key": "a", "value": []})),
            &mut checked_here,
        );
        assert!(matches!(nothing, Translated::Nothing));
        let all = translate(
            &filter(json!({"type": "nin", "key": "a", "value": []})),
            &mut checked_here,
        );
        assert!(matches!(all, Translated::All));
        let negated = translate(
            &filter(json!({"type": "ne", "key": "a", "value": "b"})),
            &mut checked_here,
        );
        assert!(matches!(negated, Translated::Condition(_)));
        assert!(!checked_here);
        let relaxed = translate(
            &filter(json!({"type": "lt", "key": "a", "value": "b"})),
            &mut checked_here,
        );
        assert!(matches!(relaxed, Translated::All));
        assert!(checked_here);
    }

    #[test]
    fn payloads_read_back_as_attributes() {
        let chunk = IndexedChunk {
            id: 1,
            store_id: "s".to_string(),
            file_id: "f".to_string(),
            text: String::new(),
            attributes: json!({"year": 2024, "r": "us", "d": true, "n": null})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            vector: vec![1.0],
        };
        let attributes = json_payload(&payload(&chunk));
        assert_eq!(attributes.get("year"), Some(&json!(2024.0)));
        assert_eq!(attributes.get("file_id"), Some(&json!("f")));
        assert_eq!(attributes.get("n"), None);
        let year = filter(json!({"type": "eq", "key": "year", "value": 2024}));
        assert!(year.matches(&attributes));
    }
}
