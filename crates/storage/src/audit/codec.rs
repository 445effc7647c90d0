//! What both backends share for the audit log: entries linked into rows ready to insert, rows
//! and the chain state as stored, the conversions between them, and page queries.

use sqlx::{Database, Encode, QueryBuilder, Type};

use super::chain::{Fields, Hash, link_hash, to_hash};
use super::{AuditEntry, AuditOrder, AuditQuery, AuditRecord, ChainState, RawAuditRow, RecordJson};
use crate::error::StoreError;

/// Page size when the query says 0.
const DEFAULT_PAGE_LIMIT: u32 = 100;
/// The most records one page returns.
const MAX_PAGE_LIMIT: u32 = 1_000;
/// The most raw rows one `audit_chain` call returns.
const MAX_CHAIN_LIMIT: u32 = 10_000;

/// The stored columns in table order, as both backends read them (PostgreSQL widens `status`
/// to match SQLite's 64-bit integers).
macro_rules! audit_columns {
    (sqlite) => {
        "seq, time_ms, kind, request_id, tenant_id, key_id, route, model, status, record, hash"
    };
    (postgres) => {
        "seq, time_ms, kind, request_id, tenant_id, key_id, route, model, \
         status::BIGINT AS status, record, hash"
    };
}
pub(crate) use audit_columns;

/// The one row of `audit_chain`, as stored.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ChainRow {
    pub head_seq: i64,
    pub head_hash: Vec<u8>,
    pub anchor_seq: i64,
    pub anchor_hash: Vec<u8>,
}

impl ChainRow {
    pub fn decode(self) -> Result<ChainState, StoreError> {
        let corrupt = |message: String| StoreError::Corrupt {
            entity: "audit chain",
            id: "head".to_owned(),
            message,
        };
        let seq = |name: &str, value: i64| {
            u64::try_from(value).map_err(|_| corrupt(format!("negative {name} {value}")))
        };
        let hash = |name: &str, bytes: &[u8]| {
            to_hash(bytes).ok_or_else(|| corrupt(format!("{name} has {} bytes", bytes.len())))
        };
        Ok(ChainState {
            head_seq: seq("head_seq", self.head_seq)?,
            head_hash: hash("head_hash", &self.head_hash)?,
            anchor_seq: seq("anchor_seq", self.anchor_seq)?,
            anchor_hash: hash("anchor_hash", &self.anchor_hash)?,
        })
    }
}

/// An audit record as stored.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct AuditRow {
    pub seq: i64,
    pub time_ms: i64,
    pub kind: String,
    pub request_id: String,
    pub tenant_id: Option<String>,
    pub key_id: Option<String>,
    pub route: String,
    pub model: Option<String>,
    pub status: i64,
    pub record: String,
    pub hash: Vec<u8>,
}

impl AuditRow {
    /// The row as [`RawAuditRow`]; fails only on a negative `seq`, which the queries (always
    /// `seq > n` with `n >= 0`) never return.
    pub fn raw(self) -> Result<RawAuditRow, StoreError> {
        let seq = u64::try_from(self.seq).map_err(|_| StoreError::Corrupt {
            entity: "audit record",
            id: self.seq.to_string(),
            message: "negative seq".to_owned(),
        })?;
        Ok(RawAuditRow {
            seq,
            time: self.time_ms,
            kind: self.kind,
            request_id: self.request_id,
            tenant_id: self.tenant_id,
            key_id: self.key_id,
            route: self.route,
            model: self.model,
            status: self.status,
            record: self.record,
            hash: self.hash,
        })
    }

    pub fn decode(self) -> Result<AuditRecord, StoreError> {
        self.raw()?.decode()
    }
}

impl RawAuditRow {
    /// The hashed fields of this row.
    pub(crate) fn fields(&self) -> Fields<'_> {
        Fields {
            seq: self.seq,
            time: self.time,
            kind: &self.kind,
            request_id: &self.request_id,
            tenant_id: self.tenant_id.as_deref(),
            key_id: self.key_id.as_deref(),
            route: &self.route,
            model: self.model.as_deref(),
            status: self.status,
            record: &self.record,
        }
    }

    pub(crate) fn decode(self) -> Result<AuditRecord, StoreError> {
        let corrupt = |message: String| StoreError::Corrupt {
            entity: "audit record",
            id: self.seq.to_string(),
            message,
        };
        let status = u16::try_from(self.status)
            .map_err(|_| corrupt(format!("status {} is not an HTTP status", self.status)))?;
        let hash = to_hash(&self.hash)
            .ok_or_else(|| corrupt(format!("hash has {} bytes", self.hash.len())))?;
        let record = RecordJson::from_text(self.record)
            .map_err(|err| corrupt(format!("column `record`: {err}")))?;
        if !record.is_object() {
            return Err(corrupt("column `record` is not a JSON object".to_owned()));
        }
        Ok(AuditRecord {
            seq: self.seq,
            entry: AuditEntry {
                time: self.time,
                kind: self.kind,
                request_id: self.request_id,
                tenant_id: self.tenant_id,
                key_id: self.key_id,
                route: self.route,
                model: self.model,
                status,
                record,
            },
            hash,
        })
    }
}

/// A record ready to insert: numbered, linked, its JSON text exactly as hashed.
#[derive(Debug)]
pub(crate) struct NewRow<'a> {
    pub seq: i64,
    pub entry: &'a AuditEntry,
    pub record: &'a str,
    pub hash: Hash,
}

/// Entries whose records are serialized, before the chain head is known; done outside the
/// write transaction so that it holds the lock only for hashing and inserting.
#[derive(Debug)]
pub(crate) struct EncodedBatch<'a> {
    entries: &'a [AuditEntry],
    records: Vec<&'a str>,
}

impl<'a> EncodedBatch<'a> {
    /// Serializes every record.
    ///
    /// # Errors
    /// [`StoreError::Database`] when a record is not a JSON object.
    pub fn encode(entries: &'a [AuditEntry]) -> Result<Self, StoreError> {
        let records = entries
            .iter()
            .map(|entry| {
                if !entry.record.is_object() {
                    return Err(StoreError::Database(format!(
                        "cannot encode audit entry `{}`: its record is not a JSON object",
                        entry.request_id
                    )));
                }
                Ok(entry.record.as_str())
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { entries, records })
    }

    /// Numbers and links the entries after `state`'s head; returns the rows and the state after
    /// them.
    ///
    /// # Errors
    /// [`StoreError::Database`] when `seq` would pass `i64::MAX`.
    pub fn link(self, state: &ChainState) -> Result<(Vec<NewRow<'a>>, ChainState), StoreError> {
        let mut rows = Vec::with_capacity(self.entries.len());
        let mut seq = state.head_seq;
        let mut hash = state.head_hash;
        for (entry, record) in self.entries.iter().zip(self.records) {
            seq = seq
                .checked_add(1)
                .filter(|next| i64::try_from(*next).is_ok())
                .ok_or_else(|| StoreError::Database("audit log seq overflow".to_owned()))?;
            hash = link_hash(&hash, &entry_fields(seq, entry, record));
            rows.push(NewRow {
                seq: i64::try_from(seq).unwrap_or(i64::MAX),
                entry,
                record,
                hash,
            });
        }
        let after = ChainState {
            head_seq: seq,
            head_hash: hash,
            ..*state
        };
        Ok((rows, after))
    }
}

fn entry_fields<'a>(seq: u64, entry: &'a AuditEntry, record: &'a str) -> Fields<'a> {
    Fields {
        seq,
        time: entry.time,
        kind: &entry.kind,
        request_id: &entry.request_id,
        tenant_id: entry.tenant_id.as_deref(),
        key_id: entry.key_id.as_deref(),
        route: &entry.route,
        model: entry.model.as_deref(),
        status: i64::from(entry.status),
        record,
    }
}

/// The last record a prune removes, with its hash: the one before the first record at or
/// after the cut-off (or the head, when there is none), if it comes after the anchor.
/// Parameters: anchor seq, cut-off time, head seq; the same text runs on both backends.
///
/// `+time_ms` keeps the time index out of the inner query: walking `seq` from the anchor stops
/// at the first record to keep, after reading only those to remove, while the time index would
/// read every record to keep.
pub(crate) const LAST_TO_PRUNE: &str = "SELECT seq, hash FROM audit_records \
    WHERE seq > $1 AND seq < COALESCE((SELECT seq FROM audit_records \
    WHERE seq > $1 AND +time_ms >= $2 ORDER BY seq LIMIT 1), $3 + 1) \
    ORDER BY seq DESC LIMIT 1";

/// The chain state after a prune that removes records up to `last` (from [`LAST_TO_PRUNE`]),
/// or `None` when there is nothing to remove.
///
/// # Errors
/// [`StoreError::Corrupt`] when the last record to remove has a damaged hash: it cannot become
/// the anchor.
pub(crate) fn new_anchor(
    last: Option<(i64, Vec<u8>)>,
    state: &ChainState,
) -> Result<Option<ChainState>, StoreError> {
    let Some((seq, hash)) = last else {
        return Ok(None);
    };
    let corrupt = |message: String| StoreError::Corrupt {
        entity: "audit record",
        id: seq.to_string(),
        message,
    };
    let anchor_seq = u64::try_from(seq).map_err(|_| corrupt("negative seq".to_owned()))?;
    let anchor_hash = to_hash(&hash).ok_or_else(|| {
        corrupt(format!(
            "cannot prune up to it: its hash has {} bytes",
            hash.len()
        ))
    })?;
    Ok(Some(ChainState {
        anchor_seq,
        anchor_hash,
        ..*state
    }))
}

/// `seq` as the database stores it; a larger one (never assigned) saturates, which keeps
/// `seq > n` and `seq < n` comparisons right.
pub(crate) fn seq_param(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

/// The number of raw rows to read: at least 1, at most 10,000.
pub(crate) fn chain_limit(limit: u32) -> i64 {
    i64::from(limit.clamp(1, MAX_CHAIN_LIMIT))
}

/// Appends to `builder` (a `SELECT … FROM audit_records`) the conditions, order and limit of
/// `query`, with placeholders in the backend's syntax.
pub(crate) fn push_page_query<DB>(builder: &mut QueryBuilder<DB>, query: &AuditQuery)
where
    DB: Database,
    for<'e> i64: Encode<'e, DB> + Type<DB>,
    for<'e> String: Encode<'e, DB> + Type<DB>,
{
    let mut conditions = Conditions { first: true };
    let filter = &query.filter;
    if let Some(cursor) = query.cursor {
        let comparison = match query.order {
            AuditOrder::Ascending => "seq > ",
            AuditOrder::Descending => "seq < ",
        };
        conditions
            .next(builder, comparison)
            .push_bind(seq_param(cursor));
    }
    if let Some(since) = filter.since {
        conditions.next(builder, "time_ms >= ").push_bind(since);
    }
    if let Some(until) = filter.until {
        conditions.next(builder, "time_ms < ").push_bind(until);
    }
    for (column, value) in [
        ("tenant_id = ", &filter.tenant_id),
        ("key_id = ", &filter.key_id),
        ("model = ", &filter.model),
        ("kind = ", &filter.kind),
    ] {
        if let Some(value) = value {
            conditions.next(builder, column).push_bind(value.clone());
        }
    }
    if let Some(status) = filter.status {
        let (low, high) = status.range();
        conditions
            .next(builder, "status BETWEEN ")
            .push_bind(low)
            .push(" AND ")
            .push_bind(high);
    }
    builder.push(match query.order {
        AuditOrder::Ascending => " ORDER BY seq ASC LIMIT ",
        AuditOrder::Descending => " ORDER BY seq DESC LIMIT ",
    });
    builder.push_bind(page_limit(query.limit));
}

/// Joins conditions with `WHERE` and `AND`.
struct Conditions {
    first: bool,
}

impl Conditions {
    fn next<'b, DB: Database>(
        &mut self,
        builder: &'b mut QueryBuilder<DB>,
        condition: &str,
    ) -> &'b mut QueryBuilder<DB> {
        builder.push(if self.first { " WHERE " } else { " AND " });
        self.first = false;
        builder.push(condition)
    }
}

/// The number of records to return: 0 means the default, and the store caps it.
fn page_limit(limit: u32) -> i64 {
    let limit = match limit {
        0 => DEFAULT_PAGE_LIMIT,
        limit => limit.min(MAX_PAGE_LIMIT),
    };
    i64::from(limit)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use sqlx::Sqlite;

    use super::*;
    use crate::audit::chain::ZERO_HASH;
    use crate::audit::{AuditFilter, StatusFilter};

    fn entry(record: serde_json::Value) -> AuditEntry {
        AuditEntry {
            time: 5,
            kind: "request".into(),
            request_id: "req_1".into(),
            tenant_id: Some("acme".into()),
            key_id: None,
            route: "/v1/chat/completions".into(),
            model: Some("chat".into()),
            status: 200,
            record: RecordJson::of(&record).unwrap(),
        }
    }

    fn sql_of(query: &AuditQuery) -> String {
        let mut builder = QueryBuilder::<Sqlite>::new("SELECT seq FROM audit_records");
        push_page_query(&mut builder, query);
        builder.into_string()
    }

    #[test]
    fn page_limit_defaults_and_caps() {
        for (requested, expected) in [(0, 100), (1, 1), (1000, 1000), (5000, 1000)] {
            assert_eq!(page_limit(requested), expected, "limit {requested}");
        }
        for (requested, expected) in [(0, 1), (5000, 5000), (u32::MAX, 10_000)] {
            assert_eq!(chain_limit(requested), expected, "limit {requested}");
        }
    }

    #[test]
    fn page_queries_join_every_condition() {
        assert_eq!(
            sql_of(&AuditQuery::default()),
            "SELECT seq FROM audit_records ORDER BY seq ASC LIMIT ?"
        );
        let query = AuditQuery {
            filter: AuditFilter {
                since: Some(1),
                until: Some(2),
                tenant_id: Some("t".into()),
                key_id: Some("k".into()),
                model: Some("m".into()),
                kind: Some("admin".into()),
                status: Some(StatusFilter::Class(4)),
            },
            order: AuditOrder::Descending,
            cursor: Some(9),
            limit: 10,
        };
        assert_eq!(
            sql_of(&query),
            "SELECT seq FROM audit_records WHERE seq < ? AND time_ms >= ? AND time_ms < ? \
             AND tenant_id = ? AND key_id = ? AND model = ? AND kind = ? \
             AND status BETWEEN ? AND ? ORDER BY seq DESC LIMIT ?"
        );
    }

    #[test]
    fn linking_numbers_and_chains_after_the_head() {
        let entries = [
            entry(serde_json::json!({"b": 1, "a": [true]})),
            entry(serde_json::json!({})),
        ];
        let start = ChainState {
            head_seq: 41,
            head_hash: [3; 32],
            anchor_seq: 10,
            anchor_hash: [4; 32],
        };
        let (rows, after) = EncodedBatch::encode(&entries)
            .unwrap()
            .link(&start)
            .unwrap();
        assert_eq!(rows.iter().map(|row| row.seq).collect::<Vec<_>>(), [42, 43]);
        // Object keys are sorted: the stored text is canonical.
        assert_eq!(rows[0].record, r#"{"a":[true],"b":1}"#);
        let first = link_hash(&[3; 32], &entry_fields(42, &entries[0], rows[0].record));
        assert_eq!(rows[0].hash, first);
        assert_eq!(
            rows[1].hash,
            link_hash(&first, &entry_fields(43, &entries[1], "{}"))
        );
        assert_eq!(
            after,
            ChainState {
                head_seq: 43,
                head_hash: rows[1].hash,
                ..start
            }
        );
    }

    #[test]
    fn records_must_be_objects() {
        for bad in [
            serde_json::json!([1]),
            serde_json::json!("x"),
            serde_json::Value::Null,
        ] {
            let entries = [entry(serde_json::json!({})), entry(bad)];
            let err = EncodedBatch::encode(&entries).unwrap_err();
            assert!(err.to_string().contains("req_1"), "{err}");
        }
    }

    #[test]
    fn seq_cannot_pass_the_database_integer() {
        let entries = [entry(serde_json::json!({}))];
        let full = ChainState {
            head_seq: u64::try_from(i64::MAX).unwrap(),
            ..ChainState::default()
        };
        let err = EncodedBatch::encode(&entries).unwrap().link(&full);
        assert!(err.is_err());
    }

    #[test]
    fn damaged_rows_decode_to_corrupt_errors() {
        let good = RawAuditRow {
            seq: 3,
            time: 1,
            kind: "request".into(),
            request_id: "r".into(),
            tenant_id: None,
            key_id: None,
            route: "/".into(),
            model: None,
            status: 200,
            record: "{}".into(),
            hash: ZERO_HASH.to_vec(),
        };
        assert!(good.clone().decode().is_ok());
        let damaged = [
            RawAuditRow {
                status: 70_000,
                ..good.clone()
            },
            RawAuditRow {
                hash: vec![1; 16],
                ..good.clone()
            },
            RawAuditRow {
                record: "{\"a\":".into(),
                ..good.clone()
            },
            RawAuditRow {
                record: "[]".into(),
                ..good.clone()
            },
        ];
        for row in damaged {
            let err = row.clone().decode().unwrap_err();
            assert!(
                matches!(&err, StoreError::Corrupt { entity: "audit record", id, .. } if id == "3"),
                "{row:?}: {err:?}"
            );
        }
        let chain = ChainRow {
            head_seq: 1,
            head_hash: vec![0; 31],
            anchor_seq: 0,
            anchor_hash: vec![0; 32],
        };
        assert!(matches!(
            chain.decode(),
            Err(StoreError::Corrupt {
                entity: "audit chain",
                ..
            })
        ));
    }
}
