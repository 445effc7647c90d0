//! The PostgreSQL backend, for replicas that share one database.
//!
//! JSON columns are JSONB; they are read as `::text` and written from text with `::jsonb`, so
//! the decoding in [`crate::codec`] is the same as SQLite's. The audit log's statements are in
//! `postgres_audit`.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

use crate::MetadataStore;
use crate::codec::{
    KeyRow, TenantRow, TotalsRow, db_error, key_insert_outcome, key_update_outcome, migrate_error,
    page_limit, upsert_usage, usage_in_key_order,
};
use crate::error::StoreError;
use crate::model::{ApiKey, PageRequest, Tenant, UnixMillis, UsageRecord, UsageScope, UsageTotals};

/// How long opening a connection may take, at start and later in the pool, before the store
/// reports itself unavailable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Server-side cap on one statement, so a stuck query cannot hold a request forever.
const STATEMENT_TIMEOUT: &str = "30s";
/// Tries at schema changes (migrations, dropping a test schema) that PostgreSQL picks as a
/// deadlock victim.
const MIGRATION_ATTEMPTS: u32 = 5;

/// [`MetadataStore`] and [`crate::AuditLog`] in a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pub(crate) pool: PgPool,
    /// The schema given to [`PostgresStore::connect_in_schema`], if any.
    schema: Option<String>,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`) with a pool of up to
    /// `max_connections`, and brings the schema up to date.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the URL is invalid or the server cannot be reached
    /// within 5 s, and [`StoreError::Database`] when a migration fails.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        Self::open(url, max_connections, None).await
    }

    /// Like [`PostgresStore::connect`], but keeps every table in `schema` (created if missing)
    /// by setting `search_path` on each connection. Meant for tests, each of which uses a fresh
    /// schema and drops it with [`PostgresStore::drop_schema`].
    ///
    /// # Errors
    /// As [`PostgresStore::connect`], and [`StoreError::Database`] when `schema` is not a plain
    /// lowercase identifier (`[a-z_][a-z0-9_]*`, at most 63 bytes).
    pub async fn connect_in_schema(
        url: &str,
        max_connections: u32,
        schema: &str,
    ) -> Result<Self, StoreError> {
        if !is_plain_identifier(schema) {
            return Err(StoreError::Database(format!(
                "schema name `{schema}` must match [a-z_][a-z0-9_]* and be at most 63 bytes"
            )));
        }
        Self::open(url, max_connections, Some(schema.to_owned())).await
    }

    /// Drops the schema given to [`PostgresStore::connect_in_schema`] with everything in it,
    /// then closes the pool. For tests. Does nothing but close the pool for a store from
    /// [`PostgresStore::connect`]: it never drops a shared schema.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Database`] when the drop fails.
    pub async fn drop_schema(&self) -> Result<(), StoreError> {
        if let Some(schema) = &self.schema {
            // The name was checked by `is_plain_identifier`, so quoting it is enough.
            let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
            // Concurrent drops of other schemas can deadlock with this one; retry as asked.
            let mut attempt = 0;
            loop {
                attempt += 1;
                match sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                    .execute(&self.pool)
                    .await
                {
                    Err(err) if attempt < MIGRATION_ATTEMPTS && is_deadlock_error(&err) => {
                        tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
                    }
                    result => {
                        result.map_err(db_error)?;
                        break;
                    }
                };
            }
        }
        self.pool.close().await;
        Ok(())
    }

    /// Closes every connection, waiting for the ones in use to come back.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn open(
        url: &str,
        max_connections: u32,
        schema: Option<String>,
    ) -> Result<Self, StoreError> {
        let mut options: PgConnectOptions = url
            .parse()
            .map_err(|err| StoreError::Unavailable(format!("invalid PostgreSQL URL: {err}")))?;
        options = options.options([("statement_timeout", STATEMENT_TIMEOUT)]);
        if let Some(schema) = &schema {
            options = options.options([("search_path", schema.as_str())]);
        }
        let server = describe_server(&options);

        // A first connection of our own, so that a server that is down or unreachable yields
        // its real cause (the pool would only report a timeout) within the timeout.
        let mut conn = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options))
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!(
                    "cannot connect to PostgreSQL at {server}: no answer within {} s",
                    CONNECT_TIMEOUT.as_secs()
                ))
            })?
            .map_err(|err| {
                StoreError::Unavailable(format!("cannot connect to PostgreSQL at {server}: {err}"))
            })?;
        if let Some(schema) = &schema {
            let sql = format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"");
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .map_err(db_error)?;
        }
        // Schema changes can deadlock with DDL of other sessions (another schema being dropped,
        // say); PostgreSQL rolls the victim back and asks for a retry.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match sqlx::migrate!("./migrations/postgres").run(&mut conn).await {
                Err(err) if attempt < MIGRATION_ATTEMPTS && is_deadlock(&err) => {
                    tracing::debug!(attempt, "migration deadlocked; retrying");
                    tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
                }
                result => break result.map_err(migrate_error)?,
            }
        }
        // Closing politely is best effort; the server notices a dropped socket anyway.
        if let Err(err) = conn.close().await {
            tracing::debug!(%err, "closing the PostgreSQL migration connection failed");
        }

        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|err| {
                StoreError::Unavailable(format!("cannot connect to PostgreSQL at {server}: {err}"))
            })?;
        tracing::debug!(%server, "connected to PostgreSQL metadata store");
        Ok(Self { pool, schema })
    }
}

/// `host:port/database` (never the password), for error messages.
fn describe_server(options: &PgConnectOptions) -> String {
    let host = match options.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    };
    match options.get_database() {
        Some(database) => format!("{host}/{database}"),
        None => host,
    }
}

/// SQLSTATE 40P01: the transaction was chosen as a deadlock victim and rolled back.
fn is_deadlock(err: &sqlx::migrate::MigrateError) -> bool {
    let (sqlx::migrate::MigrateError::Execute(err)
    | sqlx::migrate::MigrateError::ExecuteMigration(err, _)) = err
    else {
        return false;
    };
    is_deadlock_error(err)
}

fn is_deadlock_error(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(|db| db.code())
        .is_some_and(|code| code == "40P01")
}

fn is_plain_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    name.len() <= 63
        && (first.is_ascii_lowercase() || first == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The columns of [`TenantRow`], as a literal for `concat!`.
macro_rules! select_tenant {
    () => {
        "SELECT id, name, limits::text AS limits, budgets::text AS budgets, \
         metadata::text AS metadata, created_at, updated_at, revoked_at FROM tenants"
    };
}

/// The columns of [`KeyRow`], as a literal for `concat!`.
macro_rules! select_key {
    () => {
        "SELECT id, tenant_id, name, secret_sha256, secret_hint, scopes::text AS scopes, \
         limits::text AS limits, budgets::text AS budgets, metadata::text AS metadata, \
         expires_at, created_at, updated_at, revoked_at FROM api_keys"
    };
}

/// Sums of the usage ledger; the caller appends the scope condition. `SUM(bigint)` is
/// `numeric` in PostgreSQL: the cast back fails loudly rather than losing precision.
macro_rules! select_totals {
    () => {
        "SELECT COALESCE(SUM(requests), 0)::BIGINT AS requests, \
         COALESCE(SUM(input_tokens + output_tokens), 0)::BIGINT AS tokens, \
         COALESCE(SUM(cost_nanos), 0)::BIGINT AS cost_nanos FROM usage"
    };
}

#[async_trait]
impl MetadataStore for PostgresStore {
    async fn create_tenant(&self, tenant: &Tenant) -> Result<(), StoreError> {
        let row = TenantRow::encode(tenant)?;
        let result = row
            .bind(sqlx::query(
                "INSERT INTO tenants (id, name, limits, budgets, metadata, created_at, updated_at, \
             revoked_at) VALUES ($1, $2, $3::jsonb, $4::jsonb, $5::jsonb, $6, $7, $8) \
             ON CONFLICT (id) DO NOTHING",
            ))
            .execute(&self.pool)
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
        let row: Option<TenantRow> = sqlx::query_as(concat!(select_tenant!(), " WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        row.map(TenantRow::decode).transpose()
    }

    async fn list_tenants(&self, page: &PageRequest) -> Result<Vec<Tenant>, StoreError> {
        let limit = page_limit(page);
        let query = match &page.after {
            Some(after) => sqlx::query_as(concat!(
                select_tenant!(),
                " WHERE id > $1 ORDER BY id LIMIT $2"
            ))
            .bind(after.as_str()),
            None => sqlx::query_as(concat!(select_tenant!(), " ORDER BY id LIMIT $1")),
        };
        let rows: Vec<TenantRow> = query
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.into_iter().map(TenantRow::decode).collect()
    }

    async fn update_tenant(&self, tenant: &Tenant) -> Result<bool, StoreError> {
        let row = TenantRow::encode(tenant)?;
        let result = row
            .bind(sqlx::query(
                "UPDATE tenants SET name = $2, limits = $3::jsonb, budgets = $4::jsonb, \
             metadata = $5::jsonb, created_at = $6, updated_at = $7, revoked_at = $8 \
             WHERE id = $1",
            ))
            .execute(&self.pool)
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
             VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8::jsonb, $9::jsonb, $10, $11, \
             $12, $13) ON CONFLICT (id) DO NOTHING",
            ))
            .execute(&self.pool)
            .await;
        key_insert_outcome(key, result.map(|done| done.rows_affected()))
    }

    async fn get_key(&self, id: &str) -> Result<Option<ApiKey>, StoreError> {
        let row: Option<KeyRow> = sqlx::query_as(concat!(select_key!(), " WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
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
                " WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3"
            ))
            .bind(tenant_id)
            .bind(after.as_str()),
            (Some(tenant_id), None) => sqlx::query_as(concat!(
                select_key!(),
                " WHERE tenant_id = $1 ORDER BY id LIMIT $2"
            ))
            .bind(tenant_id),
            (None, Some(after)) => sqlx::query_as(concat!(
                select_key!(),
                " WHERE id > $1 ORDER BY id LIMIT $2"
            ))
            .bind(after.as_str()),
            (None, None) => sqlx::query_as(concat!(select_key!(), " ORDER BY id LIMIT $1")),
        };
        let rows: Vec<KeyRow> = query
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.into_iter().map(KeyRow::decode).collect()
    }

    async fn update_key(&self, key: &ApiKey) -> Result<bool, StoreError> {
        let row = KeyRow::encode(key)?;
        let result = row
            .bind(sqlx::query(
                "UPDATE api_keys SET tenant_id = $2, name = $3, secret_sha256 = $4, \
             secret_hint = $5, scopes = $6::jsonb, limits = $7::jsonb, budgets = $8::jsonb, \
             metadata = $9::jsonb, expires_at = $10, created_at = $11, updated_at = $12, \
             revoked_at = $13 WHERE id = $1",
            ))
            .execute(&self.pool)
            .await;
        key_update_outcome(key, result.map(|done| done.rows_affected()))
    }

    async fn record_usage(&self, rows: &[UsageRecord]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(db_error)?;
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
                    " WHERE tenant_id = $1 AND hour >= $2"
                )),
                id,
            ),
            UsageScope::Key(id) => (
                sqlx::query_as(concat!(
                    select_totals!(),
                    " WHERE key_id = $1 AND hour >= $2"
                )),
                id,
            ),
        };
        let totals: TotalsRow = query
            .bind(id)
            .bind(since)
            .fetch_one(&self.pool)
            .await
            .map_err(db_error)?;
        totals.decode(id)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::is_plain_identifier;

    #[test]
    fn schema_names_are_plain_identifiers() {
        for good in ["t", "_x", "landfall_test_0123abc"] {
            assert!(is_plain_identifier(good), "{good}");
        }
        let too_long = "a".repeat(64);
        for bad in ["", "1abc", "A", "a-b", "a\"b", "a;drop", too_long.as_str()] {
            assert!(!is_plain_identifier(bad), "{bad}");
        }
    }
}

// Sequence values are taken before commit, so two appenders could commit out of `seq`
// order and a reader could skip an entry forever; a transaction-scoped advisory lock makes
// change-log appenders commit one at a time. (The key is an arbitrary constant of Landfall's.)
crate::knowledge_sql::knowledge_store!(
    PostgresStore,
    writer = pool,
    reader = pool,
    order_changes = "SELECT pg_advisory_xact_lock(7466118251)"
);

crate::guardrails::guardrail_store!(PostgresStore, writer = pool, reader = pool);
crate::responses::response_store!(PostgresStore, writer = pool, reader = pool);
crate::prompts::prompt_store!(PostgresStore, writer = pool, reader = pool);
crate::memory::memory_store!(PostgresStore, writer = pool, reader = pool);
