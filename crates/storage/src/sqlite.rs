//! The SQLite backend: one file, WAL journal, every commit synced to disk. The audit log's
//! statements are in `sqlite_audit`.
//!
//! Writes go through a pool of one connection, so they queue in the process instead of
//! contending for SQLite's write lock; reads use a separate small pool and, thanks to WAL,
//! never wait for a writer.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::MetadataStore;
use crate::codec::{
    KeyRow, TenantRow, TotalsRow, db_error, key_insert_outcome, key_update_outcome, migrate_error,
    page_limit, upsert_usage, usage_in_key_order,
};
use crate::error::StoreError;
use crate::model::{ApiKey, PageRequest, Tenant, UnixMillis, UsageRecord, UsageScope, UsageTotals};

/// How long a statement waits for a lock held by another process before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a call waits for a pooled connection (writers queue here).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
/// Concurrent readers.
const READ_CONNECTIONS: u32 = 4;

/// [`MetadataStore`] and [`crate::AuditLog`] in an SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(crate) writer: SqlitePool,
    pub(crate) reader: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating it and its parent directories if missing) the database at `path` and
    /// brings its schema up to date.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the file cannot be created or opened, and
    /// [`StoreError::Database`] when a migration fails.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            tokio::fs::create_dir_all(parent).await.map_err(|err| {
                StoreError::Unavailable(format!("cannot create {}: {err}", parent.display()))
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL syncs the WAL on every commit: a write that returned Ok survives a crash or
            // power loss, which NORMAL does not promise.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let unavailable = |err: sqlx::Error| {
            StoreError::Unavailable(format!(
                "cannot open SQLite database {}: {err}",
                path.display()
            ))
        };
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await
            .map_err(unavailable)?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&writer)
            .await
            .map_err(migrate_error)?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(unavailable)?;
        tracing::debug!(path = %path.display(), "opened SQLite metadata store");
        Ok(Self { writer, reader })
    }

    /// Closes every connection, waiting for the ones in use to come back.
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}

/// The columns of [`TenantRow`], as a literal for `concat!`.
macro_rules! select_tenant {
    () => {
        "SELECT id, name, limits, budgets, metadata, created_at, updated_at, revoked_at \
         FROM tenants"
    };
}

/// The columns of [`KeyRow`], as a literal for `concat!`.
macro_rules! select_key {
    () => {
        "SELECT id, tenant_id, name, secret_sha256, secret_hint, scopes, limits, budgets, \
         metadata, expires_at, created_at, updated_at, revoked_at FROM api_keys"
    };
}

/// Sums of the usage ledger; the caller appends the scope condition.
macro_rules! select_totals {
    () => {
        "SELECT COALESCE(SUM(requests), 0) AS requests, \
         COALESCE(SUM(input_tokens + output_tokens), 0) AS tokens, \
         COALESCE(SUM(cost_nanos), 0) AS cost_nanos FROM usage"
    };
}

#[async_trait]
impl MetadataStore for SqliteStore {
    async fn create_tenant(&self, tenant: &Tenant) -> Result<(), StoreError> {
        let row = TenantRow::encode(tenant)?;
        let result = row
            .bind(sqlx::query(
                "INSERT INTO tenants (id, name, limits, budgets, metadata, created_at, updated_at, \
             revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
            ))
            .execute(&self.writer)
            .await
            .map_err(db_error)?;
        if result.rows_affected() == 0 {
            return Err(StoreError::Conflict {
                entity: "tenant",
                id: tenant.id.clone(),
            });
        }
        Ok(())
    }

    async fn get_tenant(&self, id: &str) -> Result<Option<Tenant>, StoreError> {
        let row: Option<TenantRow> = sqlx::query_as(concat!(select_tenant!(), " WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_error)?;
        row.map(TenantRow::decode).transpose()
    }

    async fn list_tenants(&self, page: &PageRequest) -> Result<Vec<Tenant>, StoreError> {
        let limit = page_limit(page);
        let query = match &page.after {
            Some(after) => sqlx::query_as(concat!(
                select_tenant!(),
                " WHERE id > ? ORDER BY id LIMIT ?"
            ))
            .bind(after.as_str())
            .bind(limit),
            None => sqlx::query_as(concat!(select_tenant!(), " ORDER BY id LIMIT ?")).bind(limit),
        };
        let rows: Vec<TenantRow> = query.fetch_all(&self.reader).await.map_err(db_error)?;
        rows.into_iter().map(TenantRow::decode).collect()
    }

    async fn update_tenant(&self, tenant: &Tenant) -> Result<bool, StoreError> {
        let row = TenantRow::encode(tenant)?;
        let result = row
            .bind(sqlx::query(
                "UPDATE tenants SET name = ?2, limits = ?3, budgets = ?4, metadata = ?5, \
             created_at = ?6, updated_at = ?7, revoked_at = ?8 WHERE id = ?1",
            ))
            .execute(&self.writer)
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected() > 0)
    }

    async fn create_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        let row = KeyRow::encode(key)?;
        let result = row
            .bind(sqlx::query(
                "INSERT INTO api_keys (id, tenant_id, name, secret_sha256, secret_hint, scopes, \
             limits, budgets, metadata, expires_at, created_at, updated_at, revoked_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
            ))
            .execute(&self.writer)
            .await;
        key_insert_outcome(key, result.map(|done| done.rows_affected()))
    }

    async fn get_key(&self, id: &str) -> Result<Option<ApiKey>, StoreError> {
        let row: Option<KeyRow> = sqlx::query_as(concat!(select_key!(), " WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_error)?;
        row.map(KeyRow::decode).transpose()
    }

    async fn list_keys(
        &self,
        tenant_id: Option<&str>,
        page: &PageRequest,
    ) -> Result<Vec<ApiKey>, StoreError> {
        let limit = page_limit(page);
        let query = match (tenant_id, &page.after) {
            (Some(tenant_id), Some(after)) => sqlx::query_as(concat!(
                select_key!(),
                " WHERE tenant_id = ? AND id > ? ORDER BY id LIMIT ?"
            ))
            .bind(tenant_id)
            .bind(after.as_str()),
            (Some(tenant_id), None) => sqlx::query_as(concat!(
                select_key!(),
                " WHERE tenant_id = ? ORDER BY id LIMIT ?"
            ))
            .bind(tenant_id),
            (None, Some(after)) => {
                sqlx::query_as(concat!(select_key!(), " WHERE id > ? ORDER BY id LIMIT ?"))
                    .bind(after.as_str())
            }
            (None, None) => sqlx::query_as(concat!(select_key!(), " ORDER BY id LIMIT ?")),
        };
        let rows: Vec<KeyRow> = query
            .bind(limit)
            .fetch_all(&self.reader)
            .await
            .map_err(db_error)?;
        rows.into_iter().map(KeyRow::decode).collect()
    }

    async fn update_key(&self, key: &ApiKey) -> Result<bool, StoreError> {
        let row = KeyRow::encode(key)?;
        let result = row
            .bind(sqlx::query(
            "UPDATE api_keys SET tenant_id = ?2, name = ?3, secret_sha256 = ?4, secret_hint = ?5, \
             scopes = ?6, limits = ?7, budgets = ?8, metadata = ?9, expires_at = ?10, \
             created_at = ?11, updated_at = ?12, revoked_at = ?13 WHERE id = ?1",
            ))
        .execute(&self.writer)
        .await;
        key_update_outcome(key, result.map(|done| done.rows_affected()))
    }

    async fn record_usage(&self, rows: &[UsageRecord]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        for row in usage_in_key_order(rows) {
            upsert_usage(row)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)
    }

    async fn usage_totals(
        &self,
        scope: UsageScope<'_>,
        since: UnixMillis,
    ) -> Result<UsageTotals, StoreError> {
        let (query, id) = match scope {
            UsageScope::Tenant(id) => (
                sqlx::query_as(concat!(
                    select_totals!(),
                    " WHERE tenant_id = ? AND hour >= ?"
                )),
                id,
            ),
            UsageScope::Key(id) => (
                sqlx::query_as(concat!(select_totals!(), " WHERE key_id = ? AND hour >= ?")),
                id,
            ),
        };
        let totals: TotalsRow = query
            .bind(id)
            .bind(since)
            .fetch_one(&self.reader)
            .await
            .map_err(db_error)?;
        totals.decode(id)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map_err(db_error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::SqliteStore;

    /// `synchronous` and `foreign_keys` are per connection, so only the store's own
    /// connections can show them.
    #[tokio::test(flavor = "multi_thread")]
    async fn connections_sync_every_commit_and_check_foreign_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("landfall.db"))
            .await
            .unwrap();
        for pool in [&store.writer, &store.reader] {
            let (synchronous,): (i64,) = sqlx::query_as("PRAGMA synchronous")
                .fetch_one(pool)
                .await
                .unwrap();
            assert_eq!(synchronous, 2, "2 is FULL");
            let (foreign_keys,): (i64,) = sqlx::query_as("PRAGMA foreign_keys")
                .fetch_one(pool)
                .await
                .unwrap();
            assert_eq!(foreign_keys, 1);
            let (journal_mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
                .fetch_one(pool)
                .await
                .unwrap();
            assert_eq!(journal_mode, "wal");
        }
        store.close().await;
    }
}

// One writer connection already orders every transaction, change-log appends included.
crate::knowledge_sql::knowledge_store!(
    SqliteStore,
    writer = writer,
    reader = reader,
    order_changes = "SELECT 1"
);

crate::guardrails::guardrail_store!(SqliteStore, writer = writer, reader = reader);
crate::responses::response_store!(SqliteStore, writer = writer, reader = reader);
crate::prompts::prompt_store!(SqliteStore, writer = writer, reader = reader);
crate::memory::memory_store!(SqliteStore, writer = writer, reader = reader);
