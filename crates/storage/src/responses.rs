//! [`ResponseStore`]: responses of `/v1/responses` kept for `GET`, `DELETE` and
//! `previous_response_id`. One macro body serves both backends.

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
        }
    };
}

pub(crate) use response_store;
