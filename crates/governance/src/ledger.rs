//! The usage ledger's write side: usage is summed in memory per (tenant, key, model, target,
//! hour) and written to the metadata store in one transaction per flush, off the request path.

use std::collections::HashMap;
use std::sync::Mutex;

use landfall_storage::{MetadataStore, StoreError, UsageRecord, UsageScope, UsageTotals};

use crate::now_millis;

/// What one request used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    pub output_tokens: u64,
    pub cost_nanos: u64,
    pub cache_hit: bool,
}

impl Usage {
    /// A request that failed or was abandoned before any usage was known.
    #[must_use]
    pub fn failed() -> Self {
        Self::default()
    }

    /// A provider's usage priced at `price`.
    #[must_use]
    pub fn priced(
        usage: &landfall_types::Usage,
        price: Option<landfall_types::TokenPrice>,
    ) -> Self {
        Self {
            input_tokens: usage.prompt_tokens,
            cached_input_tokens: usage.cached_prompt_tokens(),
            output_tokens: usage.completion_tokens,
            cost_nanos: price.map_or(0, |price| price.cost_nanos(usage)),
            cache_hit: false,
        }
    }
}

/// (tenant, key, model, target, hour) joined by a separator no id contains: one allocation
/// per request, and none of the record's own strings unless the row is new.
fn row_key(tenant_id: &str, key_id: &str, model: &str, target: &str, hour: i64) -> String {
    format!("{tenant_id}\u{1f}{key_id}\u{1f}{model}\u{1f}{target}\u{1f}{hour}")
}

/// Rows kept when the store is down, before the oldest hours are dropped (and counted).
const MAX_PENDING_ROWS: usize = 100_000;

#[derive(Default)]
pub(crate) struct Ledger {
    pending: Mutex<HashMap<String, UsageRecord>>,
    /// Held for a whole flush, from taking the rows to their commit: a flush never runs beside
    /// another, and whoever holds it knows no rows are in flight (see `Governance::shutdown`).
    pub(crate) flushing: tokio::sync::Mutex<()>,
    pub(crate) dropped_rows: std::sync::atomic::AtomicU64,
}

impl Ledger {
    pub(crate) fn add(
        &self,
        tenant_id: &str,
        key_id: &str,
        model: &str,
        target: &str,
        usage: &Usage,
    ) {
        let hour = now_millis() / 3_600_000 * 3_600_000;
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        let row = pending
            .entry(row_key(tenant_id, key_id, model, target, hour))
            .or_insert_with(|| UsageRecord {
                tenant_id: tenant_id.to_owned(),
                key_id: key_id.to_owned(),
                model: model.to_owned(),
                target: target.to_owned(),
                hour,
                requests: 0,
                cache_hits: 0,
                input_tokens: 0,
                cached_input_tokens: 0,
                output_tokens: 0,
                cost_nanos: 0,
            });
        row.requests += 1;
        row.cache_hits += u64::from(usage.cache_hit);
        row.input_tokens += usage.input_tokens;
        row.cached_input_tokens += usage.cached_input_tokens;
        row.output_tokens += usage.output_tokens;
        row.cost_nanos += usage.cost_nanos;
    }

    /// Writes what is pending; on failure the rows are kept for the next flush.
    pub(crate) async fn flush(&self, store: &dyn MetadataStore) -> Result<usize, StoreError> {
        let _flushing = self.flushing.lock().await;
        self.flush_locked(store).await
    }

    /// [`Ledger::flush`] for a caller that holds `flushing`.
    pub(crate) async fn flush_locked(
        &self,
        store: &dyn MetadataStore,
    ) -> Result<usize, StoreError> {
        let rows: Vec<UsageRecord> = match self.pending.lock() {
            Ok(mut pending) => pending.drain().map(|(_, row)| row).collect(),
            Err(_) => return Ok(0),
        };
        if rows.is_empty() {
            return Ok(0);
        }
        match store.record_usage(&rows).await {
            Ok(()) => Ok(rows.len()),
            Err(error) => {
                self.restore(rows);
                Err(error)
            }
        }
    }

    fn restore(&self, rows: Vec<UsageRecord>) {
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        for row in rows {
            let key = row_key(
                &row.tenant_id,
                &row.key_id,
                &row.model,
                &row.target,
                row.hour,
            );
            let room = pending.len() < MAX_PENDING_ROWS;
            match pending.get_mut(&key) {
                Some(newer) => {
                    newer.requests += row.requests;
                    newer.cache_hits += row.cache_hits;
                    newer.input_tokens += row.input_tokens;
                    newer.cached_input_tokens += row.cached_input_tokens;
                    newer.output_tokens += row.output_tokens;
                    newer.cost_nanos += row.cost_nanos;
                }
                None if room => {
                    pending.insert(key, row);
                }
                None => {
                    self.dropped_rows
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::error!(tenant = %row.tenant_id, key = %row.key_id, "usage ledger backlog full; dropping a usage row");
                }
            }
        }
    }

    /// Totals from the store plus what this replica has not flushed yet.
    pub(crate) async fn totals(
        &self,
        store: &dyn MetadataStore,
        scope: UsageScope<'_>,
        since: i64,
    ) -> Result<UsageTotals, StoreError> {
        let mut totals = store.usage_totals(scope, since).await?;
        let Ok(pending) = self.pending.lock() else {
            return Ok(totals);
        };
        for row in pending.values() {
            let matches = match scope {
                UsageScope::Tenant(id) => row.tenant_id == id,
                UsageScope::Key(id) => row.key_id == id,
            };
            if matches && row.hour >= since {
                totals.requests += row.requests;
                totals.tokens += row.input_tokens + row.output_tokens;
                totals.cost_nanos += row.cost_nanos;
            }
        }
        Ok(totals)
    }
}

#[cfg(test)]
mod tests {
    use landfall_storage::SqliteStore;

    use super::*;

    fn usage(input_tokens: u64, output_tokens: u64) -> Usage {
        Usage {
            input_tokens,
            output_tokens,
            cost_nanos: 10,
            ..Usage::default()
        }
    }

    #[tokio::test]
    async fn rows_are_summed_flushed_and_kept_while_the_store_is_down() {
        let directory = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&directory.path().join("ledger.db"))
            .await
            .unwrap();
        let ledger = Ledger::default();
        ledger.add("t", "k", "chat", "p/m", &usage(5, 3));
        ledger.add("t", "k", "chat", "p/m", &usage(7, 1));
        ledger.add("t", "k2", "chat", "p/m", &usage(1, 1));
        assert_eq!(ledger.flush(&store).await.unwrap(), 2);
        let totals = store
            .usage_totals(UsageScope::Tenant("t"), 0)
            .await
            .unwrap();
        assert_eq!(
            (totals.requests, totals.tokens, totals.cost_nanos),
            (3, 18, 30)
        );

        // Unflushed usage counts in totals; a failed flush keeps it for the next one.
        ledger.add("t", "k", "chat", "p/m", &usage(100, 0));
        let totals = ledger
            .totals(&store, UsageScope::Key("k"), 0)
            .await
            .unwrap();
        assert_eq!(totals.tokens, 116);
        store.close().await;
        assert!(ledger.flush(&store).await.is_err());
        let reopened = SqliteStore::open(&directory.path().join("ledger.db"))
            .await
            .unwrap();
        assert_eq!(ledger.flush(&reopened).await.unwrap(), 1);
        let totals = reopened
            .usage_totals(UsageScope::Key("k"), 0)
            .await
            .unwrap();
        assert_eq!((totals.requests, totals.tokens), (3, 116));
    }
}
