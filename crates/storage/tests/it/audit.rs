//! The behaviour every `AuditLog` promises, written once and run on every backend, including
//! what verification finds after someone with database access tampers with the log.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use landfall_storage::{
    AuditEntry, AuditFilter, AuditLog, AuditOrder, AuditQuery, AuditRecord, ChainState, Problem,
    RecordJson, StatusFilter, Store, StoreError, VerifyReport, verify_audit,
};
use serde_json::json;

/// 2024-01-01T00:00:00Z.
const T0: i64 = 1_704_067_200_000;

/// Raw access to a fixture's database, as an operator or an attacker with the database's
/// credentials has.
#[async_trait]
pub trait Backdoor: Send + Sync {
    /// Runs `sql` (one or more statements) on a connection of its own; returns the rows
    /// affected, or the database's error message.
    async fn execute(&self, sql: &str) -> Result<u64, String>;
    /// Drops the triggers that refuse updates and deletes of audit rows.
    async fn drop_append_only_guards(&self);
    /// Another store on the same database, as a second server replica opens.
    async fn another_store(&self) -> Arc<dyn Store>;
}

/// The `n`th test entry: columns vary with `n` so that every filter selects a different mix.
fn entry(n: u64) -> AuditEntry {
    let kind = ["request", "request", "admin", "system"][(n % 4) as usize];
    let tenant_id = ["acme", "beta", ""][(n % 3) as usize];
    let tenant_id = (!tenant_id.is_empty()).then(|| tenant_id.to_owned());
    AuditEntry {
        time: T0 + i64::try_from(n).unwrap() * 1_000,
        kind: kind.to_owned(),
        request_id: format!("req_{n:06}"),
        key_id: tenant_id.as_ref().map(|_| format!("key_{}", n % 5)),
        tenant_id,
        route: match kind {
            "request" => "/v1/chat/completions".to_owned(),
            _ => "POST /admin/v1/keys".to_owned(),
        },
        model: (kind == "request").then(|| ["chat", "embed"][(n % 2) as usize].to_owned()),
        status: [200, 201, 404, 429, 500, 503][(n % 6) as usize],
        record: RecordJson::of(&json!({
            "n": n,
            "latency_ms": n * 3,
            "tokens": {"input": n * 10, "output": n},
            "cost_nanos": n * 1_000,
            "client": {"address": "10.0.0.7", "user_agent": "curl/8 — ü"},
            "body": "x".repeat((n % 7) as usize),
        }))
        .unwrap(),
    }
}

fn entries(range: std::ops::RangeInclusive<u64>) -> Vec<AuditEntry> {
    range.map(entry).collect()
}

fn query(filter: AuditFilter, order: AuditOrder, cursor: Option<u64>, limit: u32) -> AuditQuery {
    AuditQuery {
        filter,
        order,
        cursor,
        limit,
    }
}

fn seqs(records: &[AuditRecord]) -> Vec<u64> {
    records.iter().map(|record| record.seq).collect()
}

async fn all(log: &dyn AuditLog) -> Vec<AuditRecord> {
    log.audit_page(&query(
        AuditFilter::default(),
        AuditOrder::Ascending,
        None,
        1000,
    ))
    .await
    .unwrap()
}

async fn verify(log: &dyn AuditLog) -> VerifyReport {
    verify_audit(log, |_| {}).await.unwrap()
}

/// Appends entries 1 to `count` in batches of 4 and checks that the chain is intact.
async fn append_intact(log: &dyn AuditLog, count: u64) {
    for batch in entries(1..=count).chunks(4) {
        log.append_audit(batch).await.unwrap();
    }
    let report = verify(log).await;
    assert!(report.is_intact(), "{report:?}");
}

async fn problems_after(store: &dyn AuditLog, db: &dyn Backdoor, sql: &str) -> Vec<Problem> {
    db.drop_append_only_guards().await;
    db.execute(sql).await.unwrap();
    verify(store).await.problems
}

pub async fn audit_append_numbers_and_chains(store: Arc<dyn Store>, _db: Arc<dyn Backdoor>) {
    let log: Arc<dyn AuditLog> = store;
    assert_eq!(log.audit_state().await.unwrap(), ChainState::default());
    assert_eq!(log.append_audit(&[]).await.unwrap(), ChainState::default());
    assert!(all(&*log).await.is_empty());

    let first = entries(1..=3);
    let state = log.append_audit(&first).await.unwrap();
    let stored = all(&*log).await;
    assert_eq!(seqs(&stored), [1, 2, 3]);
    let stored_entries: Vec<AuditEntry> = stored.iter().map(|r| r.entry.clone()).collect();
    assert_eq!(stored_entries, first, "entries come back as appended");
    assert_eq!(
        state,
        ChainState {
            head_seq: 3,
            head_hash: stored[2].hash,
            anchor_seq: 0,
            anchor_hash: [0; 32],
        }
    );
    assert_eq!(log.audit_state().await.unwrap(), state);

    // The next call continues the chain; an empty one changes nothing.
    let state = log.append_audit(&entries(4..=5)).await.unwrap();
    assert_eq!(state.head_seq, 5);
    assert_eq!(log.append_audit(&[]).await.unwrap(), state);
    let stored = all(&*log).await;
    assert_eq!(seqs(&stored), [1, 2, 3, 4, 5]);
    assert_eq!(stored[4].hash, state.head_hash);
    let hashes: BTreeSet<[u8; 32]> = stored.iter().map(|record| record.hash).collect();
    assert_eq!(hashes.len(), 5, "every record has its own hash");

    let raw = log.audit_chain(0, 10).await.unwrap();
    assert_eq!(
        raw.iter().map(|row| row.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert!(raw.iter().all(|row| row.hash.len() == 32));
    assert_eq!(
        raw[0].record,
        serde_json::to_string(&entry(1).record).unwrap()
    );
    assert_eq!(raw[3].request_id, "req_000004");
    let after_three = log.audit_chain(3, 1).await.unwrap();
    assert_eq!(
        after_three.iter().map(|row| row.seq).collect::<Vec<_>>(),
        [4]
    );
    assert_eq!(
        log.audit_chain(0, 0).await.unwrap().len(),
        1,
        "at least one row"
    );
    assert!(log.audit_chain(5, 10).await.unwrap().is_empty());
}

pub async fn audit_append_refuses_non_objects_whole(store: Arc<dyn Store>, _db: Arc<dyn Backdoor>) {
    let state = store.append_audit(&entries(1..=2)).await.unwrap();
    let mut batch = entries(3..=5);
    batch[1].record = RecordJson::of(&json!(["not", "an", "object"])).unwrap();
    let err = store.append_audit(&batch).await.unwrap_err();
    assert!(matches!(err, StoreError::Database(_)), "{err:?}");
    assert!(err.to_string().contains("req_000004"), "{err}");
    assert_eq!(
        store.audit_state().await.unwrap(),
        state,
        "nothing was written"
    );
    assert_eq!(seqs(&all(&*store).await), [1, 2]);
}

pub async fn audit_large_batches_span_statements(store: Arc<dyn Store>, _db: Arc<dyn Backdoor>) {
    // Larger than one multi-row INSERT, with a remainder; then a second batch.
    store.append_audit(&entries(1..=2_345)).await.unwrap();
    let state = store.append_audit(&entries(2_346..=3_500)).await.unwrap();
    assert_eq!(state.head_seq, 3_500);
    let report = verify(&*store).await;
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.records, 3_500);
    let last = store
        .audit_page(&query(
            AuditFilter::default(),
            AuditOrder::Descending,
            None,
            1,
        ))
        .await
        .unwrap();
    assert_eq!(last[0].entry, entry(3_500));
    assert_eq!(last[0].hash, state.head_hash);
}

pub async fn audit_pages_filter_by_every_column(store: Arc<dyn Store>, _db: Arc<dyn Backdoor>) {
    let appended = entries(1..=60);
    for batch in appended.chunks(7) {
        store.append_audit(batch).await.unwrap();
    }
    let at = |n: i64| T0 + n * 1_000;
    type Check = fn(&AuditEntry) -> bool;
    let cases: Vec<(AuditFilter, Check)> = vec![
        (AuditFilter::default(), |_| true),
        (
            AuditFilter {
                since: Some(at(10)),
                until: Some(at(20)),
                ..AuditFilter::default()
            },
            |e| (T0 + 10_000..T0 + 20_000).contains(&e.time),
        ),
        (
            AuditFilter {
                since: Some(at(55)),
                ..AuditFilter::default()
            },
            |e| e.time >= T0 + 55_000,
        ),
        (
            AuditFilter {
                until: Some(at(3)),
                ..AuditFilter::default()
            },
            |e| e.time < T0 + 3_000,
        ),
        (
            AuditFilter {
                tenant_id: Some("acme".into()),
                ..AuditFilter::default()
            },
            |e| e.tenant_id.as_deref() == Some("acme"),
        ),
        (
            AuditFilter {
                key_id: Some("key_3".into()),
                ..AuditFilter::default()
            },
            |e| e.key_id.as_deref() == Some("key_3"),
        ),
        (
            AuditFilter {
                model: Some("embed".into()),
                ..AuditFilter::default()
            },
            |e| e.model.as_deref() == Some("embed"),
        ),
        (
            AuditFilter {
                kind: Some("admin".into()),
                ..AuditFilter::default()
            },
            |e| e.kind == "admin",
        ),
        (
            AuditFilter {
                status: Some(StatusFilter::Exact(429)),
                ..AuditFilter::default()
            },
            |e| e.status == 429,
        ),
        (
            AuditFilter {
                status: Some(StatusFilter::Class(2)),
                ..AuditFilter::default()
            },
            |e| (200..=299).contains(&e.status),
        ),
        (
            AuditFilter {
                status: Some(StatusFilter::Class(5)),
                ..AuditFilter::default()
            },
            |e| (500..=599).contains(&e.status),
        ),
        (
            AuditFilter {
                since: Some(at(5)),
                tenant_id: Some("beta".into()),
                kind: Some("request".into()),
                status: Some(StatusFilter::Class(4)),
                ..AuditFilter::default()
            },
            |e| {
                e.time >= T0 + 5_000
                    && e.tenant_id.as_deref() == Some("beta")
                    && e.kind == "request"
                    && (400..=499).contains(&e.status)
            },
        ),
        (
            AuditFilter {
                tenant_id: Some("ghost".into()),
                ..AuditFilter::default()
            },
            |_| false,
        ),
    ];
    for (filter, check) in cases {
        let expected: Vec<u64> = (1..=60)
            .filter(|&n| check(&appended[n as usize - 1]))
            .collect();
        assert!(
            expected.len() < 60 || filter == AuditFilter::default(),
            "{filter:?} should leave some records out"
        );
        let ascending = store
            .audit_page(&query(filter.clone(), AuditOrder::Ascending, None, 1000))
            .await
            .unwrap();
        assert_eq!(seqs(&ascending), expected, "{filter:?}");
        for record in &ascending {
            assert_eq!(record.entry, appended[record.seq as usize - 1]);
        }
        let descending = store
            .audit_page(&query(filter.clone(), AuditOrder::Descending, None, 1000))
            .await
            .unwrap();
        let reversed: Vec<u64> = expected.iter().rev().copied().collect();
        assert_eq!(seqs(&descending), reversed, "{filter:?} descending");
    }
}

/// Every record of `filter`, a page of `limit` at a time, following the cursor.
async fn walk(log: &dyn AuditLog, filter: &AuditFilter, order: AuditOrder, limit: u32) -> Vec<u64> {
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = log
            .audit_page(&query(filter.clone(), order, cursor, limit))
            .await
            .unwrap();
        assert!(page.len() <= limit as usize);
        let Some(last) = page.last() else {
            return seen;
        };
        cursor = Some(last.seq);
        seen.extend(seqs(&page));
    }
}

pub async fn audit_cursor_pages_walk_everything_once(
    store: Arc<dyn Store>,
    _db: Arc<dyn Backdoor>,
) {
    store.append_audit(&entries(1..=1_100)).await.unwrap();
    let everything: Vec<u64> = (1..=1_100).collect();
    let backwards: Vec<u64> = everything.iter().rev().copied().collect();
    let none = AuditFilter::default();
    assert_eq!(
        walk(&*store, &none, AuditOrder::Ascending, 97).await,
        everything
    );
    assert_eq!(
        walk(&*store, &none, AuditOrder::Descending, 250).await,
        backwards
    );

    let acme = AuditFilter {
        tenant_id: Some("acme".into()),
        ..AuditFilter::default()
    };
    let acme_seqs: Vec<u64> = (1..=1_100).filter(|n| n % 3 == 0).collect();
    assert_eq!(
        walk(&*store, &acme, AuditOrder::Ascending, 40).await,
        acme_seqs
    );
    let acme_back: Vec<u64> = acme_seqs.iter().rev().copied().collect();
    assert_eq!(
        walk(&*store, &acme, AuditOrder::Descending, 33).await,
        acme_back
    );

    // A cursor in the middle; limits default to 100 and stop at 1,000.
    let after = store
        .audit_page(&query(none.clone(), AuditOrder::Ascending, Some(1_098), 10))
        .await
        .unwrap();
    assert_eq!(seqs(&after), [1_099, 1_100]);
    let before = store
        .audit_page(&query(none.clone(), AuditOrder::Descending, Some(3), 10))
        .await
        .unwrap();
    assert_eq!(seqs(&before), [2, 1]);
    let default = store
        .audit_page(&query(none.clone(), AuditOrder::Ascending, None, 0))
        .await
        .unwrap();
    assert_eq!(default.len(), 100);
    let capped = store
        .audit_page(&query(none, AuditOrder::Descending, None, 5_000))
        .await
        .unwrap();
    assert_eq!(capped.len(), 1_000);
    assert_eq!(capped[0].seq, 1_100);
}

pub async fn audit_verify_reports_an_intact_chain(store: Arc<dyn Store>, _db: Arc<dyn Backdoor>) {
    let empty = verify(&*store).await;
    assert!(empty.is_intact(), "{empty:?}");
    assert_eq!(
        (empty.records, empty.first_seq, empty.last_seq),
        (0, None, None)
    );

    store.append_audit(&entries(1..=6_000)).await.unwrap();
    let state = store.append_audit(&entries(6_001..=12_345)).await.unwrap();
    let mut progress = Vec::new();
    let report = verify_audit(&*store, |checked| progress.push(checked))
        .await
        .unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.records, 12_345);
    assert_eq!((report.first_seq, report.last_seq), (Some(1), Some(12_345)));
    assert_eq!(
        (report.head_seq, report.head_hash),
        (state.head_seq, state.head_hash)
    );
    assert_eq!(progress, [5_000, 10_000, 12_345], "one call per page");
}

pub async fn audit_prune_removes_only_the_time_ordered_prefix(
    store: Arc<dyn Store>,
    _db: Arc<dyn Backdoor>,
) {
    assert_eq!(store.prune_audit(T0).await.unwrap(), 0, "nothing to prune");
    // Clocks of replicas disagree: record 5 is late, record 6 early.
    let times = [1, 2, 3, 4, 9, 3, 6, 7, 8, 10];
    let batch: Vec<AuditEntry> = (1..=10)
        .map(|n| AuditEntry {
            time: T0 + times[n as usize - 1],
            ..entry(n)
        })
        .collect();
    store.append_audit(&batch).await.unwrap();
    let hashes: Vec<[u8; 32]> = all(&*store)
        .await
        .iter()
        .map(|record| record.hash)
        .collect();

    // Records 1 to 4 are before T0 + 5; record 5 is not, so record 6 stays with it.
    assert_eq!(store.prune_audit(T0 + 5).await.unwrap(), 4);
    assert_eq!(seqs(&all(&*store).await), [5, 6, 7, 8, 9, 10]);
    let state = store.audit_state().await.unwrap();
    assert_eq!((state.anchor_seq, state.anchor_hash), (4, hashes[3]));
    assert_eq!((state.head_seq, state.head_hash), (10, hashes[9]));
    let report = verify(&*store).await;
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(
        (report.records, report.first_seq, report.anchor_seq),
        (6, Some(5), 4)
    );
    assert_eq!(
        store.prune_audit(T0 + 5).await.unwrap(),
        0,
        "pruning again is a no-op"
    );

    assert_eq!(store.prune_audit(T0 + 10).await.unwrap(), 5);
    assert_eq!(seqs(&all(&*store).await), [10]);

    // Appending continues the chain after a prune, and pruning everything keeps the head.
    let state = store.append_audit(&entries(11..=12)).await.unwrap();
    assert_eq!(state.head_seq, 12);
    assert!(verify(&*store).await.is_intact());
    assert_eq!(store.prune_audit(i64::MAX).await.unwrap(), 3);
    let state = store.audit_state().await.unwrap();
    assert_eq!((state.anchor_seq, state.head_seq), (12, 12));
    assert_eq!(state.anchor_hash, state.head_hash);
    let report = verify(&*store).await;
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.records, 0);
    store.append_audit(&entries(13..=13)).await.unwrap();
    let report = verify(&*store).await;
    assert!(report.is_intact(), "{report:?}");
    assert_eq!((report.first_seq, report.last_seq), (Some(13), Some(13)));
}

pub async fn audit_rows_are_append_only(store: Arc<dyn Store>, db: Arc<dyn Backdoor>) {
    store.append_audit(&entries(1..=5)).await.unwrap();
    for sql in [
        "UPDATE audit_records SET status = 200 WHERE seq = 2",
        "DELETE FROM audit_records WHERE seq = 5",
        "DELETE FROM audit_records",
    ] {
        let err = db.execute(sql).await.unwrap_err();
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    // Pruning may delete, and leaves the guard up behind it.
    assert_eq!(store.prune_audit(T0 + 3_000).await.unwrap(), 2);
    let err = db.execute("DELETE FROM audit_records").await.unwrap_err();
    assert!(err.contains("append-only"), "{err}");
    assert_eq!(seqs(&all(&*store).await), [3, 4, 5]);
    assert!(verify(&*store).await.is_intact());
}

pub async fn audit_altered_records_are_found(store: Arc<dyn Store>, db: Arc<dyn Backdoor>) {
    append_intact(&*store, 10).await;
    let problems = problems_after(
        &*store,
        &*db,
        "UPDATE audit_records SET record = '{\"n\":999}' WHERE seq = 3; \
         UPDATE audit_records SET status = 200 WHERE seq = 7",
    )
    .await;
    assert_eq!(
        problems,
        [Problem::Altered { seq: 3 }, Problem::Altered { seq: 7 }]
    );
    assert_eq!(
        problems[0].to_string(),
        "record 3 was altered: its hash does not match its contents and the record before it"
    );
    // The altered records still read: only verification can tell.
    let stored = all(&*store).await;
    assert_eq!(
        stored[2].entry.record.to_value().unwrap(),
        json!({"n": 999})
    );
}

pub async fn audit_deleted_middle_records_are_missing(
    store: Arc<dyn Store>,
    db: Arc<dyn Backdoor>,
) {
    append_intact(&*store, 10).await;
    let problems = problems_after(
        &*store,
        &*db,
        "DELETE FROM audit_records WHERE seq = 5 OR seq BETWEEN 7 AND 8",
    )
    .await;
    assert_eq!(
        problems,
        [
            Problem::Missing { after: 4, next: 6 },
            Problem::Missing { after: 6, next: 9 }
        ]
    );
}

pub async fn audit_deleted_last_records_are_truncated(
    store: Arc<dyn Store>,
    db: Arc<dyn Backdoor>,
) {
    append_intact(&*store, 10).await;
    let problems = problems_after(&*store, &*db, "DELETE FROM audit_records WHERE seq >= 9").await;
    assert_eq!(
        problems,
        [Problem::Truncated {
            last_seq: 8,
            head_seq: 10
        }]
    );
}

pub async fn audit_torn_last_record_is_reported(store: Arc<dyn Store>, db: Arc<dyn Backdoor>) {
    append_intact(&*store, 10).await;
    let problems = problems_after(
        &*store,
        &*db,
        "UPDATE audit_records SET record = substr(record, 1, length(record) / 2) WHERE seq = 10",
    )
    .await;
    assert_eq!(problems, [Problem::Torn { seq: 10 }]);
    // Reading it as a record fails, naming it; the raw row still reads.
    let err = store
        .audit_page(&query(
            AuditFilter::default(),
            AuditOrder::Descending,
            None,
            1,
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { entity: "audit record", id, .. } if id == "10"),
        "{err:?}"
    );
    let raw = store.audit_chain(9, 10).await.unwrap();
    assert!(serde_json::from_str::<serde_json::Value>(&raw[0].record).is_err());
}

pub async fn audit_concurrent_appenders_form_one_chain(
    store: Arc<dyn Store>,
    db: Arc<dyn Backdoor>,
) {
    const TASKS: u64 = 8;
    const BATCHES: u64 = 50;
    const PER_BATCH: u64 = 5;
    // Half the tasks write through a second store on the same database, as a replica would.
    let other = db.another_store().await;
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let log: Arc<dyn AuditLog> = if task % 2 == 0 {
            store.clone()
        } else {
            other.clone()
        };
        tasks.spawn(async move {
            for batch in 0..BATCHES {
                let first = (task * BATCHES + batch) * PER_BATCH + 1;
                log.append_audit(&entries(first..=first + PER_BATCH - 1))
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.unwrap();
    }
    let total = TASKS * BATCHES * PER_BATCH;
    let report = verify(&*store).await;
    assert!(report.is_intact(), "{report:?}");
    assert_eq!((report.records, report.head_seq), (total, total));

    // Every entry is there exactly once, with no gap or duplicate seq, and each batch's
    // entries are consecutive.
    let mut records = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .audit_page(&query(
                AuditFilter::default(),
                AuditOrder::Ascending,
                cursor,
                1000,
            ))
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        cursor = Some(last.seq);
        records.extend(page);
    }
    assert_eq!(seqs(&records), (1..=total).collect::<Vec<_>>());
    let numbers: Vec<u64> = records
        .iter()
        .map(|record| {
            record.entry.record.to_value().unwrap()["n"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(
        numbers.iter().copied().collect::<BTreeSet<_>>().len() as u64,
        total
    );
    for batch in numbers.chunks(PER_BATCH as usize) {
        assert_eq!(
            (batch[0] - 1) % PER_BATCH,
            0,
            "a batch starts the chunk: {batch:?}"
        );
        let consecutive: Vec<u64> = (batch[0]..batch[0] + PER_BATCH).collect();
        assert_eq!(batch, consecutive.as_slice());
    }
}
