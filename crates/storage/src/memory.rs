//! [`MemoryStore`]: what agents remember. Conversations (`/v1/conversations`) are ordered
//! items that responses continue from and append to; long-term memories are facts
//! about one end user, with their embedding, recalled by similarity. One macro body serves
//! both backends.

use async_trait::async_trait;
use serde_json::Value;

use crate::error::StoreError;
use crate::model::UnixMillis;

/// A conversation, without its items.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationRecord {
    /// `conv_…`.
    pub id: String,
    pub tenant_id: String,
    pub metadata: Value,
    /// A summary of the items before `summary_seq`, written on request; the model gets it in
    /// their place.
    pub summary: Option<String>,
    pub summary_seq: Option<i64>,
    pub created_at: UnixMillis,
}

/// One item of a conversation: a message, a function call or its output, a tool call.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemRecord {
    /// Its place in the conversation, given by the store (ignored when appending).
    pub seq: i64,
    /// `msg_…`, unique within the conversation.
    pub id: String,
    /// The item in the Responses API's shape.
    pub item: Value,
    pub created_at: UnixMillis,
}

/// Which items to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemQuery {
    /// Items after this item id, in the listing order.
    pub after: Option<String>,
    /// At most this many (the store caps it at 10,000).
    pub limit: u32,
    /// Newest first.
    pub descending: bool,
}

/// A fact about an end user.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryRecord {
    /// `mem_…`.
    pub id: String,
    pub tenant_id: String,
    /// The end user (a request's `user` or `safety_identifier`).
    pub user_id: String,
    pub text: String,
    pub embedding: Vec<f32>,
    /// `api` (saved explicitly) or `model` (saved by the model's `remember` tool).
    pub source: String,
    pub created_at: UnixMillis,
}

/// Guarantees, for every implementation: writes that returned `Ok` are durable; a
/// conversation and its memories are seen only by their own tenant; `create_conversation`
/// fails with [`StoreError::Conflict`] when the id exists and writes the conversation and its
/// first items in one transaction; `append_items` appends all items or none, after every item
/// appended before it returned, and returns `false` when the conversation does not exist for
/// the tenant; deleting a conversation deletes its items.
#[async_trait]
pub trait MemoryStore: Send + Sync {
    async fn create_conversation(
        &self,
        conversation: &ConversationRecord,
        items: &[ItemRecord],
    ) -> Result<(), StoreError>;
    async fn get_conversation(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<ConversationRecord>, StoreError>;
    /// Replaces metadata and summary; `false` when there is no such conversation.
    async fn update_conversation(
        &self,
        conversation: &ConversationRecord,
    ) -> Result<bool, StoreError>;
    async fn delete_conversation(&self, tenant_id: &str, id: &str) -> Result<bool, StoreError>;
    async fn append_items(
        &self,
        tenant_id: &str,
        conversation_id: &str,
        items: &[ItemRecord],
    ) -> Result<bool, StoreError>;
    /// Items of a conversation (whose tenant the caller has checked).
    async fn list_items(
        &self,
        conversation_id: &str,
        query: &ItemQuery,
    ) -> Result<Vec<ItemRecord>, StoreError>;
    async fn get_item(
        &self,
        conversation_id: &str,
        item_id: &str,
    ) -> Result<Option<ItemRecord>, StoreError>;
    async fn delete_item(&self, conversation_id: &str, item_id: &str) -> Result<bool, StoreError>;

    /// Fails with [`StoreError::Conflict`] when the id exists.
    async fn save_memory(&self, memory: &MemoryRecord) -> Result<(), StoreError>;
    /// Every memory of one end user, oldest first (at most 10,000).
    async fn list_memories(
        &self,
        tenant_id: &str,
        user_id: &str,
    ) -> Result<Vec<MemoryRecord>, StoreError>;
    async fn delete_memory(&self, tenant_id: &str, id: &str) -> Result<bool, StoreError>;
}

/// Most items or memories one list returns.
pub(crate) const MAX_LIST: i64 = 10_000;

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ConversationRow {
    id: String,
    tenant_id: String,
    metadata: String,
    summary: Option<String>,
    summary_seq: Option<i64>,
    created_at: i64,
}

impl ConversationRow {
    pub(crate) fn decode(self) -> Result<ConversationRecord, StoreError> {
        Ok(ConversationRecord {
            metadata: crate::codec::from_json(
                "conversation",
                &self.id,
                "metadata",
                &self.metadata,
            )?,
            id: self.id,
            tenant_id: self.tenant_id,
            summary: self.summary,
            summary_seq: self.summary_seq,
            created_at: self.created_at,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ItemRow {
    seq: i64,
    id: String,
    item: String,
    created_at: i64,
}

impl ItemRow {
    pub(crate) fn decode(self) -> Result<ItemRecord, StoreError> {
        Ok(ItemRecord {
            item: crate::codec::from_json("conversation item", &self.id, "item", &self.item)?,
            seq: self.seq,
            id: self.id,
            created_at: self.created_at,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct MemoryRow {
    id: String,
    tenant_id: String,
    user_id: String,
    text: String,
    embedding: String,
    source: String,
    created_at: i64,
}

impl MemoryRow {
    pub(crate) fn decode(self) -> Result<MemoryRecord, StoreError> {
        let embedding: Vec<f32> =
            crate::codec::from_json("memory", &self.id, "embedding", &self.embedding)?;
        Ok(MemoryRecord {
            embedding,
            id: self.id,
            tenant_id: self.tenant_id,
            user_id: self.user_id,
            text: self.text,
            source: self.source,
            created_at: self.created_at,
        })
    }
}

/// A vector as the JSON text the `embedding` column holds.
pub(crate) fn embedding_text(embedding: &[f32]) -> String {
    serde_json::to_string(embedding).unwrap_or_else(|_| "[]".to_owned())
}

pub(crate) const SELECT_ITEM: &str =
    "SELECT seq, id, item, created_at FROM conversation_items WHERE conversation_id = $1";

/// Implements [`MemoryStore`] for `$store`, writing to `self.$writer` and reading from
/// `self.$reader`.
macro_rules! memory_store {
    ($store:ty, writer = $writer:ident, reader = $reader:ident) => {
        #[async_trait::async_trait]
        impl $crate::memory::MemoryStore for $store {
            async fn create_conversation(
                &self,
                conversation: &$crate::memory::ConversationRecord,
                items: &[$crate::memory::ItemRecord],
            ) -> Result<(), $crate::StoreError> {
                let mut tx = self.$writer.begin().await.map_err($crate::codec::db_error)?;
                let inserted = sqlx::query(
                    "INSERT INTO conversations (id, tenant_id, metadata, summary, summary_seq, \
                     created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
                )
                .bind(&conversation.id)
                .bind(&conversation.tenant_id)
                .bind(conversation.metadata.to_string())
                .bind(conversation.summary.as_deref())
                .bind(conversation.summary_seq)
                .bind(conversation.created_at)
                .execute(&mut *tx)
                .await
                .map_err($crate::codec::db_error)?;
                if inserted.rows_affected() == 0 {
                    return Err($crate::StoreError::Conflict {
                        entity: "conversation",
                        id: conversation.id.clone(),
                    });
                }
                for item in items {
                    sqlx::query(
                        "INSERT INTO conversation_items (conversation_id, id, item, \
                         created_at) VALUES ($1, $2, $3, $4)",
                    )
                    .bind(&conversation.id)
                    .bind(&item.id)
                    .bind(item.item.to_string())
                    .bind(item.created_at)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::codec::db_error)?;
                }
                tx.commit().await.map_err($crate::codec::db_error)
            }

            async fn get_conversation(
                &self,
                tenant_id: &str,
                id: &str,
            ) -> Result<Option<$crate::memory::ConversationRecord>, $crate::StoreError> {
                let row: Option<$crate::memory::ConversationRow> = sqlx::query_as(
                    "SELECT id, tenant_id, metadata, summary, summary_seq, created_at \
                     FROM conversations WHERE tenant_id = $1 AND id = $2",
                )
                .bind(tenant_id)
                .bind(id)
                .fetch_optional(&self.$reader)
                .await
                .map_err($crate::codec::db_error)?;
                row.map($crate::memory::ConversationRow::decode).transpose()
            }

            async fn update_conversation(
                &self,
                conversation: &$crate::memory::ConversationRecord,
            ) -> Result<bool, $crate::StoreError> {
                let updated = sqlx::query(
                    "UPDATE conversations SET metadata = $3, summary = $4, summary_seq = $5 \
                     WHERE tenant_id = $1 AND id = $2",
                )
                .bind(&conversation.tenant_id)
                .bind(&conversation.id)
                .bind(conversation.metadata.to_string())
                .bind(conversation.summary.as_deref())
                .bind(conversation.summary_seq)
                .execute(&self.$writer)
                .await
                .map_err($crate::codec::db_error)?;
                Ok(updated.rows_affected() == 1)
            }

            async fn delete_conversation(
                &self,
                tenant_id: &str,
                id: &str,
            ) -> Result<bool, $crate::StoreError> {
                let deleted =
                    sqlx::query("DELETE FROM conversations WHERE tenant_id = $1 AND id = $2")
                        .bind(tenant_id)
                        .bind(id)
                        .execute(&self.$writer)
                        .await
                        .map_err($crate::codec::db_error)?;
                Ok(deleted.rows_affected() == 1)
            }

            async fn append_items(
                &self,
                tenant_id: &str,
                conversation_id: &str,
                items: &[$crate::memory::ItemRecord],
            ) -> Result<bool, $crate::StoreError> {
                let mut tx = self.$writer.begin().await.map_err($crate::codec::db_error)?;
                let found: Option<(String,)> = sqlx::query_as(
                    "SELECT id FROM conversations WHERE tenant_id = $1 AND id = $2",
                )
                .bind(tenant_id)
                .bind(conversation_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err($crate::codec::db_error)?;
                if found.is_none() {
                    return Ok(false);
                }
                for item in items {
                    sqlx::query(
                        "INSERT INTO conversation_items (conversation_id, id, item, \
                         created_at) VALUES ($1, $2, $3, $4)",
                    )
                    .bind(conversation_id)
                    .bind(&item.id)
                    .bind(item.item.to_string())
                    .bind(item.created_at)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::codec::db_error)?;
                }
                tx.commit().await.map_err($crate::codec::db_error)?;
                Ok(true)
            }

            async fn list_items(
                &self,
                conversation_id: &str,
                query: &$crate::memory::ItemQuery,
            ) -> Result<Vec<$crate::memory::ItemRecord>, $crate::StoreError> {
                let (compare, order) = if query.descending {
                    ("<", "DESC")
                } else {
                    (">", "ASC")
                };
                let sql = format!(
                    "{} AND ($2 IS NULL OR seq {compare} (SELECT seq FROM conversation_items \
                     WHERE conversation_id = $1 AND id = $2)) ORDER BY seq {order} LIMIT $3",
                    $crate::memory::SELECT_ITEM
                );
                let rows: Vec<$crate::memory::ItemRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(conversation_id)
                    .bind(query.after.as_deref())
                    .bind(i64::from(query.limit).clamp(1, $crate::memory::MAX_LIST))
                    .fetch_all(&self.$reader)
                    .await
                    .map_err($crate::codec::db_error)?;
                rows.into_iter()
                    .map($crate::memory::ItemRow::decode)
                    .collect()
            }

            async fn get_item(
                &self,
                conversation_id: &str,
                item_id: &str,
            ) -> Result<Option<$crate::memory::ItemRecord>, $crate::StoreError> {
                let sql = format!("{} AND id = $2", $crate::memory::SELECT_ITEM);
                let row: Option<$crate::memory::ItemRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(conversation_id)
                    .bind(item_id)
                    .fetch_optional(&self.$reader)
                    .await
                    .map_err($crate::codec::db_error)?;
                row.map($crate::memory::ItemRow::decode).transpose()
            }

            async fn delete_item(
                &self,
                conversation_id: &str,
                item_id: &str,
            ) -> Result<bool, $crate::StoreError> {
                let deleted = sqlx::query(
                    "DELETE FROM conversation_items WHERE conversation_id = $1 AND id = $2",
                )
                .bind(conversation_id)
                .bind(item_id)
                .execute(&self.$writer)
                .await
                .map_err($crate::codec::db_error)?;
                Ok(deleted.rows_affected() == 1)
            }

            async fn save_memory(
                &self,
                memory: &$crate::memory::MemoryRecord,
            ) -> Result<(), $crate::StoreError> {
                let inserted = sqlx::query(
                    "INSERT INTO memories (id, tenant_id, user_id, text, embedding, source, \
                     created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
                )
                .bind(&memory.id)
                .bind(&memory.tenant_id)
                .bind(&memory.user_id)
                .bind(&memory.text)
                .bind($crate::memory::embedding_text(&memory.embedding))
                .bind(&memory.source)
                .bind(memory.created_at)
                .execute(&self.$writer)
                .await
                .map_err($crate::codec::db_error)?;
                if inserted.rows_affected() == 0 {
                    return Err($crate::StoreError::Conflict {
                        entity: "memory",
                        id: memory.id.clone(),
                    });
                }
                Ok(())
            }

            async fn list_memories(
                &self,
                tenant_id: &str,
                user_id: &str,
            ) -> Result<Vec<$crate::memory::MemoryRecord>, $crate::StoreError> {
                let rows: Vec<$crate::memory::MemoryRow> = sqlx::query_as(
                    "SELECT id, tenant_id, user_id, text, embedding, source, created_at \
                     FROM memories WHERE tenant_id = $1 AND user_id = $2 \
                     ORDER BY created_at, id LIMIT $3",
                )
                .bind(tenant_id)
                .bind(user_id)
                .bind($crate::memory::MAX_LIST)
                .fetch_all(&self.$reader)
                .await
                .map_err($crate::codec::db_error)?;
                rows.into_iter()
                    .map($crate::memory::MemoryRow::decode)
                    .collect()
            }

            async fn delete_memory(
                &self,
                tenant_id: &str,
                id: &str,
            ) -> Result<bool, $crate::StoreError> {
                let deleted = sqlx::query("DELETE FROM memories WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant_id)
                    .bind(id)
                    .execute(&self.$writer)
                    .await
                    .map_err($crate::codec::db_error)?;
                Ok(deleted.rows_affected() == 1)
            }
        }
    };
}

pub(crate) use memory_store;
