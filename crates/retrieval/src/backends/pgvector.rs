//! A [`VectorIndex`] in PostgreSQL with the pgvector extension: one table of chunks with an
//! HNSW index (`vector_cosine_ops`), and a one-row table holding the checkpoint and the
//! dimensions.
//!
//! What "commit" means here: `add` and the deletes are queued in memory, and `commit` applies
//! the queue and records the checkpoint in one PostgreSQL transaction. So changes become
//! visible and durable together, exactly at commit, and after a crash the tables hold the last
//! committed state. Several processes may share the tables (PostgreSQL serializes them), but
//! the checkpoint is one per table prefix: one writer per prefix.
//!
//! Search is approximate when PostgreSQL chooses the HNSW index (large stores); the planner
//! falls back to an exact scan when a store's rows are few. `hnsw.iterative_scan` (pgvector
//! 0.8) keeps filtered searches returning `limit` hits.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Postgres, Transaction};
use tokio::sync::Mutex;

use crate::filter::{Comparison, ComparisonOp, CompoundOp};
use crate::{Checkpoint, Filter, Hit, IndexError, IndexedChunk, VectorIndex};

/// Longest wait for a pooled connection (and so for an unreachable server).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a single statement may run.
const STATEMENT_TIMEOUT_MS: u64 = 30_000;
/// The HNSW candidate list is at least this long, and at least the requested limit.
const MIN_EF_SEARCH: usize = 40;
/// Largest HNSW candidate list pgvector accepts.
const MAX_EF_SEARCH: usize = 1000;

/// One queued change, applied at commit in order.
#[derive(Debug)]
enum Change {
    Add(Vec<IndexedChunk>),
    DeleteFile { store_id: String, file_id: String },
    DeleteStore { store_id: String },
}

#[derive(Debug, Default)]
struct State {
    /// The vectors' dimensions, once the first add fixed them (committed or queued).
    dimensions: Option<usize>,
    pending: Vec<Change>,
}

/// A pgvector index; see the module docs for its consistency model.
pub struct PgVectorIndex {
    pool: PgPool,
    /// `{prefix}_chunks`, `{prefix}_meta`: validated identifiers, safe to splice into SQL.
    chunks_table: String,
    meta_table: String,
    state: Mutex<State>,
}

impl PgVectorIndex {
    /// Connects to `url` and opens (creating if needed) the index stored in the tables
    /// `{table_prefix}_chunks` and `{table_prefix}_meta`. `table_prefix` is an SQL identifier:
    /// lowercase ASCII letters, digits and `_`, starting with a letter, at most 48 bytes.
    ///
    /// # Errors
    /// [`IndexError::Invalid`] for a bad prefix, [`IndexError::Unavailable`] when the server
    /// cannot be reached or lacks the `vector` extension.
    pub async fn open(url: &str, table_prefix: &str) -> Result<Self, IndexError> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(|connection, _| {
                Box::pin(async move {
                    sqlx::query(AssertSqlSafe(format!(
                        "SET statement_timeout = {STATEMENT_TIMEOUT_MS}"
                    )))
                    .execute(connection)
                    .await
                    .map(|_| ())
                })
            })
            .connect(url)
            .await
            .map_err(|error| IndexError::Unavailable(format!("PostgreSQL: {error}")))?;
        Self::with_pool(pool, table_prefix).await
    }

    /// Opens the index on an existing pool (see [`PgVectorIndex::open`]).
    ///
    /// # Errors
    /// As [`PgVectorIndex::open`].
    pub async fn with_pool(pool: PgPool, table_prefix: &str) -> Result<Self, IndexError> {
        if !valid_prefix(table_prefix) {
            return Err(IndexError::Invalid(format!(
                "table prefix {table_prefix:?} is not a lowercase SQL identifier of at most 48 bytes"
            )));
        }
        let index = Self {
            pool,
            chunks_table: format!("{table_prefix}_chunks"),
            meta_table: format!("{table_prefix}_meta"),
            state: Mutex::new(State::default()),
        };
        index.create_schema().await?;
        let dimensions: Option<i32> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT dimensions FROM {} WHERE id = 1",
            index.meta_table
        )))
        .fetch_one(&index.pool)
        .await
        .map_err(backend)?;
        index.state.lock().await.dimensions =
            dimensions.and_then(|dimensions| usize::try_from(dimensions).ok());
        Ok(index)
    }

    /// Drops both tables (for tests and for removing an index for good).
    ///
    /// # Errors
    /// [`IndexError::Backend`] when PostgreSQL refuses.
    pub async fn drop_tables(&self) -> Result<(), IndexError> {
        for table in [&self.chunks_table, &self.meta_table] {
            sqlx::query(AssertSqlSafe(format!("DROP TABLE IF EXISTS {table}")))
                .execute(&self.pool)
                .await
                .map_err(backend)?;
        }
        self.state.lock().await.pending.clear();
        Ok(())
    }

    async fn create_schema(&self) -> Result<(), IndexError> {
        if let Err(error) = sqlx::query("CREATE EXTENSION IF NOT EXISTS vector")
            .execute(&self.pool)
            .await
        {
            // Two sessions creating the extension at once: one fails, the extension exists.
            let exists: Option<i32> =
                sqlx::query_scalar("SELECT 1 FROM pg_extension WHERE extname = 'vector'")
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(backend)?;
            if exists.is_none() {
                return Err(IndexError::Unavailable(format!(
                    "the pgvector extension is not available: {error}"
                )));
            }
        }
        let meta = &self.meta_table;
        sqlx::query(AssertSqlSafe(format!(
            "CREATE TABLE IF NOT EXISTS {meta} (id smallint PRIMARY KEY CHECK (id = 1), \
             checkpoint bigint NOT NULL, dimensions integer)"
        )))
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {meta} (id, checkpoint) VALUES (1, 0) ON CONFLICT (id) DO NOTHING"
        )))
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    /// Creates the chunk table for `dimensions` if this transaction is the first to fix them.
    async fn ensure_chunk_table(
        &self,
        transaction: &mut Transaction<'static, Postgres>,
        dimensions: usize,
    ) -> Result<(), IndexError> {
        let (meta, chunks) = (&self.meta_table, &self.chunks_table);
        let stored: Option<i32> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT dimensions FROM {meta} WHERE id = 1 FOR UPDATE"
        )))
        .fetch_one(&mut **transaction)
        .await
        .map_err(backend)?;
        match stored.and_then(|stored| usize::try_from(stored).ok()) {
            Some(stored) if stored == dimensions => return Ok(()),
            Some(stored) => {
                return Err(IndexError::Invalid(format!(
                    "vectors of {dimensions} dimensions in an index of {stored}"
                )));
            }
            None => {}
        }
        let dimensions_sql = i32::try_from(dimensions)
            .map_err(|_| IndexError::Invalid(format!("{dimensions} dimensions")))?;
        for statement in [
            format!(
                "CREATE TABLE IF NOT EXISTS {chunks} (id bigint PRIMARY KEY, store_id text NOT NULL, \
                 file_id text NOT NULL, attributes jsonb NOT NULL, \
                 embedding vector({dimensions_sql}) NOT NULL)"
            ),
            format!("CREATE INDEX IF NOT EXISTS {chunks}_store ON {chunks} (store_id, file_id)"),
            format!(
                "CREATE INDEX IF NOT EXISTS {chunks}_hnsw ON {chunks} \
                 USING hnsw (embedding vector_cosine_ops)"
            ),
        ] {
            sqlx::query(AssertSqlSafe(statement))
                .execute(&mut **transaction)
                .await
                .map_err(backend)?;
        }
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE {meta} SET dimensions = $1 WHERE id = 1"
        )))
        .bind(dimensions_sql)
        .execute(&mut **transaction)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn apply(
        &self,
        transaction: &mut Transaction<'static, Postgres>,
        change: &Change,
        chunk_table_ready: &mut bool,
    ) -> Result<(), IndexError> {
        let chunks = &self.chunks_table;
        match change {
            Change::Add(batch) => {
                let Some(first) = batch.first() else {
                    return Ok(());
                };
                if !*chunk_table_ready {
                    self.ensure_chunk_table(transaction, first.vector.len())
                        .await?;
                    *chunk_table_ready = true;
                }
                let mut ids = Vec::with_capacity(batch.len());
                let mut store_ids = Vec::with_capacity(batch.len());
                let mut file_ids = Vec::with_capacity(batch.len());
                let mut attributes = Vec::with_capacity(batch.len());
                let mut embeddings = Vec::with_capacity(batch.len());
                for chunk in batch {
                    ids.push(chunk.id);
                    store_ids.push(chunk.store_id.clone());
                    file_ids.push(chunk.file_id.clone());
                    attributes.push(Value::Object(super::filterable_attributes(chunk)).to_string());
                    embeddings.push(vector_literal(&chunk.vector));
                }
                sqlx::query(AssertSqlSafe(format!(
                    "INSERT INTO {chunks} (id, store_id, file_id, attributes, embedding) \
                     SELECT id, store_id, file_id, attributes::jsonb, embedding::vector \
                     FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[]) \
                     AS u(id, store_id, file_id, attributes, embedding) \
                     ON CONFLICT (id) DO UPDATE SET store_id = excluded.store_id, \
                     file_id = excluded.file_id, attributes = excluded.attributes, \
                     embedding = excluded.embedding"
                )))
                .bind(ids)
                .bind(store_ids)
                .bind(file_ids)
                .bind(attributes)
                .bind(embeddings)
                .execute(&mut **transaction)
                .await
                .map_err(backend)?;
            }
            Change::DeleteFile { store_id, file_id } if *chunk_table_ready => {
                sqlx::query(AssertSqlSafe(format!(
                    "DELETE FROM {chunks} WHERE store_id = $1 AND file_id = $2"
                )))
                .bind(store_id)
                .bind(file_id)
                .execute(&mut **transaction)
                .await
                .map_err(backend)?;
            }
            Change::DeleteStore { store_id } if *chunk_table_ready => {
                sqlx::query(AssertSqlSafe(format!(
                    "DELETE FROM {chunks} WHERE store_id = $1"
                )))
                .bind(store_id)
                .execute(&mut **transaction)
                .await
                .map_err(backend)?;
            }
            // No chunk table yet: nothing to delete.
            Change::DeleteFile { .. } | Change::DeleteStore { .. } => {}
        }
        Ok(())
    }

    async fn chunk_table_exists(&self) -> Result<bool, IndexError> {
        let name: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
            .bind(&self.chunks_table)
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        Ok(name.is_some())
    }
}

#[async_trait]
impl VectorIndex for PgVectorIndex {
    async fn add(&self, chunks: &[IndexedChunk]) -> Result<(), IndexError> {
        if chunks.is_empty() {
            return Ok(());
        }
        let mut state = self.state.lock().await;
        let dimensions = super::batch_dimensions(chunks, state.dimensions)?;
        // One statement cannot upsert a row twice.
        let batch = super::last_copy_of_each(chunks);
        state.dimensions = Some(dimensions);
        state.pending.push(Change::Add(batch));
        Ok(())
    }

    async fn delete_file(&self, store_id: &str, file_id: &str) -> Result<(), IndexError> {
        self.state.lock().await.pending.push(Change::DeleteFile {
            store_id: store_id.to_string(),
            file_id: file_id.to_string(),
        });
        Ok(())
    }

    async fn delete_store(&self, store_id: &str) -> Result<(), IndexError> {
        self.state.lock().await.pending.push(Change::DeleteStore {
            store_id: store_id.to_string(),
        });
        Ok(())
    }

    async fn commit(&self, checkpoint: Checkpoint) -> Result<(), IndexError> {
        let checkpoint_sql = i64::try_from(checkpoint)
            .map_err(|_| IndexError::Invalid(format!("checkpoint {checkpoint} beyond i64")))?;
        let mut state = self.state.lock().await;
        let mut chunk_table_ready = self.chunk_table_exists().await?;
        let mut transaction = self.pool.begin().await.map_err(unavailable)?;
        for change in &state.pending {
            self.apply(&mut transaction, change, &mut chunk_table_ready)
                .await?;
        }
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE {} SET checkpoint = $1 WHERE id = 1",
            self.meta_table
        )))
        .bind(checkpoint_sql)
        .execute(&mut *transaction)
        .await
        .map_err(backend)?;
        transaction.commit().await.map_err(backend)?;
        state.pending.clear();
        Ok(())
    }

    async fn checkpoint(&self) -> Result<Checkpoint, IndexError> {
        let checkpoint: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT checkpoint FROM {} WHERE id = 1",
            self.meta_table
        )))
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        u64::try_from(checkpoint)
            .map_err(|_| IndexError::Corrupt(format!("negative checkpoint {checkpoint}")))
    }

    async fn search(
        &self,
        store_ids: &[String],
        vector: &[f32],
        filter: Option<&Filter>,
        limit: usize,
    ) -> Result<Vec<Hit>, IndexError> {
        if store_ids.is_empty() || limit == 0 || !self.chunk_table_exists().await? {
            return Ok(Vec::new());
        }
        let committed_dimensions: Option<i32> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT dimensions FROM {} WHERE id = 1",
            self.meta_table
        )))
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        if committed_dimensions.and_then(|d| usize::try_from(d).ok()) != Some(vector.len()) {
            return Err(IndexError::Invalid(format!(
                "a query of {} dimensions in an index of {committed_dimensions:?}",
                vector.len()
            )));
        }
        // $1 query vector, $2 stores, $3 limit; the filter's parameters follow.
        let mut parameters = Vec::new();
        let condition = match filter {
            Some(filter) => compile(filter, &mut parameters, 4),
            None => "TRUE".to_string(),
        };
        // The inner query is the shape pgvector's HNSW index serves (ORDER BY distance LIMIT);
        // the outer one breaks ties by id and repairs iterative scan's relaxed order.
        let sql = format!(
            "SELECT id, score FROM (SELECT id, 1 - (embedding <=> $1::text::vector) AS score \
             FROM {} WHERE store_id = ANY($2) AND ({condition}) \
             ORDER BY embedding <=> $1::text::vector LIMIT $3) AS nearest \
             ORDER BY score DESC, id ASC",
            self.chunks_table
        );
        let limit_sql = i64::try_from(limit).unwrap_or(i64::MAX);
        let ef_search = limit.clamp(MIN_EF_SEARCH, MAX_EF_SEARCH).to_string();
        let mut transaction = self.pool.begin().await.map_err(unavailable)?;
        sqlx::query(
            "SELECT set_config('hnsw.ef_search', $1, true), \
             set_config('hnsw.iterative_scan', 'relaxed_order', true)",
        )
        .bind(ef_search)
        .execute(&mut *transaction)
        .await
        .map_err(backend)?;
        let mut query = sqlx::query_as::<_, (i64, f64)>(AssertSqlSafe(sql))
            .bind(vector_literal(vector))
            .bind(store_ids)
            .bind(limit_sql);
        for parameter in parameters {
            query = match parameter {
                Parameter::Text(text) => query.bind(text),
                Parameter::Number(number) => query.bind(number),
                Parameter::Bool(boolean) => query.bind(boolean),
            };
        }
        let rows = query.fetch_all(&mut *transaction).await.map_err(backend)?;
        transaction.commit().await.map_err(backend)?;
        Ok(rows
            .into_iter()
            .map(|(id, score)| Hit {
                id,
                score: score as f32,
            })
            .collect())
    }
}

/// A value bound to a filter placeholder.
#[derive(Debug, Clone, PartialEq)]
enum Parameter {
    Text(String),
    Number(f64),
    Bool(bool),
}

/// Compiles `filter` to an SQL condition over the `attributes` jsonb column that agrees with
/// [`Filter::matches`]. Keys and values become placeholders `$first_placeholder...`, pushed
/// onto `parameters`; nothing from the filter is spliced into the SQL text.
fn compile(filter: &Filter, parameters: &mut Vec<Parameter>, first_placeholder: usize) -> String {
    match filter {
        Filter::Compound { op, filters } => {
            let (joiner, empty) = match op {
                CompoundOp::And => (" AND ", "TRUE"),
                CompoundOp::Or => (" OR ", "FALSE"),
            };
            if filters.is_empty() {
                return empty.to_string();
            }
            let parts: Vec<String> = filters
                .iter()
                .map(|filter| compile(filter, parameters, first_placeholder))
                .collect();
            format!("({})", parts.join(joiner))
        }
        Filter::Comparison(comparison) => {
            compile_comparison(comparison, parameters, first_placeholder)
        }
    }
}

fn compile_comparison(
    comparison: &Comparison,
    parameters: &mut Vec<Parameter>,
    first_placeholder: usize,
) -> String {
    let mut placeholder = |parameter: Parameter| {
        parameters.push(parameter);
        format!("${}", first_placeholder + parameters.len() - 1)
    };
    let key = placeholder(Parameter::Text(comparison.key.clone()));
    let (operator, negate) = match comparison.op {
        ComparisonOp::Eq | ComparisonOp::In => ("=", false),
        ComparisonOp::Ne | ComparisonOp::Nin => ("=", true),
        ComparisonOp::Gt => (">", false),
        ComparisonOp::Gte => (">=", false),
        ComparisonOp::Lt => ("<", false),
        ComparisonOp::Lte => ("<=", false),
    };
    let options: Vec<&Value> = match (comparison.op, &comparison.value) {
        (ComparisonOp::In | ComparisonOp::Nin, Value::Array(options)) => options.iter().collect(),
        // `in` with a non-array matches nothing, as in `Filter::matches`.
        (ComparisonOp::In | ComparisonOp::Nin, _) => Vec::new(),
        (_, value) => vec![value],
    };
    let mut tests = Vec::with_capacity(options.len());
    for option in options {
        // Same-typed values compare; other pairs are never equal or ordered.
        let (json_type, cast, parameter) = match option {
            Value::String(text) => ("string", " COLLATE \"C\"", Parameter::Text(text.clone())),
            Value::Number(number) => match number.as_f64() {
                Some(number) => ("number", "::float8", Parameter::Number(number)),
                None => continue,
            },
            Value::Bool(boolean) => ("boolean", "::boolean", Parameter::Bool(*boolean)),
            _ => continue,
        };
        let value = placeholder(parameter);
        tests.push(format!(
            "(CASE WHEN jsonb_typeof(attributes -> {key}) = '{json_type}' \
             THEN (attributes ->> {key}){cast} {operator} {value} ELSE FALSE END)"
        ));
    }
    let positive = if tests.is_empty() {
        "FALSE".to_string()
    } else {
        format!("({})", tests.join(" OR "))
    };
    if negate {
        format!("(NOT {positive})")
    } else {
        positive
    }
}

/// pgvector's text form of a vector: `[1,2.5,3]`.
fn vector_literal(vector: &[f32]) -> String {
    let mut literal = String::with_capacity(vector.len() * 10 + 2);
    literal.push('[');
    for (position, value) in vector.iter().enumerate() {
        if position > 0 {
            literal.push(',');
        }
        literal.push_str(&value.to_string());
    }
    literal.push(']');
    literal
}

fn valid_prefix(prefix: &str) -> bool {
    let mut bytes = prefix.bytes();
    prefix.len() <= 48
        && bytes.next().is_some_and(|first| first.is_ascii_lowercase())
        && bytes.all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_')
}

fn backend(error: sqlx::Error) -> IndexError {
    match error {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
            IndexError::Unavailable(format!("PostgreSQL: {error}"))
        }
        error => IndexError::Backend(format!("PostgreSQL: {error}")),
    }
}

fn unavailable(error: sqlx::Error) -> IndexError {
    IndexError::Unavailable(format!("PostgreSQL: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn filter(value: Value) -> Filter {
        serde_json::from_value(value).unwrap_or_else(|e| unreachable!("bad test filter: {e}"))
    }

    #[test]
    fn filters_compile_to_placeholders_only() {
        let mut parameters = Vec::new();
        let sql = compile(
            &filter(json!({"type": "or", "filters": [
                {"type": "eq", "key": "x'; DROP TABLE t; --", "value": "'; DROP"},
                {"type": "nin", "key": "year", "value": [2024, true]}
            ]})),
            &mut parameters,
            4,
        );
        assert!(!sql.contains("DROP"), "{sql}");
        assert_eq!(parameters.len(), 5);
        assert!(sql.contains("$8"), "{sql}");
        assert!(sql.contains("NOT"), "{sql}");
    }

    #[test]
    fn empty_compounds_and_lists_are_constants() {
        let mut parameters = Vec::new();
        assert_eq!(
            compile(
                &filter(json!({"type": "and", "filters": []})),
                &mut parameters,
                1
            ),
            "TRUE"
        );
        let in_nothing = compile(
            &filter(json!({"type": "in", "key": "a", "value": []})),
            &mut parameters,
            1,
        );
        assert_eq!(in_nothing, "FALSE");
    }

    #[test]
    fn vectors_and_prefixes() {
        assert_eq!(vector_literal(&[1.0, -0.5, 0.25]), "[1,-0.5,0.25]");
        assert!(valid_prefix("landfall_test_1"));
        assert!(!valid_prefix("Landfall"));
        assert!(!valid_prefix("a; drop"));
        assert!(!valid_prefix(""));
    }
}
