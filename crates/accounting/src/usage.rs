//! Usage analytics read back from the audit log: requests, tokens, cost, errors and p95
//! latency per tenant, key and model, by hour or day; and the CSV / JSON Lines renderings of
//! usage rows and audit records for export.

use std::collections::BTreeMap;

use landfall_storage::{
    AuditFilter, AuditLog, AuditOrder, AuditQuery, AuditRecord, StoreError, UnixMillis,
};
use serde::{Deserialize, Serialize};

/// Records read per page while aggregating.
const PAGE: u32 = 1_000;
/// Most records one aggregation reads; a wider range must be narrowed.
pub const MAX_SCANNED: u64 = 2_000_000;

/// Bucket width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Hour,
    Day,
}

impl Bucket {
    fn millis(self) -> i64 {
        match self {
            Self::Hour => 3_600_000,
            Self::Day => 86_400_000,
        }
    }
}

/// What to aggregate.
#[derive(Debug, Clone)]
pub struct UsageQuery {
    pub since: UnixMillis,
    /// Exclusive.
    pub until: UnixMillis,
    pub bucket: Bucket,
    pub by_tenant: bool,
    pub by_key: bool,
    pub by_model: bool,
    pub tenant_id: Option<String>,
    pub key_id: Option<String>,
    pub model: Option<String>,
}

/// One group of one bucket.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UsageRow {
    /// Start of the bucket, unix milliseconds (UTC).
    pub start: UnixMillis,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub requests: u64,
    /// Responses with status 400 or above.
    pub errors: u64,
    pub cache_hits: u64,
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    pub output_tokens: u64,
    pub cost_nanos: u64,
    /// 95th percentile of the total latency, milliseconds (nearest rank).
    pub p95_latency_ms: f64,
}

/// Why usage could not be aggregated.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the range holds more than {MAX_SCANNED} records; narrow it or filter it")]
    TooManyRecords,
}

type GroupKey = (i64, Option<String>, Option<String>, Option<String>);

/// Aggregates the request records of `query`'s range, ordered by bucket, then group.
///
/// # Errors
/// When the log cannot be read, or the range holds more than [`MAX_SCANNED`] records.
pub async fn aggregate(
    log: &dyn AuditLog,
    query: &UsageQuery,
) -> Result<Vec<UsageRow>, UsageError> {
    let mut groups: BTreeMap<GroupKey, (UsageRow, Vec<f64>)> = BTreeMap::new();
    let mut page = AuditQuery {
        filter: AuditFilter {
            since: Some(query.since),
            until: Some(query.until),
            tenant_id: query.tenant_id.clone(),
            key_id: query.key_id.clone(),
            model: query.model.clone(),
            kind: Some("request".to_owned()),
            status: None,
        },
        order: AuditOrder::Ascending,
        cursor: None,
        limit: PAGE,
    };
    let mut scanned = 0_u64;
    loop {
        let records = log.audit_page(&page).await?;
        let Some(last) = records.last() else { break };
        page.cursor = Some(last.seq);
        scanned += records.len() as u64;
        if scanned > MAX_SCANNED {
            return Err(UsageError::TooManyRecords);
        }
        for record in &records {
            add(&mut groups, query, record);
        }
        if records.len() < PAGE as usize {
            break;
        }
    }
    Ok(groups
        .into_values()
        .map(|(mut row, mut latencies)| {
            row.p95_latency_ms = percentile(&mut latencies, 0.95);
            row
        })
        .collect())
}

fn add(
    groups: &mut BTreeMap<GroupKey, (UsageRow, Vec<f64>)>,
    query: &UsageQuery,
    record: &AuditRecord,
) {
    let entry = &record.entry;
    let width = query.bucket.millis();
    let start = entry.time - entry.time.rem_euclid(width);
    let key = (
        start,
        entry.tenant_id.clone().filter(|_| query.by_tenant),
        entry.key_id.clone().filter(|_| query.by_key),
        entry.model.clone().filter(|_| query.by_model),
    );
    let (row, latencies) = groups.entry(key.clone()).or_insert_with(|| {
        (
            UsageRow {
                start,
                tenant_id: key.1,
                key_id: key.2,
                model: key.3,
                ..UsageRow::default()
            },
            Vec::new(),
        )
    });
    // Only the fields counted here are read from the record's text.
    let fields: CountedFields = serde_json::from_str(entry.record.as_str()).unwrap_or_default();
    row.requests += 1;
    row.errors += u64::from(entry.status >= 400);
    row.cache_hits += u64::from(fields.cache.as_deref() == Some("hit"));
    row.input_tokens += fields.usage.input_tokens;
    row.cached_input_tokens += fields.usage.cached_input_tokens;
    row.output_tokens += fields.usage.output_tokens;
    row.cost_nanos += fields.usage.cost_nanos;
    if let Some(total) = fields.latency_us.total {
        latencies.push(total as f64 / 1000.0);
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CountedFields {
    cache: Option<String>,
    usage: CountedUsage,
    latency_us: CountedLatency,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CountedUsage {
    input_tokens: u64,
    cached_input_tokens: u64,
    output_tokens: u64,
    cost_nanos: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CountedLatency {
    total: Option<u64>,
}

/// Nearest-rank percentile; 0 for no values.
fn percentile(values: &mut [f64], quantile: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let rank = (quantile * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

/// The CSV header of usage rows.
pub const USAGE_CSV_HEADER: &str = "start,tenant_id,key_id,model,requests,errors,cache_hits,input_tokens,cached_input_tokens,output_tokens,cost_nanos,p95_latency_ms\n";

/// One usage row as a CSV line.
#[must_use]
pub fn usage_csv_line(row: &UsageRow) -> String {
    let text = |value: &Option<String>| csv_field(value.as_deref().unwrap_or(""));
    format!(
        "{},{},{},{},{},{},{},{},{},{},{},{}\n",
        row.start,
        text(&row.tenant_id),
        text(&row.key_id),
        text(&row.model),
        row.requests,
        row.errors,
        row.cache_hits,
        row.input_tokens,
        row.cached_input_tokens,
        row.output_tokens,
        row.cost_nanos,
        row.p95_latency_ms,
    )
}

/// The CSV header of audit records.
pub const AUDIT_CSV_HEADER: &str =
    "seq,time,kind,request_id,tenant_id,key_id,route,model,status,hash,record\n";

/// One audit record as a CSV line (the full record as a JSON column).
#[must_use]
pub fn audit_csv_line(record: &AuditRecord) -> String {
    let entry = &record.entry;
    let text = |value: &Option<String>| csv_field(value.as_deref().unwrap_or(""));
    format!(
        "{},{},{},{},{},{},{},{},{},{},{}\n",
        record.seq,
        entry.time,
        csv_field(&entry.kind),
        csv_field(&entry.request_id),
        text(&entry.tenant_id),
        text(&entry.key_id),
        csv_field(&entry.route),
        text(&entry.model),
        entry.status,
        hex::encode(record.hash),
        csv_field(entry.record.as_str()),
    )
}

/// A value as one JSON Lines line.
#[must_use]
pub fn json_line(value: &impl Serialize) -> String {
    let mut line = serde_json::to_string(value).unwrap_or_else(|error| {
        tracing::error!(%error, "cannot serialize an export line");
        String::from("{}")
    });
    line.push('\n');
    line
}

/// Quotes a CSV field when it holds a comma, quote or line break (RFC 4180). A leading
/// `=`, `+`, `-` or `@` is prefixed with `'` so spreadsheets do not run it as a formula.
fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentile() {
        let mut values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&mut values, 0.95), 95.0);
        assert_eq!(percentile(&mut [3.0], 0.95), 3.0);
        assert_eq!(percentile(&mut [], 0.95), 0.0);
        assert_eq!(percentile(&mut [5.0, 1.0], 0.95), 5.0);
    }

    #[test]
    fn csv_fields_are_quoted_and_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=SUM(A1)"), "'=SUM(A1)");
    }
}
