//! [`ResponseStore`]: the state of `/v1/responses` runs: responses kept for `GET`, `DELETE`
//! and `previous_response_id`, and tool calls held for approval. One macro body serves both
//! backends.

use async_trait::async_trait;
use serde_json::Value;

use crate::error::StoreError;
use crate::model::UnixMillis;

/// A stored response.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseRecord {
    /// `resp_…`.
    pub id: String,
    pub tenant_id: String,
    pub key_id: String,
    pub model: String,
    pub previous_response_id: Option<String>,
    /// The response object as the client received it.
    pub response: Value,
    /// The conversation after this response (chat messages as JSON), which a later request
    /// continues from.
    pub conversation: Value,
    pub created_at: UnixMillis,
}

/// A tool call waiting for, or decided by, a person.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalRecord {
    /// `apr_…`.
    pub id: String,
    pub tenant_id: String,
    pub key_id: String,
    pub request_id: String,
    /// The tool's name as the model called it.
    pub tool: String,
    /// Its `[tools.NAME]` entry.
    pub entry: String,
    pub arguments: Value,
    /// `pending`, `approved`, `rejected` or `expired`.
    pub status: String,
    /// The reviewer's note.
    pub reason: Option<String>,
    pub created_at: UnixMillis,
    pub decided_at: Option<UnixMillis>,
}

/// Guarantees, for every implementation: writes that returned `Ok` are durable;
/// `save_response` fails with [`StoreError::Conflict`] when the id exists; a response is seen
/// only by its own tenant (`get` and `delete` of another tenant's id find nothing).
#[async_trait]
pub trait ResponseStore: Send + Sync {
    async fn save_response(&self, response: &ResponseRecord) -> Result<(), StoreError>;
    async fn get_response(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<ResponseRecord>, StoreError>;
    /// Returns whether a response was deleted.
    async fn delete_response(&self, tenant_id: &str, id: &str) -> Result<bool, StoreError>;

    async fn create_approval(&self, approval: &ApprovalRecord) -> Result<(), StoreError>;
    async fn get_approval(&self, id: &str) -> Result<Option<ApprovalRecord>, StoreError>;
    /// Approvals with `status` (all when `None`), paged by id.
    async fn list_approvals(
        &self,
        status: Option<&str>,
        page: &crate::PageRequest,
    ) -> Result<Vec<ApprovalRecord>, StoreError>;
    /// Decides a pending approval; `false` when it is not pending any more (decided already,
    /// or expired), so two reviewers cannot both decide.
    async fn decide_approval(
        &self,
        id: &str,
        status: &str,
        reason: Option<&str>,
        decided_at: UnixMillis,
    ) -> Result<bool, StoreError>;
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ApprovalRow {
    id: String,
    tenant_id: String,
    key_id: String,
    request_id: String,
    tool: String,
    entry: String,
    arguments: String,
    status: String,
    reason: Option<String>,
    created_at: i64,
    decided_at: Option<i64>,
}

pub(crate) const SELECT_APPROVAL: &str = "SELECT id, tenant_id, key_id, request_id, tool, entry, \
    arguments, status, reason, created_at, decided_at FROM tool_approvals";

impl ApprovalRow {
    pub(crate) fn decode(self) -> Result<ApprovalRecord, StoreError> {
        Ok(ApprovalRecord {
            arguments: crate::codec::from_json("approval", &self.id, "arguments", &self.arguments)?,
            id: self.id,
            tenant_id: self.tenant_id,
            key_id: self.key_id,
            request_id: self.request_id,
            tool: self.tool,
            entry: self.entry,
            status: self.status,
            reason: self.reason,
            created_at: self.created_at,
            decided_at: self.decided_at,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ResponseRow {
    id: String,
    tenant_id: String,
    key_id: String,
    model: String,
    previous_response_id: Option<String>,
    response: String,
    conversation: String,
    created_at: i64,
}

impl ResponseRow {
    pub(crate) fn decode(self) -> Result<ResponseRecord, StoreError> {
        let json = |field: &'static str, text: &str| {
            crate::codec::from_json("response", &self.id, field, text)
        };
        Ok(ResponseRecord {
            response: json("response", &self.response)?,
            conversation: json("conversation", &self.conversation)?,
            id: self.id,
            tenant_id: self.tenant_id,
            key_id: self.key_id,
            model: self.model,
            previous_response_id: self.previous_response_id,
            created_at: self.created_at,
        })
    }
}

/// Implements [`ResponseStore`] for `$store`, writing to `self.$writer` and reading from
/// `self.$reader`.
macro_rules! response_store {
    ($store:ty, writer = $writer:ident, reader = $reader:ident) => {
        #[async_trait::async_trait]
        impl $crate::responses::ResponseStore for $store {
            async fn save_response(
                &self,
                response: &$crate::responses::ResponseRecord,
            ) -> Result<(), $crate::StoreError> {
                let inserted = sqlx::query(
                    "INSERT INTO responses (id, tenant_id, key_id, model, previous_response_id, \
                     response, conversation, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
                )
                .bind(&response.id)
                .bind(&response.tenant_id)
                .bind(&response.key_id)
                .bind(&response.model)
                .bind(response.previous_response_id.as_deref())
                .bind(response.response.to_string())
                .bind(response.conversation.to_string())
                .bind(response.created_at)
                .execute(&self.$writer)
                .await
                .map_err($crate::codec::db_error)?;
                if inserted.rows_affected() == 0 {
                    return Err($crate::StoreError::Conflict {
                        entity: "response",
                        id: response.id.clone(),
                    });
                }
                Ok(())
            }

            async fn get_response(
                &self,
                tenant_id: &str,
                id: &str,
            ) -> Result<Option<$crate::responses::ResponseRecord>, $crate::StoreError> {
                let row: Option<$crate::responses::ResponseRow> = sqlx::query_as(
                    "SELECT id, tenant_id, key_id, model, previous_response_id, response, \
                     conversation, created_at FROM responses WHERE tenant_id = $1 AND id = $2",
                )
                .bind(tenant_id)
                .bind(id)
                .fetch_optional(&self.$reader)
                .await
                .map_err($crate::codec::db_error)?;
                row.map($crate::responses::ResponseRow::decode).transpose()
            }

            async fn delete_response(
                &self,
                tenant_id: &str,
                id: &str,
            ) -> Result<bool, $crate::StoreError> {
                let deleted = sqlx::query("DELETE FROM responses WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant_id)
                    .bind(id)
                    .execute(&self.$writer)
                    .await
                    .map_err($crate::codec::db_error)?;
                Ok(deleted.rows_affected() == 1)
            }

            async fn create_approval(
                &self,
                approval: &$crate::responses::ApprovalRecord,
            ) -> Result<(), $crate::StoreError> {
                let inserted = sqlx::query(
                    "INSERT INTO tool_approvals (id, tenant_id, key_id, request_id, tool, entry, \
                     arguments, status, reason, created_at, decided_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(&approval.id)
                .bind(&approval.tenant_id)
                .bind(&approval.key_id)
                .bind(&approval.request_id)
                .bind(&approval.tool)
                .bind(&approval.entry)
                .bind(approval.arguments.to_string())
                .bind(&approval.status)
                .bind(approval.reason.as_deref())
                .bind(approval.created_at)
                .bind(approval.decided_at)
                .execute(&self.$writer)
                .await
                .map_err($crate::codec::db_error)?;
                if inserted.rows_affected() == 0 {
                    return Err($crate::StoreError::Conflict {
                        entity: "approval",
                        id: approval.id.clone(),
                    });
                }
                Ok(())
            }

            async fn get_approval(
                &self,
                id: &str,
            ) -> Result<Option<$crate::responses::ApprovalRecord>, $crate::StoreError> {
                let sql = format!("{} WHERE id = $1", $crate::responses::SELECT_APPROVAL);
                let row: Option<$crate::responses::ApprovalRow> =
                    sqlx::query_as(sqlx::AssertSqlSafe(sql))
                        .bind(id)
                        .fetch_optional(&self.$reader)
                        .await
                        .map_err($crate::codec::db_error)?;
                row.map($crate::responses::ApprovalRow::decode).transpose()
            }

            async fn list_approvals(
                &self,
                status: Option<&str>,
                page: &$crate::PageRequest,
            ) -> Result<Vec<$crate::responses::ApprovalRecord>, $crate::StoreError> {
                let sql = format!(
                    "{} WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR id > $2) \
                     ORDER BY id LIMIT $3",
                    $crate::responses::SELECT_APPROVAL
                );
                let rows: Vec<$crate::responses::ApprovalRow> =
                    sqlx::query_as(sqlx::AssertSqlSafe(sql))
                        .bind(status)
                        .bind(page.after.as_deref())
                        .bind(i64::from(page.limit.clamp(1, 1000)))
                        .fetch_all(&self.$reader)
                        .await
                        .map_err($crate::codec::db_error)?;
                rows.into_iter()
                    .map($crate::responses::ApprovalRow::decode)
                    .collect()
            }

            async fn decide_approval(
                &self,
                id: &str,
                status: &str,
                reason: Option<&str>,
                decided_at: $crate::UnixMillis,
            ) -> Result<bool, $crate::StoreError> {
                let updated = sqlx::query(
                    "UPDATE tool_approvals SET status = $2, reason = $3, decided_at = $4 \
                     WHERE id = $1 AND status = 'pending'",
                )
                .bind(id)
                .bind(status)
                .bind(reason)
                .bind(decided_at)
                .execute(&self.$writer)
                .await
                .map_err($crate::codec::db_error)?;
                Ok(updated.rows_affected() == 1)
            }
        }
    };
}

pub(crate) use response_store;
