//! [`KnowledgeStore`] for both backends. The statements are the same text on SQLite and
//! PostgreSQL (numbered `$n` parameters, `RETURNING`, `ON CONFLICT`, BIGINT-compatible
//! columns), so one macro body serves both; only how change-log writers are ordered differs.

use serde_json::{Map, Value};

use crate::codec::{from_json as json, saturating_i64 as signed};
use crate::error::StoreError;
use crate::knowledge::{
    BatchRecord, Change, ChangeOp, FileRecord, IngestError, IngestStatus, NewChunk,
    StoreFileRecord, StoredChunk, VectorStoreRecord, decode_embedding,
};

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct FileRow {
    id: String,
    tenant_id: String,
    filename: String,
    purpose: String,
    bytes: i64,
    sha256: String,
    created_at: i64,
    expires_at: Option<i64>,
}

impl From<FileRow> for FileRecord {
    fn from(row: FileRow) -> Self {
        Self {
            id: row.id,
            tenant_id: row.tenant_id,
            filename: row.filename,
            purpose: row.purpose,
            bytes: unsigned(row.bytes),
            sha256: row.sha256,
            created_at: row.created_at,
            expires_at: row.expires_at,
        }
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct VectorStoreRow {
    id: String,
    tenant_id: String,
    name: String,
    metadata: String,
    settings: String,
    created_at: i64,
    last_active_at: i64,
    expires_at: Option<i64>,
}

impl VectorStoreRow {
    pub(crate) fn decode(self) -> Result<VectorStoreRecord, StoreError> {
        let entity = "vector store";
        Ok(VectorStoreRecord {
            metadata: json(entity, &self.id, "metadata", &self.metadata)?,
            settings: json(entity, &self.id, "settings", &self.settings)?,
            id: self.id,
            tenant_id: self.tenant_id,
            name: self.name,
            created_at: self.created_at,
            last_active_at: self.last_active_at,
            expires_at: self.expires_at,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct StoreFileRow {
    store_id: String,
    file_id: String,
    tenant_id: String,
    batch_id: Option<String>,
    status: String,
    last_error: Option<String>,
    attributes: String,
    chunking: String,
    usage_bytes: i64,
    chunk_count: i64,
    created_at: i64,
    updated_at: i64,
}

impl StoreFileRow {
    pub(crate) fn decode(self) -> Result<StoreFileRecord, StoreError> {
        let entity = "vector store file";
        let id = format!("{}/{}", self.store_id, self.file_id);
        let status = IngestStatus::parse(&self.status).ok_or_else(|| StoreError::Corrupt {
            entity,
            id: id.clone(),
            message: format!("unknown status `{}`", self.status),
        })?;
        let last_error: Option<IngestError> = match &self.last_error {
            Some(text) => Some(json(entity, &id, "last_error", text)?),
            None => None,
        };
        Ok(StoreFileRecord {
            attributes: json(entity, &id, "attributes", &self.attributes)?,
            chunking: json(entity, &id, "chunking", &self.chunking)?,
            store_id: self.store_id,
            file_id: self.file_id,
            tenant_id: self.tenant_id,
            batch_id: self.batch_id,
            status,
            last_error,
            usage_bytes: unsigned(self.usage_bytes),
            chunk_count: unsigned(self.chunk_count),
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct BatchRow {
    id: String,
    store_id: String,
    tenant_id: String,
    created_at: i64,
    cancelled: i64,
}

impl From<BatchRow> for BatchRecord {
    fn from(row: BatchRow) -> Self {
        Self {
            id: row.id,
            store_id: row.store_id,
            tenant_id: row.tenant_id,
            created_at: row.created_at,
            cancelled: row.cancelled != 0,
        }
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ChunkRow {
    id: i64,
    store_id: String,
    file_id: String,
    position: i64,
    text: String,
    page: Option<i64>,
    char_start: i64,
    char_end: i64,
    heading_path: String,
    token_count: i64,
    embedding: Option<Vec<u8>>,
    attributes: Option<String>,
}

impl ChunkRow {
    pub(crate) fn decode(self) -> Result<StoredChunk, StoreError> {
        let entity = "chunk";
        let id = self.id.to_string();
        let attributes: Map<String, Value> = match &self.attributes {
            Some(text) => json(entity, &id, "attributes", text)?,
            None => Map::new(),
        };
        Ok(StoredChunk {
            id: self.id,
            position: u32::try_from(self.position).unwrap_or(u32::MAX),
            chunk: NewChunk {
                heading_path: json(entity, &id, "heading_path", &self.heading_path)?,
                text: self.text,
                page: self.page.and_then(|page| u32::try_from(page).ok()),
                char_start: unsigned(self.char_start),
                char_end: unsigned(self.char_end),
                token_count: u32::try_from(self.token_count).unwrap_or(u32::MAX),
                embedding: self
                    .embedding
                    .as_deref()
                    .map(decode_embedding)
                    .unwrap_or_default(),
            },
            store_id: self.store_id,
            file_id: self.file_id,
            attributes,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ChangeRow {
    seq: i64,
    store_id: String,
    file_id: String,
    op: String,
}

impl ChangeRow {
    pub(crate) fn decode(self) -> Result<Change, StoreError> {
        let op = ChangeOp::parse(&self.op).ok_or_else(|| StoreError::Corrupt {
            entity: "chunk change",
            id: self.seq.to_string(),
            message: format!("unknown op `{}`", self.op),
        })?;
        Ok(Change {
            seq: unsigned(self.seq),
            store_id: self.store_id,
            file_id: self.file_id,
            op,
        })
    }
}

pub(crate) fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

pub(crate) const SELECT_FILE: &str =
    "SELECT id, tenant_id, filename, purpose, bytes, sha256, created_at, expires_at FROM files";
pub(crate) const SELECT_STORE: &str = "SELECT id, tenant_id, name, metadata, settings, \
     created_at, last_active_at, expires_at FROM vector_stores";
pub(crate) const SELECT_STORE_FILE: &str = "SELECT store_id, file_id, tenant_id, batch_id, \
     status, last_error, attributes, chunking, usage_bytes, chunk_count, created_at, updated_at \
     FROM vector_store_files";
pub(crate) const SELECT_CHUNK: &str = "SELECT c.id, c.store_id, c.file_id, c.position, c.text, \
     c.page, c.char_start, c.char_end, c.heading_path, c.token_count, c.embedding, \
     f.attributes FROM chunks c LEFT JOIN vector_store_files f \
     ON f.store_id = c.store_id AND f.file_id = c.file_id";
/// As [`SELECT_CHUNK`] without the embedding bytes.
pub(crate) const SELECT_CHUNK_TEXT: &str = "SELECT c.id, c.store_id, c.file_id, c.position, \
     c.text, c.page, c.char_start, c.char_end, c.heading_path, c.token_count, \
     NULL AS embedding, f.attributes FROM chunks c LEFT JOIN vector_store_files f \
     ON f.store_id = c.store_id AND f.file_id = c.file_id";

/// Everything that binds a chunk's columns, in statement order after `store_id, file_id`.
pub(crate) struct ChunkColumns {
    pub position: i64,
    pub text: String,
    pub page: Option<i64>,
    pub char_start: i64,
    pub char_end: i64,
    pub heading_path: String,
    pub token_count: i64,
    pub embedding: Vec<u8>,
}

impl ChunkColumns {
    pub(crate) fn encode(position: usize, chunk: &NewChunk) -> Result<Self, StoreError> {
        Ok(Self {
            position: i64::try_from(position).unwrap_or(i64::MAX),
            text: chunk.text.clone(),
            page: chunk.page.map(i64::from),
            char_start: signed(chunk.char_start),
            char_end: signed(chunk.char_end),
            heading_path: crate::codec::to_json("chunk", "(new)", &chunk.heading_path)?,
            token_count: i64::from(chunk.token_count),
            embedding: crate::knowledge::encode_embedding(&chunk.embedding),
        })
    }
}

/// Appends a change-log entry inside transaction `$tx`; evaluates to its `seq` (as stored).
macro_rules! append_change {
    ($tx:expr, $store_id:expr, $file_id:expr, $op:expr) => {
        sqlx::query_scalar::<_, i64>(
            "INSERT INTO chunk_changes (store_id, file_id, op) VALUES ($1, $2, $3) RETURNING seq",
        )
        .bind($store_id)
        .bind($file_id)
        .bind($op.as_str())
        .fetch_one(&mut *$tx)
        .await
        .map_err($crate::codec::db_error)
    };
}
pub(crate) use append_change;

/// Implements [`crate::KnowledgeStore`] for `$store`. Statements built with `format!` join
/// only the constants above, fixed keywords and placeholders; every value is bound.
///
/// Writes go to `self.$writer` and
/// reads to `self.$reader`. `$order_changes` runs first in every transaction that appends to
/// the change log, so entries commit in `seq` order.
macro_rules! knowledge_store {
    ($store:ty, writer = $writer:ident, reader = $reader:ident, order_changes = $order:expr) => {
        #[async_trait::async_trait]
        impl $crate::knowledge::KnowledgeStore for $store {
            async fn create_file(
                &self,
                file: &$crate::knowledge::FileRecord,
                content: &[u8],
            ) -> Result<(), $crate::StoreError> {
                use $crate::codec::db_error;
                use $crate::codec::saturating_i64 as signed;
                let mut tx = self.$writer.begin().await.map_err(db_error)?;
                let inserted = sqlx::query(
                    "INSERT INTO files (id, tenant_id, filename, purpose, bytes, sha256, \
                     created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(&file.id)
                .bind(&file.tenant_id)
                .bind(&file.filename)
                .bind(&file.purpose)
                .bind(signed(file.bytes))
                .bind(&file.sha256)
                .bind(file.created_at)
                .bind(file.expires_at)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
                if inserted.rows_affected() == 0 {
                    return Err($crate::StoreError::Conflict {
                        entity: "file",
                        id: file.id.clone(),
                    });
                }
                sqlx::query("INSERT INTO file_contents (file_id, content) VALUES ($1, $2)")
                    .bind(&file.id)
                    .bind(content)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                tx.commit().await.map_err(db_error)
            }

            async fn get_file(
                &self,
                tenant_id: &str,
                id: &str,
            ) -> Result<Option<$crate::knowledge::FileRecord>, $crate::StoreError> {
                let sql = format!("{} WHERE id = $1 AND tenant_id = $2", $crate::knowledge_sql::SELECT_FILE);
                let row: Option<$crate::knowledge_sql::FileRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .bind(tenant_id)
                    .fetch_optional(&self.$reader)
                    .await
                    .map_err($crate::codec::db_error)?;
                Ok(row.map(Into::into))
            }

            async fn find_file(
                &self,
                tenant_id: &str,
                sha256: &str,
                filename: &str,
            ) -> Result<Option<$crate::knowledge::FileRecord>, $crate::StoreError> {
                let sql = format!(
                    "{} WHERE tenant_id = $1 AND sha256 = $2 AND filename = $3 \
                     ORDER BY id DESC LIMIT 1",
                    $crate::knowledge_sql::SELECT_FILE
                );
                let row: Option<$crate::knowledge_sql::FileRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(tenant_id)
                    .bind(sha256)
                    .bind(filename)
                    .fetch_optional(&self.$reader)
                    .await
                    .map_err($crate::codec::db_error)?;
                Ok(row.map(Into::into))
            }

            async fn list_files(
                &self,
                tenant_id: &str,
                purpose: Option<&str>,
                page: &$crate::PageRequest,
                descending: bool,
            ) -> Result<Vec<$crate::knowledge::FileRecord>, $crate::StoreError> {
                let (cmp, order) = if descending { ("<", "DESC") } else { (">", "ASC") };
                let sql = format!(
                    "{} WHERE tenant_id = $1 AND ($2 IS NULL OR purpose = $2) \
                     AND ($3 IS NULL OR id {cmp} $3) ORDER BY id {order} LIMIT $4",
                    $crate::knowledge_sql::SELECT_FILE
                );
                let rows: Vec<$crate::knowledge_sql::FileRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(tenant_id)
                    .bind(purpose)
                    .bind(page.after.as_deref())
                    .bind($crate::codec::page_limit(page))
                    .fetch_all(&self.$reader)
                    .await
                    .map_err($crate::codec::db_error)?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn expired_files(
                &self,
                now: i64,
                limit: u32,
            ) -> Result<Vec<$crate::knowledge::FileRecord>, $crate::StoreError> {
                let sql = format!(
                    "{} WHERE expires_at IS NOT NULL AND expires_at <= $1 \
                     ORDER BY expires_at LIMIT $2",
                    $crate::knowledge_sql::SELECT_FILE
                );
                let rows: Vec<$crate::knowledge_sql::FileRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(now)
                    .bind(i64::from(limit))
                    .fetch_all(&self.$reader)
                    .await
                    .map_err($crate::codec::db_error)?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn file_content(
                &self,
                tenant_id: &str,
                id: &str,
            ) -> Result<Option<Vec<u8>>, $crate::StoreError> {
                sqlx::query_scalar(
                    "SELECT c.content FROM file_contents c JOIN files f ON f.id = c.file_id \
                     WHERE f.id = $1 AND f.tenant_id = $2",
                )
                .bind(id)
                .bind(tenant_id)
                .fetch_optional(&self.$reader)
                .await
                .map_err($crate::codec::db_error)
            }

            async fn delete_file(
                &self,
                tenant_id: &str,
                id: &str,
            ) -> Result<Option<Vec<String>>, $crate::StoreError> {
                use $crate::codec::db_error;
                let mut tx = self.$writer.begin().await.map_err(db_error)?;
                sqlx::query($order).execute(&mut *tx).await.map_err(db_error)?;
                let deleted = sqlx::query("DELETE FROM files WHERE id = $1 AND tenant_id = $2")
                    .bind(id)
                    .bind(tenant_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                if deleted.rows_affected() == 0 {
                    return Ok(None);
                }
                sqlx::query("DELETE FROM file_contents WHERE file_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                let stores: Vec<String> = sqlx::query_scalar(
                    "DELETE FROM vector_store_files WHERE file_id = $1 RETURNING store_id",
                )
                .bind(id)
                .fetch_all(&mut *tx)
                .await
                .map_err(db_error)?;
                for store_id in &stores {
                    sqlx::query("DELETE FROM chunks WHERE store_id = $1 AND file_id = $2")
                        .bind(store_id)
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_error)?;
                    $crate::knowledge_sql::append_change!(
                        tx,
                        store_id,
                        id,
                        $crate::knowledge::ChangeOp::Remove
                    )?;
                }
                tx.commit().await.map_err(db_error)?;
                Ok(Some(stores))
            }

            async fn create_vector_store(
                &self,
                store: &$crate::knowledge::VectorStoreRecord,
            ) -> Result<(), $crate::StoreError> {
                use $crate::codec::to_json;
                let inserted = sqlx::query(
                    "INSERT INTO vector_stores (id, tenant_id, name, metadata, settings, \
                     created_at, last_active_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
                )
                .bind(&store.id)
                .bind(&store.tenant_id)
                .bind(&store.name)
                .bind(to_json("vector store", &store.id, &store.metadata)?)
                .bind(to_json("vector store", &store.id, &store.settings)?)
                .bind(store.created_at)
                .bind(store.last_active_at)
                .bind(store.expires_at)
                .execute(&self.$writer)
                .await
                .map_err($crate::codec::db_error)?;
                if inserted.rows_affected() == 0 {
                    return Err($crate::StoreError::Conflict {
                        entity: "vector store",
                        id: store.id.clone(),
                    });
                }
                Ok(())
            }

            async fn get_vector_store(
                &self,
                tenant_id: &str,
                id: &str,
            ) -> Result<Option<$crate::knowledge::VectorStoreRecord>, $crate::StoreError> {
                let sql = format!("{} WHERE id = $1 AND tenant_id = $2", $crate::knowledge_sql::SELECT_STORE);
                let row: Option<$crate::knowledge_sql::VectorStoreRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .bind(tenant_id)
                    .fetch_optional(&self.$reader)
                    .await
                    .map_err($crate::codec::db_error)?;
                row.map($crate::knowledge_sql::VectorStoreRow::decode).transpose()
            }

            async fn list_vector_stores(
                &self,
                tenant_id: &str,
                page: &$crate::PageRequest,
                descending: bool,
            ) -> Result<Vec<$crate::knowledge::VectorStoreRecord>, $crate::StoreError> {
                let (cmp, order) = if descending { ("<", "DESC") } else { (">", "ASC") };
                let sql = format!(
                    "{} WHERE tenant_id = $1 AND ($2 IS NULL OR id {cmp} $2) \
                     ORDER BY id {order} LIMIT $3",
                    $crate::knowledge_sql::SELECT_STORE
                );
                let rows: Vec<$crate::knowledge_sql::VectorStoreRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(tenant_id)
                    .bind(page.after.as_deref())
                    .bind($crate::codec::page_limit(page))
                    .fetch_all(&self.$reader)
                    .await
                    .map_err($crate::codec::db_error)?;
                rows.into_iter()
                    .map($crate::knowledge_sql::VectorStoreRow::decode)
                    .collect()
            }

            async fn update_vector_store(
                &self,
                store: &$crate::knowledge::VectorStoreRecord,
            ) -> Result<bool, $crate::StoreError> {
                use $crate::codec::to_json;
                let updated = sqlx::query(
                    "UPDATE vector_stores SET name = $3, metadata = $4, settings = $5, \
                     last_active_at = $6, expires_at = $7 WHERE id = $1 AND tenant_id = $2",
                )
                .bind(&store.id)
                .bind(&store.tenant_id)
                .bind(&store.name)
                .bind(to_json("vector store", &store.id, &store.metadata)?)
                .bind(to_json("vector store", &store.id, &store.settings)?)
                .bind(store.last_active_at)
                .bind(store.expires_at)
                .execute(&self.$writer)
                .await
                .map_err($crate::codec::db_error)?;
                Ok(updated.rows_affected() > 0)
            }

            async fn delete_vector_store(
                &self,
                tenant_id: &str,
                id: &str,
            ) -> Result<bool, $crate::StoreError> {
                use $crate::codec::db_error;
                let mut tx = self.$writer.begin().await.map_err(db_error)?;
                sqlx::query($order).execute(&mut *tx).await.map_err(db_error)?;
                let deleted =
                    sqlx::query("DELETE FROM vector_stores WHERE id = $1 AND tenant_id = $2")
                        .bind(id)
                        .bind(tenant_id)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_error)?;
                if deleted.rows_affected() == 0 {
                    return Ok(false);
                }
                for table in ["vector_store_files", "file_batches", "chunks"] {
                    sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE store_id = $1")))
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_error)?;
                }
                $crate::knowledge_sql::append_change!(
                    tx,
                    id,
                    "",
                    $crate::knowledge::ChangeOp::RemoveStore
                )?;
                tx.commit().await.map_err(db_error)?;
                Ok(true)
            }

            async fn store_usage(
                &self,
                store_id: &str,
            ) -> Result<($crate::knowledge::FileCounts, u64), $crate::StoreError> {
                let rows: Vec<(String, i64, i64)> = sqlx::query_as(
                    "SELECT status, COUNT(*), CAST(COALESCE(SUM(usage_bytes), 0) AS BIGINT) \
                     FROM vector_store_files WHERE store_id = $1 GROUP BY status",
                )
                .bind(store_id)
                .fetch_all(&self.$reader)
                .await
                .map_err($crate::codec::db_error)?;
                let mut counts = $crate::knowledge::FileCounts::default();
                let mut bytes = 0;
                for (status, count, usage) in rows {
                    if let Some(status) = $crate::knowledge::IngestStatus::parse(&status) {
                        counts.add(status, $crate::knowledge_sql::unsigned(count));
                    }
                    bytes += $crate::knowledge_sql::unsigned(usage);
                }
                Ok((counts, bytes))
            }

            async fn attach_file(
                &self,
                file: &$crate::knowledge::StoreFileRecord,
            ) -> Result<(), $crate::StoreError> {
                use $crate::codec::{saturating_i64 as signed, to_json};
                let entity = "vector store file";
                let last_error = file
                    .last_error
                    .as_ref()
                    .map(|error| to_json(entity, &file.file_id, error))
                    .transpose()?;
                let inserted = sqlx::query(
                    "INSERT INTO vector_store_files (store_id, file_id, tenant_id, batch_id, \
                     status, last_error, attributes, chunking, usage_bytes, chunk_count, \
                     created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                     ON CONFLICT (store_id, file_id) DO NOTHING",
                )
                .bind(&file.store_id)
                .bind(&file.file_id)
                .bind(&file.tenant_id)
                .bind(&file.batch_id)
                .bind(file.status.as_str())
                .bind(last_error)
                .bind(to_json(entity, &file.file_id, &file.attributes)?)
                .bind(to_json(entity, &file.file_id, &file.chunking)?)
                .bind(signed(file.usage_bytes))
                .bind(signed(file.chunk_count))
                .bind(file.created_at)
                .bind(file.updated_at)
                .execute(&self.$writer)
                .await
                .map_err($crate::codec::db_error)?;
                if inserted.rows_affected() == 0 {
                    return Err($crate::StoreError::Conflict {
                        entity: "vector store file",
                        id: format!("{}/{}", file.store_id, file.file_id),
                    });
                }
                Ok(())
            }

            async fn get_store_file(
                &self,
                store_id: &str,
                file_id: &str,
            ) -> Result<Option<$crate::knowledge::StoreFileRecord>, $crate::StoreError> {
                let sql = format!(
                    "{} WHERE store_id = $1 AND file_id = $2",
                    $crate::knowledge_sql::SELECT_STORE_FILE
                );
                let row: Option<$crate::knowledge_sql::StoreFileRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(store_id)
                    .bind(file_id)
                    .fetch_optional(&self.$reader)
                    .await
                    .map_err($crate::codec::db_error)?;
                row.map($crate::knowledge_sql::StoreFileRow::decode).transpose()
            }

            async fn list_store_files(
                &self,
                store_id: &str,
                query: &$crate::knowledge::StoreFileQuery,
            ) -> Result<Vec<$crate::knowledge::StoreFileRecord>, $crate::StoreError> {
                let (cmp, order) = if query.descending { ("<", "DESC") } else { (">", "ASC") };
                let sql = format!(
                    "{} WHERE store_id = $1 AND ($2 IS NULL OR status = $2) \
                     AND ($3 IS NULL OR batch_id = $3) AND ($4 IS NULL OR file_id {cmp} $4) \
                     ORDER BY file_id {order} LIMIT $5",
                    $crate::knowledge_sql::SELECT_STORE_FILE
                );
                let rows: Vec<$crate::knowledge_sql::StoreFileRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(store_id)
                    .bind(query.status.map($crate::knowledge::IngestStatus::as_str))
                    .bind(query.batch_id.as_deref())
                    .bind(query.page.after.as_deref())
                    .bind($crate::codec::page_limit(&query.page))
                    .fetch_all(&self.$reader)
                    .await
                    .map_err($crate::codec::db_error)?;
                rows.into_iter()
                    .map($crate::knowledge_sql::StoreFileRow::decode)
                    .collect()
            }

            async fn update_store_file(
                &self,
                file: &$crate::knowledge::StoreFileRecord,
            ) -> Result<bool, $crate::StoreError> {
                use $crate::codec::{saturating_i64 as signed, to_json};
                let entity = "vector store file";
                let last_error = file
                    .last_error
                    .as_ref()
                    .map(|error| to_json(entity, &file.file_id, error))
                    .transpose()?;
                let updated = sqlx::query(
                    "UPDATE vector_store_files SET status = $3, last_error = $4, \
                     attributes = $5, usage_bytes = $6, chunk_count = $7, updated_at = $8 \
                     WHERE store_id = $1 AND file_id = $2",
                )
                .bind(&file.store_id)
                .bind(&file.file_id)
                .bind(file.status.as_str())
                .bind(last_error)
                .bind(to_json(entity, &file.file_id, &file.attributes)?)
                .bind(signed(file.usage_bytes))
                .bind(signed(file.chunk_count))
                .bind(file.updated_at)
                .execute(&self.$writer)
                .await
                .map_err($crate::codec::db_error)?;
                Ok(updated.rows_affected() > 0)
            }

            async fn detach_file(
                &self,
                store_id: &str,
                file_id: &str,
            ) -> Result<bool, $crate::StoreError> {
                use $crate::codec::db_error;
                let mut tx = self.$writer.begin().await.map_err(db_error)?;
                sqlx::query($order).execute(&mut *tx).await.map_err(db_error)?;
                let deleted = sqlx::query(
                    "DELETE FROM vector_store_files WHERE store_id = $1 AND file_id = $2",
                )
                .bind(store_id)
                .bind(file_id)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
                if deleted.rows_affected() == 0 {
                    return Ok(false);
                }
                sqlx::query("DELETE FROM chunks WHERE store_id = $1 AND file_id = $2")
                    .bind(store_id)
                    .bind(file_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                $crate::knowledge_sql::append_change!(
                    tx,
                    store_id,
                    file_id,
                    $crate::knowledge::ChangeOp::Remove
                )?;
                tx.commit().await.map_err(db_error)?;
                Ok(true)
            }

            async fn pending_ingests(
                &self,
                limit: u32,
            ) -> Result<Vec<$crate::knowledge::StoreFileRecord>, $crate::StoreError> {
                let sql = format!(
                    "{} WHERE status = 'in_progress' ORDER BY created_at, store_id, file_id \
                     LIMIT $1",
                    $crate::knowledge_sql::SELECT_STORE_FILE
                );
                let rows: Vec<$crate::knowledge_sql::StoreFileRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(i64::from(limit))
                    .fetch_all(&self.$reader)
                    .await
                    .map_err($crate::codec::db_error)?;
                rows.into_iter()
                    .map($crate::knowledge_sql::StoreFileRow::decode)
                    .collect()
            }

            async fn create_batch(
                &self,
                batch: &$crate::knowledge::BatchRecord,
            ) -> Result<(), $crate::StoreError> {
                sqlx::query(
                    "INSERT INTO file_batches (id, store_id, tenant_id, created_at, cancelled) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&batch.id)
                .bind(&batch.store_id)
                .bind(&batch.tenant_id)
                .bind(batch.created_at)
                .bind(i64::from(batch.cancelled))
                .execute(&self.$writer)
                .await
                .map_err($crate::codec::db_error)?;
                Ok(())
            }

            async fn get_batch(
                &self,
                store_id: &str,
                id: &str,
            ) -> Result<
                Option<($crate::knowledge::BatchRecord, $crate::knowledge::FileCounts)>,
                $crate::StoreError,
            > {
                use $crate::codec::db_error;
                let row: Option<$crate::knowledge_sql::BatchRow> = sqlx::query_as(
                    "SELECT id, store_id, tenant_id, created_at, cancelled FROM file_batches \
                     WHERE id = $1 AND store_id = $2",
                )
                .bind(id)
                .bind(store_id)
                .fetch_optional(&self.$reader)
                .await
                .map_err(db_error)?;
                let Some(row) = row else { return Ok(None) };
                let rows: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT status, COUNT(*) FROM vector_store_files WHERE batch_id = $1 \
                     GROUP BY status",
                )
                .bind(id)
                .fetch_all(&self.$reader)
                .await
                .map_err(db_error)?;
                let mut counts = $crate::knowledge::FileCounts::default();
                for (status, count) in rows {
                    if let Some(status) = $crate::knowledge::IngestStatus::parse(&status) {
                        counts.add(status, $crate::knowledge_sql::unsigned(count));
                    }
                }
                Ok(Some((row.into(), counts)))
            }

            async fn cancel_batch(&self, store_id: &str, id: &str) -> Result<bool, $crate::StoreError> {
                use $crate::codec::db_error;
                let mut tx = self.$writer.begin().await.map_err(db_error)?;
                let updated = sqlx::query(
                    "UPDATE file_batches SET cancelled = 1 WHERE id = $1 AND store_id = $2",
                )
                .bind(id)
                .bind(store_id)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
                if updated.rows_affected() == 0 {
                    return Ok(false);
                }
                sqlx::query(
                    "UPDATE vector_store_files SET status = 'cancelled', updated_at = $2 \
                     WHERE batch_id = $1 AND status = 'in_progress'",
                )
                .bind(id)
                .bind($crate::model::now_millis())
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
                tx.commit().await.map_err(db_error)?;
                Ok(true)
            }

            async fn replace_chunks(
                &self,
                store_id: &str,
                file_id: &str,
                chunks: &[$crate::knowledge::NewChunk],
            ) -> Result<u64, $crate::StoreError> {
                use $crate::codec::db_error;
                let columns = chunks
                    .iter()
                    .enumerate()
                    .map(|(position, chunk)| {
                        $crate::knowledge_sql::ChunkColumns::encode(position, chunk)
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let mut tx = self.$writer.begin().await.map_err(db_error)?;
                sqlx::query($order).execute(&mut *tx).await.map_err(db_error)?;
                let attached: Option<i64> = sqlx::query_scalar(
                    "SELECT CAST(1 AS BIGINT) FROM vector_store_files WHERE store_id = $1 AND file_id = $2",
                )
                .bind(store_id)
                .bind(file_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error)?;
                if attached.is_none() {
                    return Err($crate::StoreError::NotFound {
                        entity: "vector store file",
                        id: format!("{store_id}/{file_id}"),
                    });
                }
                sqlx::query("DELETE FROM chunks WHERE store_id = $1 AND file_id = $2")
                    .bind(store_id)
                    .bind(file_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                for chunk in columns {
                    sqlx::query(
                        "INSERT INTO chunks (store_id, file_id, position, text, page, \
                         char_start, char_end, heading_path, token_count, embedding) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                    )
                    .bind(store_id)
                    .bind(file_id)
                    .bind(chunk.position)
                    .bind(chunk.text)
                    .bind(chunk.page)
                    .bind(chunk.char_start)
                    .bind(chunk.char_end)
                    .bind(chunk.heading_path)
                    .bind(chunk.token_count)
                    .bind(chunk.embedding)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                }
                let seq = $crate::knowledge_sql::append_change!(
                    tx,
                    store_id,
                    file_id,
                    $crate::knowledge::ChangeOp::Replace
                )?;
                tx.commit().await.map_err(db_error)?;
                Ok($crate::knowledge_sql::unsigned(seq))
            }

            async fn mark_changed(
                &self,
                store_id: &str,
                file_id: &str,
            ) -> Result<u64, $crate::StoreError> {
                use $crate::codec::db_error;
                let mut tx = self.$writer.begin().await.map_err(db_error)?;
                sqlx::query($order).execute(&mut *tx).await.map_err(db_error)?;
                let seq = $crate::knowledge_sql::append_change!(
                    tx,
                    store_id,
                    file_id,
                    $crate::knowledge::ChangeOp::Replace
                )?;
                tx.commit().await.map_err(db_error)?;
                Ok($crate::knowledge_sql::unsigned(seq))
            }

            async fn file_chunks(
                &self,
                store_id: &str,
                file_id: &str,
            ) -> Result<Vec<$crate::knowledge::StoredChunk>, $crate::StoreError> {
                let sql = format!(
                    "{} WHERE c.store_id = $1 AND c.file_id = $2 ORDER BY c.position",
                    $crate::knowledge_sql::SELECT_CHUNK
                );
                let rows: Vec<$crate::knowledge_sql::ChunkRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(store_id)
                    .bind(file_id)
                    .fetch_all(&self.$reader)
                    .await
                    .map_err($crate::codec::db_error)?;
                rows.into_iter().map($crate::knowledge_sql::ChunkRow::decode).collect()
            }

            async fn chunks_by_id(
                &self,
                ids: &[i64],
            ) -> Result<Vec<$crate::knowledge::StoredChunk>, $crate::StoreError> {
                let mut chunks = Vec::with_capacity(ids.len());
                // Bounded statements: at most 500 parameters each.
                for batch in ids.chunks(500) {
                    let placeholders = (1..=batch.len())
                        .map(|n| format!("${n}"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    let sql = format!(
                        "{} WHERE c.id IN ({placeholders})",
                        $crate::knowledge_sql::SELECT_CHUNK_TEXT
                    );
                    let mut query = sqlx::query_as::<_, $crate::knowledge_sql::ChunkRow>(sqlx::AssertSqlSafe(sql));
                    for id in batch {
                        query = query.bind(*id);
                    }
                    let rows = query
                        .fetch_all(&self.$reader)
                        .await
                        .map_err($crate::codec::db_error)?;
                    for row in rows {
                        chunks.push(row.decode()?);
                    }
                }
                Ok(chunks)
            }

            async fn changes_after(
                &self,
                after: u64,
                limit: u32,
            ) -> Result<Vec<$crate::knowledge::Change>, $crate::StoreError> {
                let rows: Vec<$crate::knowledge_sql::ChangeRow> = sqlx::query_as(
                    "SELECT seq, store_id, file_id, op FROM chunk_changes WHERE seq > $1 \
                     ORDER BY seq LIMIT $2",
                )
                .bind($crate::codec::saturating_i64(after))
                .bind(i64::from(limit))
                .fetch_all(&self.$reader)
                .await
                .map_err($crate::codec::db_error)?;
                rows.into_iter().map($crate::knowledge_sql::ChangeRow::decode).collect()
            }

            async fn last_change(&self) -> Result<u64, $crate::StoreError> {
                let seq: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM chunk_changes")
                    .fetch_one(&self.$reader)
                    .await
                    .map_err($crate::codec::db_error)?;
                Ok(seq.map_or(0, $crate::knowledge_sql::unsigned))
            }
        }
    };
}
pub(crate) use knowledge_store;
