//! [`AuditLog`] on SQLite.
//!
//! Appends and prunes run on the single writer connection, in `BEGIN IMMEDIATE` transactions:
//! they take SQLite's write lock before reading the chain head, so even another process
//! writing the same file cannot slip a record in between.

use async_trait::async_trait;
use sqlx::{QueryBuilder, Sqlite};

use crate::audit::codec::{
    AuditRow, ChainRow, EncodedBatch, LAST_TO_PRUNE, NewRow, audit_columns, chain_limit,
    new_anchor, push_page_query, seq_param,
};
use crate::audit::{AuditEntry, AuditLog, AuditQuery, AuditRecord, ChainState, RawAuditRow};
use crate::codec::db_error;
use crate::error::StoreError;
use crate::model::UnixMillis;
use crate::sqlite::SqliteStore;

/// Rows per `INSERT`: 11 parameters each stays far below SQLite's 32,766.
const INSERT_ROWS: usize = 256;

const SELECT_CHAIN: &str =
    "SELECT head_seq, head_hash, anchor_seq, anchor_hash FROM audit_chain WHERE id = 1";

const INSERT_AUDIT: &str = "INSERT INTO audit_records (seq, time_ms, kind, request_id, \
    tenant_id, key_id, route, model, status, record, hash) ";

#[async_trait]
impl AuditLog for SqliteStore {
    async fn append_audit(&self, entries: &[AuditEntry]) -> Result<ChainState, StoreError> {
        if entries.is_empty() {
            return self.audit_state().await;
        }
        let batch = EncodedBatch::encode(entries)?;
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error)?;
        let state: ChainRow = sqlx::query_as(SELECT_CHAIN)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
        let (rows, after) = batch.link(&state.decode()?)?;
        let mut remaining = rows.len();
        let mut rows = rows.into_iter();
        while remaining > 0 {
            // Chunks of a power of two rows: at most nine statement shapes, each prepared once
            // and kept, however the batches are sized.
            let chunk = largest_power_of_two_at_most(remaining.min(INSERT_ROWS));
            remaining -= chunk;
            let mut builder = QueryBuilder::<Sqlite>::new(INSERT_AUDIT);
            builder.push_values(rows.by_ref().take(chunk), |mut values, row| {
                bind_row(&mut values, row);
            });
            builder
                .build()
                .persistent(true)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
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
        let mut builder = QueryBuilder::<Sqlite>::new(concat!(
            "SELECT ",
            audit_columns!(sqlite),
            " FROM audit_records"
        ));
        push_page_query(&mut builder, query);
        let rows: Vec<AuditRow> = builder
            .build_query_as()
            .fetch_all(&self.reader)
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
            audit_columns!(sqlite),
            " FROM audit_records WHERE seq > $1 ORDER BY seq LIMIT $2"
        ))
        .bind(seq_param(after_seq))
        .bind(chain_limit(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(db_error)?;
        rows.into_iter().map(AuditRow::raw).collect()
    }

    async fn audit_state(&self) -> Result<ChainState, StoreError> {
        let row: ChainRow = sqlx::query_as(SELECT_CHAIN)
            .fetch_one(&self.reader)
            .await
            .map_err(db_error)?;
        row.decode()
    }

    async fn prune_audit(&self, before: UnixMillis) -> Result<u64, StoreError> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error)?;
        let state: ChainRow = sqlx::query_as(SELECT_CHAIN)
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
        sqlx::query("UPDATE audit_chain SET pruning = 1 WHERE id = 1")
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let deleted = sqlx::query("DELETE FROM audit_records WHERE seq <= $1")
            .bind(seq_param(anchor.anchor_seq))
            .execute(&mut *tx)
            .await
            .map_err(db_error)?
            .rows_affected();
        sqlx::query(
            "UPDATE audit_chain SET anchor_seq = $1, anchor_hash = $2, pruning = 0 WHERE id = 1",
        )
        .bind(seq_param(anchor.anchor_seq))
        .bind(anchor.anchor_hash.as_slice())
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(deleted)
    }
}

fn bind_row(
    values: &mut sqlx::query_builder::Separated<'_, Sqlite, &'static str>,
    row: NewRow<'_>,
) {
    let entry = row.entry;
    values
        .push_bind(row.seq)
        .push_bind(entry.time)
        .push_bind(entry.kind.as_str())
        .push_bind(entry.request_id.as_str())
        .push_bind(entry.tenant_id.as_deref())
        .push_bind(entry.key_id.as_deref())
        .push_bind(entry.route.as_str())
        .push_bind(entry.model.as_deref())
        .push_bind(i64::from(entry.status))
        .push_bind(row.record)
        .push_bind(row.hash.to_vec());
}

fn largest_power_of_two_at_most(count: usize) -> usize {
    if count == 0 {
        return 0;
    }
    1 << (usize::BITS - 1 - count.leading_zeros())
}

#[cfg(test)]
mod tests {
    use super::largest_power_of_two_at_most;

    #[test]
    fn chunks_are_powers_of_two() {
        let cases = [
            (0, 0),
            (1, 1),
            (2, 2),
            (3, 2),
            (255, 128),
            (256, 256),
            (1000, 512),
        ];
        for (count, chunk) in cases {
            assert_eq!(largest_power_of_two_at_most(count), chunk, "{count}");
        }
    }
}
