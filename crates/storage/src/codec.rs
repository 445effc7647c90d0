//! What both backends share: records as rows of primitive values, the conversions between the
//! two, paging, and the mapping of `sqlx` errors to [`StoreError`].
//!
//! JSON columns travel as strings on both backends (TEXT in SQLite, `::text`/`::jsonb` casts
//! in PostgreSQL), so decoding them, and reporting which record failed, happens here once.

use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::query::Query;
use sqlx::{Database, Encode, Type};

use crate::error::StoreError;
use crate::model::{ApiKey, PageRequest, Tenant, UsageRecord, UsageTotals};

/// Page size when the request says 0.
const DEFAULT_PAGE_LIMIT: u32 = 100;
/// The most items one page returns.
const MAX_PAGE_LIMIT: u32 = 1000;

/// A tenant as stored.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct TenantRow {
    pub id: String,
    pub name: String,
    pub limits: String,
    pub budgets: String,
    pub metadata: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub revoked_at: Option<i64>,
}

impl TenantRow {
    /// Binds every column in table order, `id` first: the order of each tenant statement's
    /// numbered parameters on both backends.
    pub fn bind<'q, DB>(self, query: Query<'q, DB, DB::Arguments>) -> Query<'q, DB, DB::Arguments>
    where
        DB: Database,
        String: Encode<'q, DB> + Type<DB>,
        i64: Encode<'q, DB> + Type<DB>,
        Option<i64>: Encode<'q, DB> + Type<DB>,
    {
        query
            .bind(self.id)
            .bind(self.name)
            .bind(self.limits)
            .bind(self.budgets)
            .bind(self.metadata)
            .bind(self.created_at)
            .bind(self.updated_at)
            .bind(self.revoked_at)
    }

    pub fn encode(tenant: &Tenant) -> Result<Self, StoreError> {
        let entity = "tenant";
        Ok(Self {
            id: tenant.id.clone(),
            name: tenant.name.clone(),
            limits: to_json(entity, &tenant.id, &tenant.limits)?,
            budgets: to_json(entity, &tenant.id, &tenant.budgets)?,
            metadata: to_json(entity, &tenant.id, &tenant.metadata)?,
            created_at: tenant.created_at,
            updated_at: tenant.updated_at,
            revoked_at: tenant.revoked_at,
        })
    }

    pub fn decode(self) -> Result<Tenant, StoreError> {
        let entity = "tenant";
        Ok(Tenant {
            limits: from_json(entity, &self.id, "limits", &self.limits)?,
            budgets: from_json(entity, &self.id, "budgets", &self.budgets)?,
            metadata: from_json(entity, &self.id, "metadata", &self.metadata)?,
            id: self.id,
            name: self.name,
            created_at: self.created_at,
            updated_at: self.updated_at,
            revoked_at: self.revoked_at,
        })
    }
}

/// An API key as stored.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct KeyRow {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub secret_sha256: Vec<u8>,
    pub secret_hint: String,
    pub scopes: String,
    pub limits: String,
    pub budgets: String,
    pub metadata: String,
    pub expires_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub revoked_at: Option<i64>,
}

impl KeyRow {
    /// Binds every column in table order, `id` first: the order of each key statement's
    /// numbered parameters on both backends.
    pub fn bind<'q, DB>(self, query: Query<'q, DB, DB::Arguments>) -> Query<'q, DB, DB::Arguments>
    where
        DB: Database,
        String: Encode<'q, DB> + Type<DB>,
        Vec<u8>: Encode<'q, DB> + Type<DB>,
        i64: Encode<'q, DB> + Type<DB>,
        Option<i64>: Encode<'q, DB> + Type<DB>,
    {
        query
            .bind(self.id)
            .bind(self.tenant_id)
            .bind(self.name)
            .bind(self.secret_sha256)
            .bind(self.secret_hint)
            .bind(self.scopes)
            .bind(self.limits)
            .bind(self.budgets)
            .bind(self.metadata)
            .bind(self.expires_at)
            .bind(self.created_at)
            .bind(self.updated_at)
            .bind(self.revoked_at)
    }

    pub fn encode(key: &ApiKey) -> Result<Self, StoreError> {
        let entity = "key";
        Ok(Self {
            id: key.id.clone(),
            tenant_id: key.tenant_id.clone(),
            name: key.name.clone(),
            secret_sha256: key.secret_sha256.clone(),
            secret_hint: key.secret_hint.clone(),
            scopes: to_json(entity, &key.id, &key.scopes)?,
            limits: to_json(entity, &key.id, &key.limits)?,
            budgets: to_json(entity, &key.id, &key.budgets)?,
            metadata: to_json(entity, &key.id, &key.metadata)?,
            expires_at: key.expires_at,
            created_at: key.created_at,
            updated_at: key.updated_at,
            revoked_at: key.revoked_at,
        })
    }

    pub fn decode(self) -> Result<ApiKey, StoreError> {
        let entity = "key";
        Ok(ApiKey {
            scopes: from_json(entity, &self.id, "scopes", &self.scopes)?,
            limits: from_json(entity, &self.id, "limits", &self.limits)?,
            budgets: from_json(entity, &self.id, "budgets", &self.budgets)?,
            metadata: from_json(entity, &self.id, "metadata", &self.metadata)?,
            id: self.id,
            tenant_id: self.tenant_id,
            name: self.name,
            secret_sha256: self.secret_sha256,
            secret_hint: self.secret_hint,
            expires_at: self.expires_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
            revoked_at: self.revoked_at,
        })
    }
}

/// The counters of one usage row, as the signed integers both databases store.
#[derive(Debug, Clone, Copy)]
struct UsageCounters {
    pub requests: i64,
    pub cache_hits: i64,
    pub input_tokens: i64,
    pub cached_input_tokens: i64,
    pub output_tokens: i64,
    pub cost_nanos: i64,
}

impl UsageCounters {
    /// Counters above `i64::MAX` (never seen in practice) saturate rather than wrap.
    fn of(row: &UsageRecord) -> Self {
        Self {
            requests: saturating_i64(row.requests),
            cache_hits: saturating_i64(row.cache_hits),
            input_tokens: saturating_i64(row.input_tokens),
            cached_input_tokens: saturating_i64(row.cached_input_tokens),
            output_tokens: saturating_i64(row.output_tokens),
            cost_nanos: saturating_i64(row.cost_nanos),
        }
    }
}

/// Sums from `usage_totals`, as the database returns them.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct TotalsRow {
    pub requests: i64,
    pub tokens: i64,
    pub cost_nanos: i64,
}

impl TotalsRow {
    pub fn decode(self, scope_id: &str) -> Result<UsageTotals, StoreError> {
        let counter = |value: i64| {
            u64::try_from(value).map_err(|_| StoreError::Corrupt {
                entity: "usage",
                id: scope_id.to_owned(),
                message: format!("negative usage total {value}"),
            })
        };
        Ok(UsageTotals {
            requests: counter(self.requests)?,
            tokens: counter(self.tokens)?,
            cost_nanos: counter(self.cost_nanos)?,
        })
    }
}

/// Adds one row's counters to the ledger. SQLite reads `$n` as positional parameters too, so
/// both backends run this same statement.
const UPSERT_USAGE: &str = "INSERT INTO usage (tenant_id, key_id, model, target, hour, \
    requests, cache_hits, input_tokens, cached_input_tokens, output_tokens, cost_nanos) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
    ON CONFLICT (tenant_id, key_id, model, target, hour) DO UPDATE SET \
    requests = usage.requests + excluded.requests, \
    cache_hits = usage.cache_hits + excluded.cache_hits, \
    input_tokens = usage.input_tokens + excluded.input_tokens, \
    cached_input_tokens = usage.cached_input_tokens + excluded.cached_input_tokens, \
    output_tokens = usage.output_tokens + excluded.output_tokens, \
    cost_nanos = usage.cost_nanos + excluded.cost_nanos";

/// The statement adding `row` to the ledger, with its values bound.
pub(crate) fn upsert_usage<'q, DB>(row: &'q UsageRecord) -> Query<'q, DB, DB::Arguments>
where
    DB: Database,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    let counters = UsageCounters::of(row);
    sqlx::query(UPSERT_USAGE)
        .bind(row.tenant_id.as_str())
        .bind(row.key_id.as_str())
        .bind(row.model.as_str())
        .bind(row.target.as_str())
        .bind(row.hour)
        .bind(counters.requests)
        .bind(counters.cache_hits)
        .bind(counters.input_tokens)
        .bind(counters.cached_input_tokens)
        .bind(counters.output_tokens)
        .bind(counters.cost_nanos)
}

/// Rows in ledger-key order, so that concurrent batches touching the same rows lock them in the
/// same order (PostgreSQL would otherwise risk a deadlock between two batches).
pub(crate) fn usage_in_key_order(rows: &[UsageRecord]) -> Vec<&UsageRecord> {
    let mut sorted: Vec<&UsageRecord> = rows.iter().collect();
    sorted.sort_by(|a, b| {
        (&a.tenant_id, &a.key_id, &a.model, &a.target, a.hour).cmp(&(
            &b.tenant_id,
            &b.key_id,
            &b.model,
            &b.target,
            b.hour,
        ))
    });
    sorted
}

/// The number of items to return: 0 means the default, and the store caps it.
pub(crate) fn page_limit(page: &PageRequest) -> i64 {
    let limit = match page.limit {
        0 => DEFAULT_PAGE_LIMIT,
        limit => limit.min(MAX_PAGE_LIMIT),
    };
    i64::from(limit)
}

pub(crate) fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(crate) fn to_json<T: Serialize>(
    entity: &'static str,
    id: &str,
    value: &T,
) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|err| StoreError::Database(format!("cannot encode {entity} `{id}`: {err}")))
}

pub(crate) fn from_json<T: DeserializeOwned>(
    entity: &'static str,
    id: &str,
    column: &str,
    text: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|err| StoreError::Corrupt {
        entity,
        id: id.to_owned(),
        message: format!("column `{column}`: {err}"),
    })
}

/// Maps a `sqlx` error: failing to reach or open the database is [`StoreError::Unavailable`],
/// anything else is [`StoreError::Database`].
pub(crate) fn db_error(err: sqlx::Error) -> StoreError {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Configuration(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(err.to_string()),
        other => StoreError::Database(other.to_string()),
    }
}

/// The result of `INSERT INTO api_keys … ON CONFLICT (id) DO NOTHING`: no row inserted means
/// the id exists, and a foreign key violation means the tenant does not.
pub(crate) fn key_insert_outcome(
    key: &ApiKey,
    rows_affected: Result<u64, sqlx::Error>,
) -> Result<(), StoreError> {
    match key_update_outcome(key, rows_affected)? {
        true => Ok(()),
        false => Err(StoreError::Conflict {
            entity: "key",
            id: key.id.clone(),
        }),
    }
}

/// The result of `UPDATE api_keys … WHERE id = …`: whether a row changed, or
/// [`StoreError::NotFound`] when the key was moved to a tenant that does not exist.
pub(crate) fn key_update_outcome(
    key: &ApiKey,
    rows_affected: Result<u64, sqlx::Error>,
) -> Result<bool, StoreError> {
    match rows_affected {
        Ok(rows) => Ok(rows > 0),
        Err(err) if is_foreign_key_violation(&err) => Err(StoreError::NotFound {
            entity: "tenant",
            id: key.tenant_id.clone(),
        }),
        Err(err) => Err(db_error(err)),
    }
}

fn is_foreign_key_violation(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .is_some_and(|db| db.kind() == sqlx::error::ErrorKind::ForeignKeyViolation)
}

/// Maps a migration failure.
pub(crate) fn migrate_error(err: sqlx::migrate::MigrateError) -> StoreError {
    match err {
        sqlx::migrate::MigrateError::Execute(inner) => db_error(inner),
        other => StoreError::Database(format!("migration failed: {other}")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::model::{Budget, BudgetLimit, BudgetPeriod, Limits, Scopes};

    #[test]
    fn page_limit_defaults_and_caps() {
        for (requested, expected) in [(0, 100), (1, 1), (999, 999), (1000, 1000), (5000, 1000)] {
            let page = PageRequest {
                after: None,
                limit: requested,
            };
            assert_eq!(page_limit(&page), expected, "limit {requested}");
        }
    }

    #[test]
    fn huge_counters_saturate() {
        assert_eq!(saturating_i64(u64::MAX), i64::MAX);
        assert_eq!(saturating_i64(7), 7);
    }

    #[test]
    fn negative_totals_are_corrupt() {
        let row = TotalsRow {
            requests: -1,
            tokens: 0,
            cost_nanos: 0,
        };
        assert!(matches!(
            row.decode("t1"),
            Err(StoreError::Corrupt {
                entity: "usage",
                ..
            })
        ));
    }

    #[test]
    fn key_round_trips_through_a_row() {
        let key = ApiKey {
            id: "key_a".into(),
            tenant_id: "t".into(),
            name: "n".into(),
            secret_sha256: vec![1, 2, 3],
            secret_hint: "abcd".into(),
            scopes: Scopes {
                models: Some(vec!["m".into()]),
                knowledge_bases: Some(vec![]),
                tools: Some(vec!["orders".to_owned()]),
            },
            limits: Limits {
                requests_per_minute: Some(5),
                ..Limits::default()
            },
            budgets: vec![Budget {
                period: BudgetPeriod::Month,
                limit: BudgetLimit::CostNanos(9),
            }],
            metadata: serde_json::Map::new(),
            expires_at: Some(3),
            created_at: 1,
            updated_at: 2,
            revoked_at: None,
        };
        let decoded = KeyRow::encode(&key).unwrap().decode().unwrap();
        assert_eq!(decoded, key);
    }

    #[test]
    fn bad_json_names_record_and_column() {
        let row = TenantRow {
            id: "t1".into(),
            name: "n".into(),
            limits: "{\"bogus\":1}".into(),
            budgets: "[]".into(),
            metadata: "{}".into(),
            created_at: 0,
            updated_at: 0,
            revoked_at: None,
        };
        let Err(StoreError::Corrupt {
            entity,
            id,
            message,
            ..
        }) = row.decode()
        else {
            panic!("expected a corrupt-record error");
        };
        assert_eq!((entity, id.as_str()), ("tenant", "t1"));
        assert!(message.contains("limits"), "{message}");
    }
}
