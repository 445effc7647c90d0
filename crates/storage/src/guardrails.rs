//! [`GuardrailStore`]: answers held for human review, and the versions of the rule set that
//! operators change through the admin API. One macro body serves both backends (the
//! statements are the same text on SQLite and PostgreSQL).

use async_trait::async_trait;
use serde_json::Value;

use crate::error::StoreError;
use crate::model::{PageRequest, UnixMillis};

/// An answer held for review.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewRecord {
    pub id: String,
    pub tenant_id: String,
    pub key_id: String,
    pub request_id: String,
    pub model: String,
    /// `pending`, `approved` or `rejected`.
    pub status: String,
    /// The guardrail hits that held it.
    pub hits: Value,
    /// The answer as the model gave it (masked where rules masked).
    pub response: Value,
    /// What the client receives once approved (the answer, or a reviewer's edit).
    pub released: Option<Value>,
    /// The reviewer's note or reason for rejecting.
    pub note: Option<String>,
    pub created_at: UnixMillis,
    pub decided_at: Option<UnixMillis>,
}

/// A decision on a pending review.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewDecision<'a> {
    pub status: &'a str,
    pub released: Option<&'a Value>,
    pub note: Option<&'a str>,
    pub decided_at: UnixMillis,
}

/// One saved version of the operators' rule set (a JSON document of rules and policies).
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSetVersion {
    pub version: i64,
    pub document: Value,
    pub created_at: UnixMillis,
}

/// Guarantees, for every implementation: writes that returned `Ok` are durable;
/// `create_review` fails with [`StoreError::Conflict`] when the id exists; `decide_review`
/// changes only a `pending` review (atomically: of two reviewers deciding at once, one wins)
/// and returns whether it did; `save_rule_set` fails with `Conflict` when the version exists,
/// so two operators editing the same version cannot both save; lists are ordered by id (or
/// version) ascending.
#[async_trait]
pub trait GuardrailStore: Send + Sync {
    async fn create_review(&self, review: &ReviewRecord) -> Result<(), StoreError>;
    async fn get_review(&self, id: &str) -> Result<Option<ReviewRecord>, StoreError>;
    /// Reviews with `status` (all when `None`), paged by id.
    async fn list_reviews(
        &self,
        status: Option<&str>,
        page: &PageRequest,
    ) -> Result<Vec<ReviewRecord>, StoreError>;
    async fn decide_review(
        &self,
        id: &str,
        decision: &ReviewDecision<'_>,
    ) -> Result<bool, StoreError>;

    async fn save_rule_set(&self, version: &RuleSetVersion) -> Result<(), StoreError>;
    async fn latest_rule_set(&self) -> Result<Option<RuleSetVersion>, StoreError>;
    /// Saved versions, oldest first, after `after`.
    async fn list_rule_sets(
        &self,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<RuleSetVersion>, StoreError>;
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ReviewRow {
    id: String,
    tenant_id: String,
    key_id: String,
    request_id: String,
    model: String,
    status: String,
    hits: String,
    response: String,
    released: Option<String>,
    note: Option<String>,
    created_at: i64,
    decided_at: Option<i64>,
}

pub(crate) const SELECT_REVIEW: &str = "SELECT id, tenant_id, key_id, request_id, model, status, \
    hits, response, released, note, created_at, decided_at FROM reviews";

impl ReviewRow {
    pub(crate) fn decode(self) -> Result<ReviewRecord, StoreError> {
        let json = |field: &'static str, text: &str| {
            crate::codec::from_json("review", &self.id, field, text)
        };
        let released = match &self.released {
            Some(text) => Some(json("released", text)?),
            None => None,
        };
        Ok(ReviewRecord {
            hits: json("hits", &self.hits)?,
            response: json("response", &self.response)?,
            released,
            id: self.id,
            tenant_id: self.tenant_id,
            key_id: self.key_id,
            request_id: self.request_id,
            model: self.model,
            status: self.status,
            note: self.note,
            created_at: self.created_at,
            decided_at: self.decided_at,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct RuleSetRow {
    version: i64,
    document: String,
    created_at: i64,
}

impl RuleSetRow {
    pub(crate) fn decode(self) -> Result<RuleSetVersion, StoreError> {
        Ok(RuleSetVersion {
            document: crate::codec::from_json(
                "rule set",
                &self.version.to_string(),
                "document",
                &self.document,
            )?,
            version: self.version,
            created_at: self.created_at,
        })
    }
}

/// Implements [`GuardrailStore`] for `$store`, writing to `self.$writer` and reading from
/// `self.$reader`.
macro_rules! guardrail_store {
    ($store:ty, writer = $writer:ident, reader = $reader:ident) => {
        #[async_trait::async_trait]
        impl $crate::guardrails::GuardrailStore for $store {
            async fn create_review(
                &self,
                review: &$crate::guardrails::ReviewRecord,
            ) -> Result<(), $crate::StoreError> {
                use $crate::codec::db_error;
                let inserted = sqlx::query(
                    "INSERT INTO reviews (id, tenant_id, key_id, request_id, model, status, hits, \
                     response, released, note, created_at, decided_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(&review.id)
                .bind(&review.tenant_id)
                .bind(&review.key_id)
                .bind(&review.request_id)
                .bind(&review.model)
                .bind(&review.status)
                .bind(review.hits.to_string())
                .bind(review.response.to_string())
                .bind(review.released.as_ref().map(ToString::to_string))
                .bind(review.note.as_deref())
                .bind(review.created_at)
                .bind(review.decided_at)
                .execute(&self.$writer)
                .await
                .map_err(db_error)?;
                if inserted.rows_affected() == 0 {
                    return Err($crate::StoreError::Conflict {
                        entity: "review",
                        id: review.id.clone(),
                    });
                }
                Ok(())
            }

            async fn get_review(
                &self,
                id: &str,
            ) -> Result<Option<$crate::guardrails::ReviewRecord>, $crate::StoreError> {
                let sql = format!("{} WHERE id = $1", $crate::guardrails::SELECT_REVIEW);
                let row: Option<$crate::guardrails::ReviewRow> =
                    sqlx::query_as(sqlx::AssertSqlSafe(sql))
                        .bind(id)
                        .fetch_optional(&self.$reader)
                        .await
                        .map_err($crate::codec::db_error)?;
                row.map($crate::guardrails::ReviewRow::decode).transpose()
            }

            async fn list_reviews(
                &self,
                status: Option<&str>,
                page: &$crate::PageRequest,
            ) -> Result<Vec<$crate::guardrails::ReviewRecord>, $crate::StoreError> {
                let sql = format!(
                    "{} WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR id > $2) \
                     ORDER BY id LIMIT $3",
                    $crate::guardrails::SELECT_REVIEW
                );
                let rows: Vec<$crate::guardrails::ReviewRow> =
                    sqlx::query_as(sqlx::AssertSqlSafe(sql))
                        .bind(status)
                        .bind(page.after.as_deref())
                        .bind(i64::from(page.limit.clamp(1, 1000)))
                        .fetch_all(&self.$reader)
                        .await
                        .map_err($crate::codec::db_error)?;
                rows.into_iter()
                    .map($crate::guardrails::ReviewRow::decode)
                    .collect()
            }

            async fn decide_review(
                &self,
                id: &str,
                decision: &$crate::guardrails::ReviewDecision<'_>,
            ) -> Result<bool, $crate::StoreError> {
                let updated = sqlx::query(
                    "UPDATE reviews SET status = $2, released = $3, note = $4, decided_at = $5 \
                     WHERE id = $1 AND status = 'pending'",
                )
                .bind(id)
                .bind(decision.status)
                .bind(decision.released.map(ToString::to_string))
                .bind(decision.note)
                .bind(decision.decided_at)
                .execute(&self.$writer)
                .await
                .map_err($crate::codec::db_error)?;
                Ok(updated.rows_affected() == 1)
            }

            async fn save_rule_set(
                &self,
                version: &$crate::guardrails::RuleSetVersion,
            ) -> Result<(), $crate::StoreError> {
                let inserted = sqlx::query(
                    "INSERT INTO guardrail_versions (version, document, created_at) \
                     VALUES ($1, $2, $3) ON CONFLICT (version) DO NOTHING",
                )
                .bind(version.version)
                .bind(version.document.to_string())
                .bind(version.created_at)
                .execute(&self.$writer)
                .await
                .map_err($crate::codec::db_error)?;
                if inserted.rows_affected() == 0 {
                    return Err($crate::StoreError::Conflict {
                        entity: "rule set version",
                        id: version.version.to_string(),
                    });
                }
                Ok(())
            }

            async fn latest_rule_set(
                &self,
            ) -> Result<Option<$crate::guardrails::RuleSetVersion>, $crate::StoreError> {
                let row: Option<$crate::guardrails::RuleSetRow> = sqlx::query_as(
                    "SELECT version, document, created_at FROM guardrail_versions \
                     ORDER BY version DESC LIMIT 1",
                )
                .fetch_optional(&self.$reader)
                .await
                .map_err($crate::codec::db_error)?;
                row.map($crate::guardrails::RuleSetRow::decode).transpose()
            }

            async fn list_rule_sets(
                &self,
                after: Option<i64>,
                limit: u32,
            ) -> Result<Vec<$crate::guardrails::RuleSetVersion>, $crate::StoreError> {
                let rows: Vec<$crate::guardrails::RuleSetRow> = sqlx::query_as(
                    "SELECT version, document, created_at FROM guardrail_versions \
                     WHERE version > $1 ORDER BY version LIMIT $2",
                )
                .bind(after.unwrap_or(i64::MIN))
                .bind(i64::from(limit.clamp(1, 1000)))
                .fetch_all(&self.$reader)
                .await
                .map_err($crate::codec::db_error)?;
                rows.into_iter()
                    .map($crate::guardrails::RuleSetRow::decode)
                    .collect()
            }
        }
    };
}

pub(crate) use guardrail_store;
