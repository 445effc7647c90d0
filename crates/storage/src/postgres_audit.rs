//! [`AuditLog`] on PostgreSQL.
//!
//! Several replicas append at once: each append and prune locks the one `audit_chain` row
//! (`SELECT … FOR UPDATE`) before reading the head, so they take turns and the chain stays one
//! line. A batch is inserted by one statement over `UNNEST`ed arrays, the same text whatever
//! its size, so it stays prepared.

use async_trait::async_trait;
use sqlx::{Postgres, QueryBuilder};

use crate::audit::codec::{
    AuditRow, ChainRow, EncodedBatch, LAST_TO_PRUNE, NewRow, audit_columns, chain_limit,
    new_anchor, push_page_query, seq_param,
};
use crate::audit::{AuditEntry, AuditLog, AuditQuery, AuditRecord, ChainState, RawAuditRow};
use crate::codec::db_error;
use crate::error::StoreError;
use crate::model::UnixMillis;
use crate::postgres::PostgresStore;

const SELECT_CHAIN: &str =
    "SELECT head_seq, head_hash, anchor_seq, anchor_hash FROM audit_chain WHERE id = 1";

/// [`SELECT_CHAIN`], waiting for and then holding the row until the transaction ends.
const LOCK_CHAIN: &str = "SELECT head_seq, head_hash, anchor_seq, anchor_hash FROM audit_chain \
    WHERE id = 1 FOR UPDATE";

const INSERT_AUDIT: &str = "INSERT INTO audit_records (seq, time_ms, kind, request_id, \
    tenant_id, key_id, route, model, status, record, hash) \
    SELECT * FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], \
    $6::TEXT[], $7::TEXT[], $8::TEXT[], $9::INTEGER[], $10::TEXT[], $11::BYTEA[])";

/// One array per column, for [`INSERT_AUDIT`].
#[derive(Debug, Default)]
struct Columns<'a> {
    seq: Vec<i64>,
    time_ms: Vec<i64>,
    kind: Vec<&'a str>,
    request_id: Vec<&'a str>,
    tenant_id: Vec<Option<&'a str>>,
    key_id: Vec<Option<&'a str>>,
    route: Vec<&'a str>,
    model: Vec<Option<&'a str>>,
    status: Vec<i32>,
    record: Vec<&'a str>,
    hash: Vec<Vec<u8>>,
}

impl<'a> Columns<'a> {
    fn of(rows: Vec<NewRow<'a>>) -> Self {
        let mut columns = Self::default();
        for row in rows {
            let entry = row.entry;
            columns.seq.push(row.seq);
            columns.time_ms.push(entry.time);
            columns.kind.push(&entry.kind);
            columns.request_id.push(&entry.request_id);
            columns.tenant_id.push(entry.tenant_id.as_deref());
            columns.key_id.push(entry.key_id.as_deref());
            columns.route.push(&entry.route);
            columns.model.push(entry.model.as_deref());
            columns.status.push(i32::from(entry.status));
            columns.record.push(row.record);
            columns.hash.push(row.hash.to_vec());
        }
        columns
    }
}

#[async_trait]
impl AuditLog for PostgresStore {
    async fn append_audit(&self, entries: &[AuditEntry]) -> Result<ChainState, StoreError> {
        if entries.is_empty() {
            return self.audit_state().await;
        }
        let batch = EncodedBatch::encode(entries)?;
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let state: ChainRow = sqlx::query_as(LOCK_CHAIN)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
        let (rows, after) = batch.link(&state.decode()?)?;
        let columns = Columns::of(rows);
        sqlx::query(INSERT_AUDIT)
            .bind(columns.seq)
            .bind(columns.time_ms)
            .bind(columns.kind)
            .bind(columns.request_id)
            .bind(columns.tenant_id)
            .bind(columns.key_id)
            .bind(columns.route)
            .bind(columns.model)
            .bind(columns.status)
            .bind(columns.record)
            .bind(columns.hash)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        sqlx::query("UPDATE audit_chain SET head_seq = $1, head_hash = $2 WHERE id = 1")
            .bind(seq_param(after.head_seq))
            .bind(after.head_hash.as_slice())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(after)
    }

    async fn audit_page(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        let mut builder = QueryBuilder::<Postgres>::new(concat!(
            "SELECT ",
            audit_columns!(postgres),
            " FROM audit_records"
        ));
        push_page_query(&mut builder, query);
        let rows: Vec<AuditRow> = builder
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.into_iter().map(AuditRow::decode).collect()
    }

    async fn audit_chain(
        &self,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<RawAuditRow>, StoreError> {
        let rows: Vec<AuditRow> = sqlx::query_as(concat!(
            "SELECT ",
            audit_columns!(postgres),
            " FROM audit_records WHERE seq > $1 ORDER BY seq LIMIT $2"
        ))
        .bind(seq_param(after_seq))
        .bind(chain_limit(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.into_iter().map(AuditRow::raw).collect()
    }

    async fn audit_state(&self) -> Result<ChainState, StoreError> {
        let row: ChainRow = sqlx::query_as(SELECT_CHAIN)
            .fetch_one(&self.pool)
            .await
            .map_err(db_error)?;
        row.decode()
    }

    async fn prune_audit(&self, before: UnixMillis) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let state: ChainRow = sqlx::query_as(LOCK_CHAIN)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
        let state = state.decode()?;
        let last: Option<(i64, Vec<u8>)> = sqlx::query_as(LAST_TO_PRUNE)
            .bind(seq_param(state.anchor_seq))
            .bind(before)
            .bind(seq_param(state.head_seq))
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
        let Some(anchor) = new_anchor(last, &state)? else {
            return Ok(0);
        };
        // Lets the append-only trigger through, for this transaction only.
        sqlx::query("SELECT set_config('landfall.audit_prune', 'on', true)")
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let deleted = sqlx::query("DELETE FROM audit_records WHERE seq <= $1")
            .bind(seq_param(anchor.anchor_seq))
            .execute(&mut *tx)
            .await
            .map_err(db_error)?
            .rows_affected();
        sqlx::query("UPDATE audit_chain SET anchor_seq = $1, anchor_hash = $2 WHERE id = 1")
            .bind(seq_param(anchor.anchor_seq))
            .bind(anchor.anchor_hash.as_slice())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(deleted)
    }
}
