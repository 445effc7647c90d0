//! The audit log: every API request and admin action, appended in one hash-chained line that
//! [`verify_audit`] can check end to end, behind the [`AuditLog`] trait.
//!
//! Each record carries `seq` (1, 2, 3 …, never reused) and
//! `hash = SHA-256(previous hash ‖ canonical bytes of the record)` (see `audit/chain.rs`), so
//! changing, removing or reordering any record breaks the chain from there on. Retention
//! removes only a prefix of the chain and remembers the last removed record as the *anchor*,
//! so what remains still verifies from the anchor on.
//!
//! Database triggers refuse updates and deletes of audit rows other than retention's, which
//! catches mistakes; anyone with write access to the database can drop them. The hash chain is
//! the real guarantee: it cannot be rewritten without the change showing, short of rewriting
//! every later record and the chain head too.

pub(crate) mod chain;
pub(crate) mod codec;
mod verify;

use async_trait::async_trait;
use serde::{Deserialize, Serialize, Serializer};

use crate::error::StoreError;
use crate::model::UnixMillis;
pub use verify::{Problem, VerifyReport, verify_audit};

/// What the writer appends: one request or admin action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub time: UnixMillis,
    /// `request`, `admin` or `system`.
    pub kind: String,
    pub request_id: String,
    pub tenant_id: Option<String>,
    pub key_id: Option<String>,
    /// What was called, e.g. `/v1/chat/completions` or `POST /admin/v1/keys`.
    pub route: String,
    /// The model alias asked for.
    pub model: Option<String>,
    /// The HTTP status answered.
    pub status: u16,
    /// The rest of the record, a JSON object (latencies, tokens, cost, client address, user
    /// agent, bodies …), kept as the text it was written as.
    pub record: RecordJson,
}

/// A record's JSON object as text, stored (and hashed) exactly as written: appending never
/// re-serializes it, and reading it back never builds a tree unless asked to.
#[derive(Clone)]
pub struct RecordJson(String);

/// Room for a typical record, so serializing it does not grow the buffer.
const RECORD_CAPACITY: usize = 768;

impl RecordJson {
    /// `value` serialized.
    ///
    /// # Errors
    /// When `value` cannot be serialized as JSON (a map with non-string keys, say).
    pub fn of(value: &impl Serialize) -> Result<Self, serde_json::Error> {
        let mut text = Vec::with_capacity(RECORD_CAPACITY);
        serde_json::to_writer(&mut text, value)?;
        // serde_json writes UTF-8 only.
        String::from_utf8(text)
            .map(Self)
            .map_err(serde::ser::Error::custom)
    }

    /// Checks that `text` is JSON.
    ///
    /// # Errors
    /// When it is not.
    pub fn from_text(text: String) -> Result<Self, serde_json::Error> {
        serde_json::from_str::<serde::de::IgnoredAny>(&text)?;
        Ok(Self(text))
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the text is a JSON object (the only kind of record the log accepts).
    #[must_use]
    pub fn is_object(&self) -> bool {
        self.0.starts_with('{')
    }

    /// The record parsed into a tree.
    ///
    /// # Errors
    /// Never for text that came from [`RecordJson::of`] or [`RecordJson::from_text`].
    pub fn to_value(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_str(&self.0)
    }
}

impl PartialEq for RecordJson {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl std::fmt::Debug for RecordJson {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// Written as the JSON it holds (checked again on the way out: reads are rare, writes are not).
impl Serialize for RecordJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let raw: &serde_json::value::RawValue =
            serde_json::from_str(&self.0).map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for RecordJson {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Box::<serde_json::value::RawValue>::deserialize(deserializer)
            .map(|raw| Self(String::from(Box::<str>::from(raw))))
    }
}

/// A stored entry and its place in the chain.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRecord {
    pub seq: u64,
    #[serde(flatten)]
    pub entry: AuditEntry,
    /// Links this record to the one before it; serialized as lowercase hex.
    #[serde(serialize_with = "serialize_hash")]
    pub hash: [u8; 32],
}

/// A stored row exactly as the database holds it, for verification: a damaged row (a hash of
/// the wrong length, record text cut short) can still be read and reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawAuditRow {
    pub seq: u64,
    pub time: UnixMillis,
    pub kind: String,
    pub request_id: String,
    pub tenant_id: Option<String>,
    pub key_id: Option<String>,
    pub route: String,
    pub model: Option<String>,
    /// As stored; a valid record has a `u16` here.
    pub status: i64,
    /// The JSON text that was hashed.
    pub record: String,
    /// 32 bytes in a valid record.
    pub hash: Vec<u8>,
}

/// Which records a page holds. Every condition given must hold; `None` means any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Records at this time or later.
    pub since: Option<UnixMillis>,
    /// Records before this time (exclusive).
    pub until: Option<UnixMillis>,
    pub tenant_id: Option<String>,
    pub key_id: Option<String>,
    pub model: Option<String>,
    pub kind: Option<String>,
    pub status: Option<StatusFilter>,
}

/// A condition on the HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    /// Exactly this status.
    Exact(u16),
    /// Every status of a class: `2` is 200 to 299, `4` is 400 to 499.
    Class(u16),
}

impl StatusFilter {
    /// The statuses that match, as an inclusive range.
    #[must_use]
    pub fn range(self) -> (i64, i64) {
        match self {
            Self::Exact(status) => (i64::from(status), i64::from(status)),
            Self::Class(class) => {
                let low = i64::from(class) * 100;
                (low, low + 99)
            }
        }
    }
}

/// The order of a page, by `seq`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AuditOrder {
    /// Oldest first.
    #[default]
    Ascending,
    /// Newest first.
    Descending,
}

/// One page of records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub filter: AuditFilter,
    pub order: AuditOrder,
    /// Only records after (ascending) or before (descending) this `seq`: the last `seq` of the
    /// previous page.
    pub cursor: Option<u64>,
    /// At most this many records; 0 means 100, and the store caps it at 1,000.
    pub limit: u32,
}

/// Where the chain stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ChainState {
    /// The last record appended (0 before the first).
    pub head_seq: u64,
    #[serde(serialize_with = "serialize_hash")]
    pub head_hash: [u8; 32],
    /// The last record removed by retention (0 when none was).
    pub anchor_seq: u64,
    /// Its hash, which the first remaining record links to (all zeros when none was).
    #[serde(serialize_with = "serialize_hash")]
    pub anchor_hash: [u8; 32],
}

/// The append-only, hash-chained audit log.
///
/// Guarantees, for every implementation:
/// - `append_audit` writes all its entries in one transaction or none of them, in the order
///   given, numbered with consecutive `seq` continuing the chain (the first record ever is 1),
///   each linked by its hash to the one before; appends from any number of tasks or server
///   replicas sharing the database form one line with no gap or duplicate;
/// - a write that returned `Ok` is durable;
/// - records are never changed; the only removal is `prune_audit`, which removes a prefix of
///   the chain and moves the anchor, in one transaction;
/// - reads return records in `seq` order.
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Appends `entries` in order and returns the chain state after them. An empty slice
    /// writes nothing and returns the current state.
    ///
    /// # Errors
    /// [`StoreError::Database`] when a record is not a JSON object (nothing is written), and
    /// [`StoreError::Unavailable`] or [`StoreError::Database`] when the write fails.
    async fn append_audit(&self, entries: &[AuditEntry]) -> Result<ChainState, StoreError>;

    /// The records matching `query.filter`, ordered by `seq` in `query.order`, from
    /// `query.cursor` on.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when a matching record cannot be decoded (use
    /// [`verify_audit`] to find out why), or a database error.
    async fn audit_page(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError>;

    /// Up to `limit` stored rows (at least 1, at most 10,000) with `seq > after_seq`, in `seq`
    /// order, undecoded, for verification.
    ///
    /// # Errors
    /// A database error.
    async fn audit_chain(&self, after_seq: u64, limit: u32)
    -> Result<Vec<RawAuditRow>, StoreError>;

    /// The chain head and anchor.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when the stored state is damaged, or a database error.
    async fn audit_state(&self) -> Result<ChainState, StoreError>;

    /// Removes the records with `time < before` that come before the first record with
    /// `time >= before` (so that the chain never gets a hole when clocks of replicas
    /// disagree), moves the anchor to the last one removed, and returns how many were removed.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when the last record to remove has a damaged hash (nothing is
    /// removed), or a database error.
    async fn prune_audit(&self, before: UnixMillis) -> Result<u64, StoreError>;
}

fn serialize_hash<S: Serializer>(hash: &[u8; 32], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&hex::encode(hash))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn status_filters_cover_their_range() {
        for (filter, range) in [
            (StatusFilter::Exact(404), (404, 404)),
            (StatusFilter::Class(2), (200, 299)),
            (StatusFilter::Class(5), (500, 599)),
            (StatusFilter::Class(0), (0, 99)),
            (StatusFilter::Class(u16::MAX), (6_553_500, 6_553_599)),
        ] {
            assert_eq!(filter.range(), range, "{filter:?}");
        }
    }

    #[test]
    fn records_serialize_flat_with_a_hex_hash() {
        let record = AuditRecord {
            seq: 7,
            entry: AuditEntry {
                time: 1,
                kind: "admin".into(),
                request_id: "req".into(),
                tenant_id: None,
                key_id: Some("key_a".into()),
                route: "POST /admin/v1/keys".into(),
                model: None,
                status: 201,
                record: RecordJson::of(&serde_json::json!({"actor": "root"})).unwrap(),
            },
            hash: [0xab; 32],
        };
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["seq"], 7);
        assert_eq!(json["status"], 201);
        assert_eq!(json["record"]["actor"], "root");
        assert_eq!(json["hash"], "ab".repeat(32));
    }
}
