//! `/admin/v1/audit` (filtered, cursor-paginated records; CSV or JSON Lines export) and
//! `/admin/v1/usage` (requests, tokens, cost, errors and p95 latency per tenant, key and model,
//! by hour or day).

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use http::HeaderValue;
use landfall_accounting::usage::{self, Bucket, UsageError, UsageQuery};
use landfall_governance::AdminError;
use landfall_storage::{AuditFilter, AuditLog, AuditOrder, AuditQuery, StatusFilter};
use serde::Deserialize;

use crate::admin::query;
use crate::routes::json_response;
use crate::{ApiError, AppState};

/// Default and largest page of `GET /admin/v1/audit`.
const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1_000;
/// Records read per page while exporting.
const EXPORT_PAGE: u32 = 1_000;
/// Default range of `/admin/v1/usage`: the last day.
const DEFAULT_USAGE_RANGE_MS: i64 = 86_400_000;

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Format {
    #[default]
    Json,
    Csv,
    Jsonl,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditParams {
    /// Unix milliseconds, inclusive.
    since: Option<i64>,
    /// Unix milliseconds, exclusive.
    until: Option<i64>,
    tenant_id: Option<String>,
    key_id: Option<String>,
    model: Option<String>,
    kind: Option<String>,
    /// `429`, or a class such as `4xx`.
    status: Option<String>,
    #[serde(default)]
    order: Order,
    /// The `next_cursor` of the previous page.
    cursor: Option<u64>,
    limit: Option<u32>,
    #[serde(default)]
    format: Format,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Order {
    Asc,
    #[default]
    Desc,
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    AdminError::Invalid {
        field: field.to_owned(),
        message: message.into(),
    }
    .into()
}

fn store_error(error: landfall_storage::StoreError) -> ApiError {
    AdminError::from(error).into()
}

fn status_filter(text: &str) -> Result<StatusFilter, ApiError> {
    let class = text
        .strip_suffix("xx")
        .or_else(|| text.strip_suffix("XX"))
        .and_then(|digit| digit.parse::<u16>().ok())
        .filter(|digit| (1..=5).contains(digit));
    if let Some(class) = class {
        return Ok(StatusFilter::Class(class));
    }
    match text.parse::<u16>() {
        Ok(status) if (100..600).contains(&status) => Ok(StatusFilter::Exact(status)),
        _ => Err(invalid(
            "status",
            format!("`{text}` is neither a status such as 429 nor a class such as 4xx"),
        )),
    }
}

/// `GET /admin/v1/audit`.
pub(crate) async fn list(
    State(state): State<AppState>,
    params: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let params = query(params)?;
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(invalid(
            "limit",
            format!("must be between 1 and {MAX_PAGE}"),
        ));
    }
    let status = params.status.as_deref().map(status_filter).transpose()?;
    let audit_query = AuditQuery {
        filter: AuditFilter {
            since: params.since,
            until: params.until,
            tenant_id: params.tenant_id,
            key_id: params.key_id,
            model: params.model,
            kind: params.kind,
            status,
        },
        order: match params.order {
            Order::Asc => AuditOrder::Ascending,
            Order::Desc => AuditOrder::Descending,
        },
        cursor: params.cursor,
        limit,
    };
    let log = Arc::clone(state.accounting().log());
    if params.format != Format::Json {
        return Ok(export(log, audit_query, params.format));
    }
    let records = log.audit_page(&audit_query).await.map_err(store_error)?;
    let has_more = records.len() == limit as usize;
    let next_cursor = records.last().filter(|_| has_more).map(|record| record.seq);
    Ok(json_response(&serde_json::json!({
        "object": "list",
        "data": records,
        "has_more": has_more,
        "next_cursor": next_cursor,
    })))
}

/// Streams every matching record, page by page, so an export of any size holds one page in
/// memory. A store failure part-way ends the body early (the client sees a short download).
fn export(log: Arc<dyn AuditLog>, mut audit_query: AuditQuery, format: Format) -> Response {
    audit_query.limit = EXPORT_PAGE;
    let header =
        (format == Format::Csv).then(|| Bytes::from_static(usage::AUDIT_CSV_HEADER.as_bytes()));
    let pages = futures::stream::unfold(Some(audit_query), move |state| {
        let log = Arc::clone(&log);
        async move {
            let mut audit_query = state?;
            let records = match log.audit_page(&audit_query).await {
                Ok(records) => records,
                Err(error) => {
                    tracing::error!(%error, "audit export stopped");
                    return None;
                }
            };
            let last = records.last()?.seq;
            let mut text = String::new();
            for record in &records {
                match format {
                    Format::Csv => text.push_str(&usage::audit_csv_line(record)),
                    Format::Json | Format::Jsonl => text.push_str(&usage::json_line(record)),
                }
            }
            let more = records.len() == EXPORT_PAGE as usize;
            audit_query.cursor = Some(last);
            Some((
                Ok::<_, Infallible>(Bytes::from(text)),
                more.then_some(audit_query),
            ))
        }
    });
    let body = futures::stream::iter(header.map(Ok)).chain(pages);
    download(Body::from_stream(body), format, "audit")
}

fn download(body: Body, format: Format, name: &str) -> Response {
    let (content_type, extension) = match format {
        Format::Json => ("application/json", "json"),
        Format::Csv => ("text/csv; charset=utf-8", "csv"),
        Format::Jsonl => ("application/jsonl; charset=utf-8", "jsonl"),
    };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    if let Ok(value) = HeaderValue::from_str(&format!(
        "attachment; filename=\"landfall-{name}.{extension}\""
    )) {
        headers.insert(http::header::CONTENT_DISPOSITION, value);
    }
    response
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UsageParams {
    since: Option<i64>,
    until: Option<i64>,
    /// `hour` (default) or `day`.
    bucket: Option<String>,
    /// Comma-separated: `tenant`, `key`, `model`. Default `tenant,model`.
    group_by: Option<String>,
    tenant_id: Option<String>,
    key_id: Option<String>,
    model: Option<String>,
    #[serde(default)]
    format: Format,
}

/// `GET /admin/v1/usage`.
pub(crate) async fn usage_report(
    State(state): State<AppState>,
    params: Result<Query<UsageParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let params = query(params)?;
    let now = landfall_storage::now_millis();
    let until = params.until.unwrap_or(now);
    let since = params.since.unwrap_or(until - DEFAULT_USAGE_RANGE_MS);
    if since >= until {
        return Err(invalid("since", "must be before `until`"));
    }
    let bucket = match params.bucket.as_deref().unwrap_or("hour") {
        "hour" => Bucket::Hour,
        "day" => Bucket::Day,
        other => {
            return Err(invalid(
                "bucket",
                format!("`{other}` is neither hour nor day"),
            ));
        }
    };
    let mut usage_query = UsageQuery {
        since,
        until,
        bucket,
        by_tenant: false,
        by_key: false,
        by_model: false,
        tenant_id: params.tenant_id,
        key_id: params.key_id,
        model: params.model,
    };
    for dimension in params
        .group_by
        .as_deref()
        .unwrap_or("tenant,model")
        .split(',')
    {
        match dimension.trim() {
            "tenant" => usage_query.by_tenant = true,
            "key" => usage_query.by_key = true,
            "model" => usage_query.by_model = true,
            "" => {}
            other => {
                return Err(invalid(
                    "group_by",
                    format!("`{other}` is not one of tenant, key, model"),
                ));
            }
        }
    }
    let rows = usage::aggregate(state.accounting().log().as_ref(), &usage_query)
        .await
        .map_err(|error| match error {
            UsageError::Store(error) => store_error(error),
            UsageError::TooManyRecords => invalid("since", error.to_string()),
        })?;
    Ok(match params.format {
        Format::Json => json_response(&serde_json::json!({
            "object": "list",
            "since": since,
            "until": until,
            "data": rows,
        })),
        Format::Csv => {
            let mut text = String::from(usage::USAGE_CSV_HEADER);
            rows.iter()
                .for_each(|row| text.push_str(&usage::usage_csv_line(row)));
            download(Body::from(text), Format::Csv, "usage")
        }
        Format::Jsonl => {
            let text: String = rows.iter().map(usage::json_line).collect();
            download(Body::from(text), Format::Jsonl, "usage")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_filters_parse_codes_and_classes() {
        assert_eq!(status_filter("429").ok(), Some(StatusFilter::Exact(429)));
        assert_eq!(status_filter("5xx").ok(), Some(StatusFilter::Class(5)));
        for bad in ["6xx", "abc", "42", "0xx"] {
            assert!(status_filter(bad).is_err(), "{bad}");
        }
    }
}
