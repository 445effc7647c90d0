//! Checking a whole audit log: read in pages from the anchor, rehash every record, and compare
//! the end of the chain with its head.

use std::fmt;

use serde::Serialize;

use super::chain::{Hash, link_hash, to_hash};
use super::{AuditLog, ChainState, RawAuditRow, serialize_hash};
use crate::error::StoreError;

/// Rows read per call while verifying.
const PAGE_ROWS: u32 = 5_000;
/// Problems listed in a report; the rest are only counted.
const MAX_PROBLEMS: usize = 100;

/// Something wrong with the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    /// The records between `after` and `next` (both present) are gone.
    Missing { after: u64, next: u64 },
    /// The record's hash does not match its contents and the record before it.
    Altered { seq: u64 },
    /// The last record is incomplete: a write cut short.
    Torn { seq: u64 },
    /// Records after `last_seq` up to `head_seq`, the last one appended, are gone.
    Truncated { last_seq: u64, head_seq: u64 },
    /// The last record's hash is not the one the chain head recorded.
    HeadMismatch { seq: u64 },
}

impl fmt::Display for Problem {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Missing { after, next } if next == after.saturating_add(2) => write!(
                formatter,
                "record {} is missing: it was deleted, and the log goes on at record {next}",
                after.saturating_add(1)
            ),
            Self::Missing { after, next } => write!(
                formatter,
                "records {} to {} are missing: {} records were deleted, and the log goes on at \
                 record {next}",
                after.saturating_add(1),
                next.saturating_sub(1),
                next.saturating_sub(after).saturating_sub(1)
            ),
            Self::Altered { seq } => write!(
                formatter,
                "record {seq} was altered: its hash does not match its contents and the record \
                 before it"
            ),
            Self::Torn { seq } => write!(
                formatter,
                "record {seq}, the last one, is incomplete: its write was cut short"
            ),
            Self::Truncated { last_seq, head_seq } => write!(
                formatter,
                "records {} to {head_seq} are missing from the end of the log: {head_seq} \
                 records were appended but the last one found is record {last_seq}",
                last_seq.saturating_add(1)
            ),
            Self::HeadMismatch { seq } => write!(
                formatter,
                "record {seq}, the last one, does not match the chain head: the record or the \
                 head was altered"
            ),
        }
    }
}

/// The outcome of [`verify_audit`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Records checked.
    pub records: u64,
    /// The first and last record found (`None` when there were none).
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Where verification started: the last record removed by retention (0 when none was).
    pub anchor_seq: u64,
    /// The last record appended, according to the chain head, and its hash.
    pub head_seq: u64,
    #[serde(serialize_with = "serialize_hash")]
    pub head_hash: [u8; 32],
    /// The first problems found, in log order.
    pub problems: Vec<Problem>,
    /// Problems found beyond the first 100.
    pub problems_omitted: u64,
}

impl VerifyReport {
    /// Whether nothing is wrong.
    #[must_use]
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty() && self.problems_omitted == 0
    }
}

/// Verifies the whole audit log from the anchor to the head: `seq` continuity, every record's
/// hash against its stored contents and the record before it, and the last record against the
/// chain head. Records appended while it runs are left for the next run. Calls `progress`
/// with the number of records checked so far after each page.
///
/// Reads pages of 5,000 rows, each hashed off the async reactor while the next one is read.
/// When retention removes records during the walk (so some look missing), the walk starts
/// again once from the new anchor.
///
/// # Errors
/// Only when the log cannot be read; everything found wrong with it is in the report.
pub async fn verify_audit(
    log: &dyn AuditLog,
    mut progress: impl FnMut(u64),
) -> Result<VerifyReport, StoreError> {
    let report = walk(log, &mut progress).await?;
    let pruned_meanwhile = report
        .problems
        .iter()
        .any(|problem| matches!(problem, Problem::Missing { .. }))
        && log.audit_state().await?.anchor_seq != report.anchor_seq;
    if pruned_meanwhile {
        return walk(log, &mut progress).await;
    }
    Ok(report)
}

async fn walk(
    log: &dyn AuditLog,
    progress: &mut impl FnMut(u64),
) -> Result<VerifyReport, StoreError> {
    let state = log.audit_state().await?;
    let mut walker = Walker::new(&state);
    let mut page = log.audit_chain(state.anchor_seq, PAGE_ROWS).await?;
    loop {
        let full = page.len() >= PAGE_ROWS as usize;
        page.retain(|row| row.seq <= state.head_seq);
        let Some(last) = page.last() else {
            break;
        };
        let after = last.seq;
        let more = full && after < state.head_seq;
        let check = tokio::task::spawn_blocking(move || {
            walker.check(&page);
            walker
        });
        let next = async {
            if more {
                log.audit_chain(after, PAGE_ROWS).await
            } else {
                Ok(Vec::new())
            }
        };
        let (checked, next) = tokio::join!(check, next);
        walker = checked
            .map_err(|err| StoreError::Database(format!("audit verification stopped: {err}")))?;
        progress(walker.records);
        page = next?;
    }
    Ok(walker.finish(&state))
}

/// The state of a walk along the chain: pure logic, fed one page at a time.
#[derive(Debug)]
struct Walker {
    prev_seq: u64,
    prev_hash: Hash,
    records: u64,
    first_seq: Option<u64>,
    last_stored_hash: Option<Vec<u8>>,
    /// A record whose hash did not match and that looks cut short: torn if it is the last
    /// one, altered otherwise.
    suspect: Option<u64>,
    problems: Vec<Problem>,
    problems_omitted: u64,
}

impl Walker {
    fn new(state: &ChainState) -> Self {
        Self {
            prev_seq: state.anchor_seq,
            prev_hash: state.anchor_hash,
            records: 0,
            first_seq: None,
            last_stored_hash: None,
            suspect: None,
            problems: Vec::new(),
            problems_omitted: 0,
        }
    }

    /// Checks `rows`, the next rows of the chain in `seq` order.
    fn check(&mut self, rows: &[RawAuditRow]) {
        for row in rows {
            self.check_row(row);
        }
    }

    fn check_row(&mut self, row: &RawAuditRow) {
        if let Some(seq) = self.suspect.take() {
            self.report(Problem::Altered { seq });
        }
        let stored = to_hash(&row.hash);
        if row.seq > self.prev_seq.saturating_add(1) {
            self.report(Problem::Missing {
                after: self.prev_seq,
                next: row.seq,
            });
            // The hash of the record before is gone with it, so this link cannot be checked;
            // the chain is checked again from here on.
            self.prev_hash = stored.unwrap_or(self.prev_hash);
        } else {
            let expected = link_hash(&self.prev_hash, &row.fields());
            if stored != Some(expected) {
                if looks_torn(row) {
                    self.suspect = Some(row.seq);
                } else {
                    self.report(Problem::Altered { seq: row.seq });
                }
            }
            // The next record links to what is stored; when that is unreadable, to what should
            // be, so that one damaged record is reported once.
            self.prev_hash = stored.unwrap_or(expected);
        }
        self.prev_seq = row.seq;
        self.records += 1;
        self.first_seq.get_or_insert(row.seq);
        self.last_stored_hash = Some(row.hash.clone());
    }

    fn report(&mut self, problem: Problem) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(problem);
        } else {
            self.problems_omitted += 1;
        }
    }

    fn finish(mut self, state: &ChainState) -> VerifyReport {
        let torn = self.suspect.take();
        if let Some(seq) = torn {
            self.report(Problem::Torn { seq });
        }
        if self.prev_seq < state.head_seq {
            self.report(Problem::Truncated {
                last_seq: self.prev_seq,
                head_seq: state.head_seq,
            });
        } else if torn.is_none() {
            let last_hash = self
                .last_stored_hash
                .as_deref()
                .unwrap_or(&state.anchor_hash);
            if last_hash != state.head_hash {
                self.report(Problem::HeadMismatch { seq: self.prev_seq });
            }
        }
        VerifyReport {
            records: self.records,
            first_seq: self.first_seq,
            last_seq: self.first_seq.map(|_| self.prev_seq),
            anchor_seq: state.anchor_seq,
            head_seq: state.head_seq,
            head_hash: state.head_hash,
            problems: self.problems,
            problems_omitted: self.problems_omitted,
        }
    }
}

/// What a write cut short leaves: a hash of the wrong length, or record text that is not a
/// whole JSON object.
fn looks_torn(row: &RawAuditRow) -> bool {
    row.hash.len() != 32
        || serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&row.record).is_err()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::audit::chain::ZERO_HASH;

    /// A correct chain of `count` rows after `anchor`.
    fn chain(anchor: (u64, Hash), count: u64) -> Vec<RawAuditRow> {
        let mut prev = anchor.1;
        (anchor.0 + 1..=anchor.0 + count)
            .map(|seq| {
                let mut row = RawAuditRow {
                    seq,
                    time: i64::try_from(seq).unwrap() * 1000,
                    kind: "request".into(),
                    request_id: format!("req_{seq}"),
                    tenant_id: Some("acme".into()),
                    key_id: None,
                    route: "/v1/chat/completions".into(),
                    model: Some("chat".into()),
                    status: 200,
                    record: format!(r#"{{"n":{seq}}}"#),
                    hash: Vec::new(),
                };
                prev = link_hash(&prev, &row.fields());
                row.hash = prev.to_vec();
                row
            })
            .collect()
    }

    fn state_of(anchor: (u64, Hash), rows: &[RawAuditRow]) -> ChainState {
        let (head_seq, head_hash) = rows
            .last()
            .map_or(anchor, |row| (row.seq, to_hash(&row.hash).unwrap()));
        ChainState {
            head_seq,
            head_hash,
            anchor_seq: anchor.0,
            anchor_hash: anchor.1,
        }
    }

    /// Walks `rows` in pages of 3 against `state`.
    fn problems(state: &ChainState, rows: &[RawAuditRow]) -> Vec<Problem> {
        let mut walker = Walker::new(state);
        for page in rows.chunks(3) {
            walker.check(page);
        }
        walker.finish(state).problems
    }

    #[test]
    fn intact_chains_have_no_problems() {
        for anchor in [(0, ZERO_HASH), (41, [9; 32])] {
            for count in [0, 1, 7] {
                let rows = chain(anchor, count);
                let state = state_of(anchor, &rows);
                let mut walker = Walker::new(&state);
                walker.check(&rows);
                let report = walker.finish(&state);
                assert!(report.is_intact(), "{anchor:?} {count}: {report:?}");
                assert_eq!(report.records, count);
                let expected_first = (count > 0).then_some(anchor.0 + 1);
                assert_eq!(report.first_seq, expected_first);
                assert_eq!(report.last_seq, expected_first.map(|_| anchor.0 + count));
            }
        }
    }

    #[test]
    fn damage_is_reported_where_it_is() {
        let anchor = (0, ZERO_HASH);
        let rows = chain(anchor, 8);
        let state = state_of(anchor, &rows);
        type Damage = fn(&mut Vec<RawAuditRow>);
        let cases: Vec<(&str, Damage, Vec<Problem>)> = vec![
            (
                "record text",
                |rows| rows[2].record = r#"{"n":99}"#.into(),
                vec![Problem::Altered { seq: 3 }],
            ),
            (
                "status",
                |rows| rows[4].status = 500,
                vec![Problem::Altered { seq: 5 }],
            ),
            (
                "optional column",
                |rows| rows[0].tenant_id = None,
                vec![Problem::Altered { seq: 1 }],
            ),
            (
                "middle record removed",
                |rows| drop(rows.remove(3)),
                vec![Problem::Missing { after: 3, next: 5 }],
            ),
            (
                "three removed",
                |rows| drop(rows.drain(1..4)),
                vec![Problem::Missing { after: 1, next: 5 }],
            ),
            (
                "first removed",
                |rows| drop(rows.remove(0)),
                vec![Problem::Missing { after: 0, next: 2 }],
            ),
            (
                "last removed",
                |rows| drop(rows.pop()),
                vec![Problem::Truncated {
                    last_seq: 7,
                    head_seq: 8,
                }],
            ),
            (
                "all removed",
                Vec::clear,
                vec![Problem::Truncated {
                    last_seq: 0,
                    head_seq: 8,
                }],
            ),
            (
                "last record cut short",
                |rows| rows[7].record.truncate(3),
                vec![Problem::Torn { seq: 8 }],
            ),
            (
                "last hash cut short",
                |rows| rows[7].hash.truncate(10),
                vec![Problem::Torn { seq: 8 }],
            ),
            // Cut short but not last: something rewrote it later, so it was altered.
            (
                "middle record cut short",
                |rows| rows[3].record.truncate(3),
                vec![Problem::Altered { seq: 4 }],
            ),
            (
                "middle hash cut short",
                |rows| rows[3].hash.truncate(3),
                vec![Problem::Altered { seq: 4 }],
            ),
            // Rehashed to hide an edit: the next record no longer links to it.
            (
                "record rehashed",
                |rows| {
                    rows[5].status = 204;
                    let prev = to_hash(&rows[4].hash).unwrap();
                    rows[5].hash = link_hash(&prev, &rows[5].fields()).to_vec();
                },
                vec![Problem::Altered { seq: 7 }],
            ),
            (
                "last record rehashed",
                |rows| {
                    rows[7].status = 204;
                    let prev = to_hash(&rows[6].hash).unwrap();
                    rows[7].hash = link_hash(&prev, &rows[7].fields()).to_vec();
                },
                vec![Problem::HeadMismatch { seq: 8 }],
            ),
            // Contents moved between two places: neither links, nor does the record after.
            (
                "two records swapped",
                |rows| {
                    let (third, fourth) = (rows[2].clone(), rows[3].clone());
                    rows[2] = RawAuditRow { seq: 3, ..fourth };
                    rows[3] = RawAuditRow { seq: 4, ..third };
                },
                vec![
                    Problem::Altered { seq: 3 },
                    Problem::Altered { seq: 4 },
                    Problem::Altered { seq: 5 },
                ],
            ),
        ];
        for (name, damage, expected) in cases {
            let mut damaged = rows.clone();
            damage(&mut damaged);
            assert_eq!(problems(&state, &damaged), expected, "{name}");
        }
    }

    #[test]
    fn a_chain_not_starting_at_its_anchor_is_missing_its_start() {
        let rows = chain((5, [1; 32]), 4);
        // The anchor says 0: records 1 to 5 are gone.
        let state = ChainState {
            anchor_seq: 0,
            anchor_hash: ZERO_HASH,
            ..state_of((5, [1; 32]), &rows)
        };
        assert_eq!(
            problems(&state, &rows),
            [Problem::Missing { after: 0, next: 6 }]
        );
    }

    #[test]
    fn problems_stop_being_listed_after_a_hundred() {
        let anchor = (0, ZERO_HASH);
        let mut rows = chain(anchor, 300);
        let state = state_of(anchor, &rows);
        for row in &mut rows[..250] {
            row.status = 1;
        }
        let mut walker = Walker::new(&state);
        walker.check(&rows);
        let report = walker.finish(&state);
        assert_eq!(report.problems.len(), 100);
        assert_eq!(report.problems_omitted, 150);
        assert_eq!(report.problems[99], Problem::Altered { seq: 100 });
        assert!(!report.is_intact());
    }

    #[test]
    fn problems_read_as_sentences() {
        for (problem, text) in [
            (
                Problem::Missing { after: 4, next: 6 },
                "record 5 is missing: it was deleted, and the log goes on at record 6",
            ),
            (
                Problem::Missing { after: 4, next: 9 },
                "records 5 to 8 are missing: 4 records were deleted, and the log goes on at \
                 record 9",
            ),
            (
                Problem::Altered { seq: 42 },
                "record 42 was altered: its hash does not match its contents and the record \
                 before it",
            ),
            (
                Problem::Torn { seq: 7 },
                "record 7, the last one, is incomplete: its write was cut short",
            ),
            (
                Problem::Truncated {
                    last_seq: 10,
                    head_seq: 12,
                },
                "records 11 to 12 are missing from the end of the log: 12 records were appended \
                 but the last one found is record 10",
            ),
            (
                Problem::HeadMismatch { seq: 3 },
                "record 3, the last one, does not match the chain head: the record or the head \
                 was altered",
            ),
        ] {
            assert_eq!(problem.to_string(), text);
        }
    }
}
