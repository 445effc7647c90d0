//! [`PromptStore`]: the versions of prompt templates operators save through the admin API.
//! One macro body serves both backends.

use async_trait::async_trait;
use serde_json::Value;

use crate::error::StoreError;
use crate::model::{PageRequest, UnixMillis};

/// One saved version of a prompt template.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptRecord {
    /// The name requests use.
    pub id: String,
    /// 1, 2, …; a new version is the latest plus one.
    pub version: i64,
    /// The template document (sections, variables, tenants), as the admin API took it.
    pub template: Value,
    pub created_at: UnixMillis,
}

/// Guarantees, for every implementation: writes that returned `Ok` are durable; versions are
/// immutable — `save_prompt` fails with [`StoreError::Conflict`] when the (id, version) exists,
/// so two operators saving the next version at once cannot both succeed; the latest version
/// is the highest; lists are ordered by id, versions ascending.
#[async_trait]
pub trait PromptStore: Send + Sync {
    async fn save_prompt(&self, prompt: &PromptRecord) -> Result<(), StoreError>;
    /// `version`, or the latest when `None`.
    async fn get_prompt(
        &self,
        id: &str,
        version: Option<i64>,
    ) -> Result<Option<PromptRecord>, StoreError>;
    /// The latest version of each prompt, paged by id.
    async fn list_prompts(&self, page: &PageRequest) -> Result<Vec<PromptRecord>, StoreError>;
    /// Every version of one prompt, oldest first.
    async fn list_prompt_versions(&self, id: &str) -> Result<Vec<PromptRecord>, StoreError>;
    /// Deletes every version; returns whether there was any.
    async fn delete_prompt(&self, id: &str) -> Result<bool, StoreError>;
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct PromptRow {
    id: String,
    version: i64,
    template: String,
    created_at: i64,
}

impl PromptRow {
    pub(crate) fn decode(self) -> Result<PromptRecord, StoreError> {
        Ok(PromptRecord {
            template: crate::codec::from_json("prompt", &self.id, "template", &self.template)?,
            id: self.id,
            version: self.version,
            created_at: self.created_at,
        })
    }
}

/// Implements [`PromptStore`] for `$store`, writing to `self.$writer` and reading from
/// `self.$reader`.
macro_rules! prompt_store {
    ($store:ty, writer = $writer:ident, reader = $reader:ident) => {
        #[async_trait::async_trait]
        impl $crate::prompts::PromptStore for $store {
            async fn save_prompt(
                &self,
                prompt: &$crate::prompts::PromptRecord,
            ) -> Result<(), $crate::StoreError> {
                let inserted = sqlx::query(
                    "INSERT INTO prompt_versions (id, version, template, created_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (id, version) DO NOTHING",
                )
                .bind(&prompt.id)
                .bind(prompt.version)
                .bind(prompt.template.to_string())
                .bind(prompt.created_at)
                .execute(&self.$writer)
                .await
                .map_err($crate::codec::db_error)?;
                if inserted.rows_affected() == 0 {
                    return Err($crate::StoreError::Conflict {
                        entity: "prompt version",
                        id: format!("{}@{}", prompt.id, prompt.version),
                    });
                }
                Ok(())
            }

            async fn get_prompt(
                &self,
                id: &str,
                version: Option<i64>,
            ) -> Result<Option<$crate::prompts::PromptRecord>, $crate::StoreError> {
                let row: Option<$crate::prompts::PromptRow> = sqlx::query_as(
                    "SELECT id, version, template, created_at FROM prompt_versions \
                     WHERE id = $1 AND ($2 IS NULL OR version = $2) \
                     ORDER BY version DESC LIMIT 1",
                )
                .bind(id)
                .bind(version)
                .fetch_optional(&self.$reader)
                .await
                .map_err($crate::codec::db_error)?;
                row.map($crate::prompts::PromptRow::decode).transpose()
            }

            async fn list_prompts(
                &self,
                page: &$crate::PageRequest,
            ) -> Result<Vec<$crate::prompts::PromptRecord>, $crate::StoreError> {
                let rows: Vec<$crate::prompts::PromptRow> = sqlx::query_as(
                    "SELECT p.id, p.version, p.template, p.created_at FROM prompt_versions p \
                     JOIN (SELECT id, MAX(version) AS version FROM prompt_versions \
                           WHERE ($1 IS NULL OR id > $1) GROUP BY id) latest \
                       ON latest.id = p.id AND latest.version = p.version \
                     ORDER BY p.id LIMIT $2",
                )
                .bind(page.after.as_deref())
                .bind(i64::from(page.limit.clamp(1, 1000)))
                .fetch_all(&self.$reader)
                .await
                .map_err($crate::codec::db_error)?;
                rows.into_iter()
                    .map($crate::prompts::PromptRow::decode)
                    .collect()
            }

            async fn list_prompt_versions(
                &self,
                id: &str,
            ) -> Result<Vec<$crate::prompts::PromptRecord>, $crate::StoreError> {
                let rows: Vec<$crate::prompts::PromptRow> = sqlx::query_as(
                    "SELECT id, version, template, created_at FROM prompt_versions \
                     WHERE id = $1 ORDER BY version",
                )
                .bind(id)
                .fetch_all(&self.$reader)
                .await
                .map_err($crate::codec::db_error)?;
                rows.into_iter()
                    .map($crate::prompts::PromptRow::decode)
                    .collect()
            }

            async fn delete_prompt(&self, id: &str) -> Result<bool, $crate::StoreError> {
                let deleted = sqlx::query("DELETE FROM prompt_versions WHERE id = $1")
                    .bind(id)
                    .execute(&self.$writer)
                    .await
                    .map_err($crate::codec::db_error)?;
                Ok(deleted.rows_affected() > 0)
            }
        }
    };
}

pub(crate) use prompt_store;
