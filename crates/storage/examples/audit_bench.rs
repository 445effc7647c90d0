//! Audit log throughput: appends N realistic records in batches, then verifies the chain, on a
//! temporary SQLite file and, when given a URL, on a fresh PostgreSQL schema (dropped after).
//!
//! ```text
//! cargo run --release -p landfall-storage --example audit_bench -- \
//!     [--postgres postgres://postgres@127.0.0.1:5432/test] [--records 100000] [--batch 1000]
//! ```
//!
//! Only the `append_audit` calls are timed for the append figure (building the entries is
//! not); the verify figure is the whole `verify_audit` call.
#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use landfall_storage::{
    AuditEntry, AuditLog, PostgresStore, RecordJson, SqliteStore, verify_audit,
};
use serde_json::json;

/// 2024-01-01T00:00:00Z.
const T0: i64 = 1_704_067_200_000;

#[derive(Debug)]
struct Options {
    postgres: Option<String>,
    records: u64,
    batch: u64,
}

fn parse_options() -> anyhow::Result<Options> {
    let mut options = Options {
        postgres: None,
        records: 100_000,
        batch: 1_000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--postgres" => options.postgres = Some(value()?),
            "--records" => options.records = value()?.parse().context("--records")?,
            "--batch" => options.batch = value()?.parse().context("--batch")?,
            other => bail!("unknown argument {other}; expected --postgres, --records or --batch"),
        }
    }
    if options.records == 0 || options.batch == 0 {
        bail!("--records and --batch must be at least 1");
    }
    Ok(options)
}

/// The `n`th record: what the gateway writes for a chat completion, about 600 bytes of JSON.
fn entry(n: u64) -> AuditEntry {
    let tenant_id = format!("tenant-{}", n % 17);
    let key_id = format!("key_{:016}", n % 101);
    let model = ["gpt-4o", "claude-sonnet", "llama-70b"][(n % 3) as usize];
    let status = if n.is_multiple_of(50) { 429 } else { 200 };
    let request_id = format!("req_01J{n:023}");
    let record = json!({
        "request_id": request_id,
        "tenant_id": tenant_id,
        "key_id": key_id,
        "route": "/v1/chat/completions",
        "model": model,
        "target": format!("openai/{model}-2024-08-06"),
        "status": status,
        "stream": n.is_multiple_of(2),
        "latency_ms": {"total": 812 + n % 300, "upstream": 790 + n % 300, "first_token": 210},
        "tokens": {"input": 1_250 + n % 500, "cached_input": 1_024, "output": 180 + n % 90},
        "cost_nanos": 4_180_000 + n % 10_000,
        "cache": "miss",
        "attempts": [{"target": format!("openai/{model}"), "status": status, "latency_ms": 790}],
        "client": {
            "address": format!("10.20.{}.{}", n % 256, (n / 256) % 256),
            "user_agent": "OpenAI/Python 1.54.4 (linux; x86_64) async:asyncio",
        },
        "request_bytes": 5_832,
        "response_bytes": 1_204,
        "finish_reason": "stop",
    });
    AuditEntry {
        time: T0 + i64::try_from(n).unwrap_or(i64::MAX),
        kind: "request".to_owned(),
        request_id,
        tenant_id: Some(tenant_id),
        key_id: Some(key_id),
        route: "/v1/chat/completions".to_owned(),
        model: Some(model.to_owned()),
        status,
        record: RecordJson::of(&record).unwrap_or_else(|_| unreachable!("a JSON object")),
    }
}

fn per_second(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(f64::EPSILON)
}

/// Appends, verifies and reports; returns whether nothing was lost.
async fn run(name: &str, log: &dyn AuditLog, options: &Options) -> anyhow::Result<bool> {
    let mut appending = Duration::ZERO;
    let mut slowest_batch = Duration::ZERO;
    let mut record_bytes = 0;
    let mut next = 1;
    while next <= options.records {
        let last = (next + options.batch - 1).min(options.records);
        let batch: Vec<AuditEntry> = (next..=last).map(entry).collect();
        record_bytes += batch
            .iter()
            .map(|entry| entry.record.as_str().len())
            .sum::<usize>();
        let started = Instant::now();
        log.append_audit(&batch).await?;
        let took = started.elapsed();
        appending += took;
        slowest_batch = slowest_batch.max(took);
        next = last + 1;
    }
    let started = Instant::now();
    let report = verify_audit(log, |_| {}).await?;
    let verifying = started.elapsed();
    let state = log.audit_state().await?;

    let lost_nothing = report.is_intact()
        && report.records == options.records
        && state.head_seq == options.records;
    println!(
        "{name}: appended {} records ({} B of JSON each on average) in batches of {}: \
         {:.2} s, {:.0} records/s, slowest batch {:.1} ms",
        options.records,
        record_bytes / usize::try_from(options.records).unwrap_or(usize::MAX),
        options.batch,
        appending.as_secs_f64(),
        per_second(options.records, appending),
        slowest_batch.as_secs_f64() * 1e3,
    );
    println!(
        "{name}: verified {} records in {:.2} s, {:.0} records/s; intact: {}; head seq {}; \
         nothing lost: {lost_nothing}",
        report.records,
        verifying.as_secs_f64(),
        per_second(report.records, verifying),
        report.is_intact(),
        state.head_seq,
    );
    for problem in &report.problems {
        println!("{name}: {problem}");
    }
    Ok(lost_nothing)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = parse_options()?;
    let mut lost_nothing = true;

    let dir = tempfile::tempdir()?;
    let sqlite = SqliteStore::open(&dir.path().join("audit-bench.db")).await?;
    lost_nothing &= run("sqlite", &sqlite, &options).await?;
    sqlite.close().await;

    if let Some(url) = &options.postgres {
        let schema = format!("landfall_audit_bench_{}", std::process::id());
        let postgres = PostgresStore::connect_in_schema(url, 4, &schema).await?;
        let outcome = run("postgres", &postgres, &options).await;
        postgres.drop_schema().await?;
        lost_nothing &= outcome?;
    }
    if !lost_nothing {
        bail!("records were lost or the chain is not intact");
    }
    Ok(())
}
