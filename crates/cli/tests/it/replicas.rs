//! Two `landfall serve` processes sharing one PostgreSQL database (tenants, keys, the usage
//! ledger) and one Redis (limit and budget counters) enforce one tenant's limits as if they
//! were one gateway.
//!
//! What is measured, against one in-process mock upstream, with tenants and keys created by
//! `landfall tenants create` / `landfall keys create`:
//!
//! - **Rate limit.** A tenant limited to [`RATE_LIMIT`] requests per second is offered three
//!   times that, for [`RATE_SECONDS`] s, by a paced client alternating between the replicas.
//!   The token bucket (capacity = limit) admits a burst of `limit` from idle and then `limit`
//!   per second, so: requests sent after the first second (which drains the initial bucket)
//!   must be admitted at `limit × window` ± 5 %, and all requests at `limit × duration + limit`
//!   ± 5 %. Each replica alone admitting the limit would double both. Every refusal must be a
//!   429 `rate_limit_exceeded` with `Retry-After` and `x-ratelimit-*` headers.
//! - **Budget.** A second tenant with a daily budget of [`BUDGET_TOKENS`] tokens and no rate
//!   limit is hammered from both replicas at once until every request gets 429
//!   `insufficient_quota`. Once the replicas have flushed their ledgers, the `usage` table
//!   must hold exactly the usage the client was served, at most `budget + one reservation`
//!   (reservations are taken atomically in Redis, so concurrent replicas cannot overspend) and
//!   more than `budget − one reservation` (so the budget was in fact reached and settled, no
//!   reservation leaked).
//! - **Ledger.** The `usage` rows of both tenants count exactly the requests that were served.
//!
//! Needs PostgreSQL at `LANDFALL_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`,
//! where a fresh database is created and dropped) and Redis at `LANDFALL_TEST_REDIS_URL`
//! (default `redis://127.0.0.1:6379`, keys under a fresh prefix, deleted at the end); fails
//! when they cannot be reached unless `LANDFALL_TEST_SKIP_POSTGRES=1` or
//! `LANDFALL_TEST_SKIP_REDIS=1` says to skip.

#![expect(
    clippy::print_stderr,
    reason = "the test reports what it measured, and why it skipped"
)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use landfall_testkit::{MockUpstream, Script};
use serde_json::{Value, json};
use sqlx::Connection;

use super::BIN;

const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// Requests per second of the rate-limited tenant.
const RATE_LIMIT: u64 = 50;
/// Offered load, as a multiple of the limit.
const OFFERED_FACTOR: u64 = 3;
const RATE_SECONDS: u64 = 6;
/// The first second drains the full bucket; the steady state is measured after it.
const WARMUP_SECONDS: u64 = 1;
const TOLERANCE: f64 = 0.05;

const BUDGET_TOKENS: u64 = 20_000;
const BUDGET_MAX_TOKENS: u32 = 64;
/// Concurrent clients per replica while spending the budget.
const BUDGET_WORKERS_PER_REPLICA: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_share_rate_limits_budgets_and_the_ledger() {
    let Some(backends) = Backends::create().await else {
        return;
    };
    // The body runs in its own task so that the database and the Redis keys are removed even
    // when it fails (its replicas are killed as it unwinds).
    let outcome = tokio::spawn(run(backends.clone())).await;
    backends.remove().await;
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

async fn run(backends: Backends) {
    let upstream = MockUpstream::start(Script::new().record(false)).await;
    let directory = tempfile::tempdir().unwrap();
    let config = directory.path().join("landfall.toml");
    std::fs::write(&config, backends.config(&upstream.base_url())).unwrap();

    let rate_tenant = format!("rate-{}", backends.suffix);
    let budget_tenant = format!("budget-{}", backends.suffix);
    let rps = RATE_LIMIT.to_string();
    let budget = BUDGET_TOKENS.to_string();
    cli(
        &config,
        &["tenants", "create", "--id", &rate_tenant, "--rps", &rps],
    );
    cli(
        &config,
        &[
            "tenants",
            "create",
            "--id",
            &budget_tenant,
            "--daily-tokens",
            &budget,
        ],
    );
    let rate_key = secret(&cli(&config, &["keys", "create", "--tenant", &rate_tenant]));
    let budget_key = secret(&cli(
        &config,
        &["keys", "create", "--tenant", &budget_tenant],
    ));

    let mut replicas = Replicas::start(&config, 2).await;
    let client = crate::http_client()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let urls: Vec<String> = replicas
        .addresses
        .iter()
        .map(|address| format!("http://{address}/v1/chat/completions"))
        .collect();

    let admitted = rate_limit_is_shared(&client, &urls, &rate_key, &replicas).await;
    let spent = budget_is_shared(&client, &urls, &budget_key, &replicas).await;

    // Stopping the replicas (SIGTERM) flushes what their ledgers still hold: after it, the
    // `usage` table must count every served request, including rows a periodic flush was
    // writing when the signal came.
    replicas.stop();
    let database = backends.connect_database().await;
    let rate_ledger = ledger(&database, &rate_tenant).await;
    let budget_ledger = ledger(&database, &budget_tenant).await;
    eprintln!("ledger: {rate_tenant} {rate_ledger:?}; {budget_tenant} {budget_ledger:?}");
    assert_eq!(
        rate_ledger.requests,
        admitted,
        "the ledger of both replicas must count every admitted request of {rate_tenant}\n{}",
        replicas.log_tails()
    );
    assert_eq!(
        budget_ledger.requests,
        spent.requests,
        "the ledger of both replicas must count every served request of {budget_tenant}\n{}",
        replicas.log_tails()
    );
    assert_eq!(
        budget_ledger.tokens, spent.tokens,
        "the ledger must hold exactly the tokens the client was served"
    );
    let ceiling = BUDGET_TOKENS + spent.reservation;
    assert!(
        budget_ledger.tokens <= ceiling,
        "two replicas overspent the budget: {} tokens used, budget {BUDGET_TOKENS}, at most \
         {ceiling} allowed (budget + one reservation of {})",
        budget_ledger.tokens,
        spent.reservation
    );
    assert!(
        budget_ledger.tokens > BUDGET_TOKENS / 2,
        "only {} of {BUDGET_TOKENS} budget tokens were served before every request was refused",
        budget_ledger.tokens
    );
    audit_is_one_chain(&config, &database, &rate_tenant, admitted).await;
    audit_is_one_chain(&config, &database, &budget_tenant, spent.requests).await;
    let floor = BUDGET_TOKENS.saturating_sub(spent.reservation);
    assert!(
        budget_ledger.tokens > floor,
        "requests were refused with {} of {BUDGET_TOKENS} tokens used (more than one reservation \
         of {} left): a reservation was not settled",
        budget_ledger.tokens,
        spent.reservation
    );
}

// ------------------------------------------------------------------------------ rate limit

enum Outcome {
    Admitted,
    RateLimited,
    Unexpected(String),
}

/// Offers `OFFERED_FACTOR × RATE_LIMIT` requests per second for `RATE_SECONDS`, alternating
/// replicas, and checks how many were admitted. Returns that number.
async fn rate_limit_is_shared(
    client: &reqwest::Client,
    urls: &[String],
    key: &str,
    replicas: &Replicas,
) -> u64 {
    let offered_rps = RATE_LIMIT * OFFERED_FACTOR;
    let total = offered_rps * RATE_SECONDS;
    let body = json!({
        "model": "m",
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": 16,
    });
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let mut tasks = Vec::new();
    for index in 0..total {
        let due = start + Duration::from_secs_f64(index as f64 / offered_rps as f64);
        let request = client
            .post(&urls[index as usize % urls.len()])
            .bearer_auth(key)
            .json(&body);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(due).await;
            let sent = start.elapsed().as_secs_f64();
            let lateness_ms = (tokio::time::Instant::now() - due).as_secs_f64() * 1_000.0;
            (sent, lateness_ms, classify_rate(request.send().await).await)
        }));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }

    let unexpected: Vec<&String> = outcomes
        .iter()
        .filter_map(|(_, _, outcome)| match outcome {
            Outcome::Unexpected(text) => Some(text),
            _ => None,
        })
        .collect();
    assert!(
        unexpected.is_empty(),
        "{} of {total} requests were neither 200 nor 429 rate_limit_exceeded with its headers, \
         e.g. {:?}\n{}",
        unexpected.len(),
        &unexpected[..unexpected.len().min(3)],
        replicas.log_tails()
    );
    let admitted_in = |from: f64, to: f64| {
        outcomes
            .iter()
            .filter(|(sent, _, outcome)| {
                matches!(outcome, Outcome::Admitted) && (from..to).contains(sent)
            })
            .count() as u64
    };
    let admitted = admitted_in(0.0, f64::MAX);
    let window = (RATE_SECONDS - WARMUP_SECONDS) as f64;
    let steady = admitted_in(WARMUP_SECONDS as f64, f64::MAX);
    let steady_expected = RATE_LIMIT as f64 * window;
    let total_expected = (RATE_LIMIT * RATE_SECONDS + RATE_LIMIT) as f64;
    let worst_lateness_ms = outcomes
        .iter()
        .map(|(_, lateness, _)| *lateness)
        .fold(0.0, f64::max);
    eprintln!(
        "rate limit {RATE_LIMIT}/s over 2 replicas, offered {offered_rps}/s for {RATE_SECONDS} s: \
         admitted {admitted} in all (expected {total_expected}), {steady} after the first \
         second (expected {steady_expected}); latest send {worst_lateness_ms:.1} ms after \
         schedule"
    );
    let within =
        |measured: u64, expected: f64| (measured as f64 - expected).abs() <= expected * TOLERANCE;
    assert!(
        within(steady, steady_expected),
        "requests sent in the {window} s after the first second: {steady} admitted, expected \
         {steady_expected} ± {:.0}% (two replicas, one limit of {RATE_LIMIT}/s)",
        TOLERANCE * 100.0
    );
    assert!(
        within(admitted, total_expected),
        "all {total} requests: {admitted} admitted, expected {total_expected} ± {:.0}% \
         ({RATE_LIMIT}/s × {RATE_SECONDS} s + a full bucket of {RATE_LIMIT})",
        TOLERANCE * 100.0
    );
    admitted
}

async fn classify_rate(response: reqwest::Result<reqwest::Response>) -> Outcome {
    let response = match response {
        Ok(response) => response,
        Err(error) => return Outcome::Unexpected(format!("request failed: {error}")),
    };
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await.unwrap_or_default();
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    match status {
        200 => Outcome::Admitted,
        429 if error_code(&body) == Some("rate_limit_exceeded")
            && header("retry-after").is_some()
            && header("x-ratelimit-limit-requests") == Some(&RATE_LIMIT.to_string())
            && header("x-ratelimit-remaining-requests").is_some() =>
        {
            Outcome::RateLimited
        }
        _ => Outcome::Unexpected(format!("{status} {headers:?} {body}")),
    }
}

fn error_code(body: &str) -> Option<&str> {
    let start = body.find("\"code\":\"")? + "\"code\":\"".len();
    body[start..].split('"').next()
}

// ------------------------------------------------------------------------------ budget

/// What the client was served while spending the budget.
#[derive(Debug)]
struct Spent {
    requests: u64,
    tokens: u64,
    /// Tokens one request reserves (estimated prompt + max_tokens).
    reservation: u64,
}

#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    tokens: AtomicU64,
    unexpected: Mutex<Vec<String>>,
}

impl Tally {
    /// Counts a served request; true when `response` was a 429 `insufficient_quota`.
    async fn record(&self, response: reqwest::Result<reqwest::Response>) -> bool {
        let response = match response {
            Ok(response) => response,
            Err(error) => {
                self.unexpected(format!("request failed: {error}"));
                return false;
            }
        };
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        match status {
            200 => {
                let value: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                match value.pointer("/usage/total_tokens").and_then(Value::as_u64) {
                    Some(tokens) => {
                        self.requests.fetch_add(1, Ordering::Relaxed);
                        self.tokens.fetch_add(tokens, Ordering::Relaxed);
                    }
                    None => self.unexpected(format!("200 without usage: {body}")),
                }
                false
            }
            429 if error_code(&body) == Some("insufficient_quota") => true,
            _ => {
                self.unexpected(format!("{status} {body}"));
                false
            }
        }
    }

    fn unexpected(&self, text: String) {
        self.unexpected.lock().unwrap().push(text);
    }
}

/// Spends the budget from both replicas at once until every request is refused.
async fn budget_is_shared(
    client: &reqwest::Client,
    urls: &[String],
    key: &str,
    replicas: &Replicas,
) -> Spent {
    // Long enough that the prompt estimate and the echo make a request worth ~100 tokens.
    let content = vec!["budget"; 40].join(" ");
    let body = json!({
        "model": "m",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": BUDGET_MAX_TOKENS,
    });
    let request: landfall_types::ChatRequest = serde_json::from_value(body.clone()).unwrap();
    let reservation = landfall_governance::prompt_tokens(&request) + u64::from(BUDGET_MAX_TOKENS);
    let tally = Arc::new(Tally::default());
    let deadline = Instant::now() + Duration::from_secs(30);

    let mut workers = Vec::new();
    for url in urls {
        for _ in 0..BUDGET_WORKERS_PER_REPLICA {
            let request = client.post(url).bearer_auth(key).json(&body);
            let tally = Arc::clone(&tally);
            workers.push(tokio::spawn(async move {
                // Until three refusals in a row: a refusal can be a moment when in-flight
                // reservations fill the budget before they settle to smaller actual usage.
                let mut refusals = 0;
                while refusals < 3 && Instant::now() < deadline {
                    let response = request.try_clone().unwrap().send().await;
                    if tally.record(response).await {
                        refusals += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    } else {
                        refusals = 0;
                    }
                }
            }));
        }
    }
    for worker in workers {
        worker.await.unwrap();
    }
    // Every request settles before its response, so nothing is in flight now: one request to
    // each replica in turn until both refuse.
    let mut refused = 0;
    while refused < urls.len() && Instant::now() < deadline {
        refused = 0;
        for url in urls {
            let response = client.post(url).bearer_auth(key).json(&body).send().await;
            if tally.record(response).await {
                refused += 1;
            }
        }
    }
    let unexpected = tally.unexpected.lock().unwrap().clone();
    assert!(
        unexpected.is_empty(),
        "{} unexpected answers while spending the budget, e.g. {:?}\n{}",
        unexpected.len(),
        &unexpected[..unexpected.len().min(3)],
        replicas.log_tails()
    );
    assert_eq!(
        refused,
        urls.len(),
        "requests were still served 30 s into spending a budget of {BUDGET_TOKENS} tokens"
    );
    let spent = Spent {
        requests: tally.requests.load(Ordering::Relaxed),
        tokens: tally.tokens.load(Ordering::Relaxed),
        reservation,
    };
    eprintln!(
        "budget {BUDGET_TOKENS} tokens/day over 2 replicas, {} concurrent clients: {spent:?}",
        BUDGET_WORKERS_PER_REPLICA * urls.len()
    );
    spent
}

// ------------------------------------------------------------------------------ ledger

#[derive(Debug)]
struct Ledger {
    requests: u64,
    tokens: u64,
}

async fn ledger(database: &sqlx::PgPool, tenant: &str) -> Ledger {
    let (requests, tokens): (i64, i64) = sqlx::query_as(
        "SELECT COALESCE(SUM(requests), 0)::BIGINT, \
                COALESCE(SUM(input_tokens + output_tokens), 0)::BIGINT \
         FROM usage WHERE tenant_id = $1",
    )
    .bind(tenant)
    .fetch_one(database)
    .await
    .unwrap();
    Ledger {
        requests: u64::try_from(requests).unwrap(),
        tokens: u64::try_from(tokens).unwrap(),
    }
}

// ------------------------------------------------------------------------------ processes

/// Both replicas appended to one audit chain: it verifies, and it holds one successful request
/// record of `tenant` per request the client was served.
async fn audit_is_one_chain(
    config: &std::path::Path,
    database: &sqlx::PgPool,
    tenant: &str,
    served: u64,
) {
    let report: serde_json::Value =
        serde_json::from_str(&cli(config, &["audit", "verify", "--json"])).unwrap();
    assert_eq!(report["problems"], serde_json::json!([]), "{report}");
    let (audited,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM audit_records WHERE kind = 'request' AND tenant_id = $1 AND status = 200",
    )
    .bind(tenant)
    .fetch_one(database)
    .await
    .unwrap();
    assert_eq!(
        u64::try_from(audited).unwrap(),
        served,
        "the audit log of {tenant}"
    );
}

/// Runs `landfall ARGS --config CONFIG` and returns its stdout, failing on a non-zero exit.
fn cli(config: &std::path::Path, args: &[&str]) -> String {
    let output = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("LANDFALL_CONFIG")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "landfall {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn secret(created: &str) -> String {
    let value: Value = serde_json::from_str(created).unwrap();
    value["secret"]
        .as_str()
        .unwrap_or_else(|| panic!("no secret in {created}"))
        .to_owned()
}

/// `landfall serve` processes, killed when dropped (on every exit path, panics included).
struct Replicas {
    children: Vec<Child>,
    addresses: Vec<String>,
    logs: Vec<Arc<Mutex<VecDeque<String>>>>,
}

const LOG_LINES_KEPT: usize = 40;

impl Replicas {
    async fn start(config: &std::path::Path, count: usize) -> Replicas {
        let mut replicas = Replicas {
            children: Vec::new(),
            addresses: Vec::new(),
            logs: Vec::new(),
        };
        for _ in 0..count {
            let mut child = Command::new(BIN)
                .args(["serve", "--listen", "127.0.0.1:0", "--config"])
                .arg(config)
                .env("LANDFALL__KNOWLEDGE__ENABLED", "false")
                .env("LANDFALL_LOG", "info")
                .env_remove("LANDFALL_CONFIG")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let stderr = child.stderr.take().unwrap();
            replicas.children.push(child);
            let log = Arc::new(Mutex::new(VecDeque::new()));
            replicas.logs.push(Arc::clone(&log));
            // Reads the log to the end (a full pipe would block the replica), keeping the
            // tail for failure messages and sending the listening address.
            let (sender, receiver) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(address) = line
                        .split("listening on http://")
                        .nth(1)
                        .and_then(|rest| rest.split_whitespace().next())
                    {
                        let _ = sender.send(address.to_owned());
                    }
                    let mut log = log.lock().unwrap();
                    if log.len() == LOG_LINES_KEPT {
                        log.pop_front();
                    }
                    log.push_back(line);
                }
            });
            let address =
                tokio::task::spawn_blocking(move || receiver.recv_timeout(Duration::from_secs(30)))
                    .await
                    .unwrap()
                    .unwrap_or_else(|_| {
                        panic!("a replica did not start:\n{}", replicas.log_tails())
                    });
            replicas.addresses.push(address);
        }
        let client = crate::http_client().build().unwrap();
        for address in &replicas.addresses {
            let url = format!("http://{address}/healthz");
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match client.get(&url).send().await {
                    Ok(response) if response.status().is_success() => break,
                    _ if Instant::now() > deadline => {
                        panic!("{url} not healthy:\n{}", replicas.log_tails())
                    }
                    _ => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }
        replicas
    }

    /// Stops every replica with SIGTERM (each flushes its ledger) and checks they exit cleanly.
    fn stop(&mut self) {
        for child in &self.children {
            let status = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .unwrap();
            assert!(status.success(), "cannot signal replica {}", child.id());
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        for index in 0..self.children.len() {
            let status = loop {
                if let Some(status) = self.children[index].try_wait().unwrap() {
                    break status;
                }
                assert!(
                    Instant::now() < deadline,
                    "replica did not stop after SIGTERM:\n{}",
                    self.log_tails()
                );
                std::thread::sleep(Duration::from_millis(20));
            };
            assert!(
                status.success(),
                "replica exited with {status}:\n{}",
                self.log_tails()
            );
        }
    }

    fn log_tails(&self) -> String {
        let mut text = String::new();
        for (index, log) in self.logs.iter().enumerate() {
            text.push_str(&format!("--- replica {index} (last lines of its log)\n"));
            for line in log.lock().map(|log| log.clone()).unwrap_or_default() {
                text.push_str(&line);
                text.push('\n');
            }
        }
        text
    }
}

impl Drop for Replicas {
    fn drop(&mut self) {
        for child in &mut self.children {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

// ------------------------------------------------------------------------------ backends

/// A fresh PostgreSQL database and Redis prefix for one run.
#[derive(Clone)]
struct Backends {
    /// The server's existing database, to create and drop the fresh one from.
    postgres_url: String,
    database: String,
    redis_url: String,
    prefix: String,
    suffix: String,
}

impl Backends {
    /// `None` (after saying why) when asked to skip; fails when a server cannot be reached.
    async fn create() -> Option<Backends> {
        for (variable, server) in [
            ("LANDFALL_TEST_SKIP_POSTGRES", "PostgreSQL"),
            ("LANDFALL_TEST_SKIP_REDIS", "Redis"),
        ] {
            if std::env::var(variable).is_ok_and(|value| value == "1") {
                eprintln!("skipping the two-replica test, which needs {server}: {variable}=1");
                return None;
            }
        }
        let postgres_url = std::env::var("LANDFALL_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
        let redis_url = std::env::var("LANDFALL_TEST_REDIS_URL")
            .unwrap_or_else(|_| DEFAULT_REDIS_URL.to_owned());
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let suffix = format!("{}_{nanos}", std::process::id());
        let backends = Backends {
            database: format!("landfall_replicas_{suffix}"),
            prefix: format!("landfall-replicas-{suffix}:"),
            postgres_url,
            redis_url,
            suffix,
        };
        let mut redis = backends.redis().await;
        let _: String = ::redis::cmd("PING")
            .query_async(&mut redis)
            .await
            .unwrap_or_else(|error| backends.unreachable("Redis", &backends.redis_url, error));
        let mut postgres = sqlx::PgConnection::connect(&backends.postgres_url)
            .await
            .unwrap_or_else(|error| {
                backends.unreachable("PostgreSQL", &backends.postgres_url, error)
            });
        // The name is made of letters, digits and underscores only.
        let create = format!("CREATE DATABASE \"{}\"", backends.database);
        sqlx::raw_sql(sqlx::AssertSqlSafe(create))
            .execute(&mut postgres)
            .await
            .unwrap();
        Some(backends)
    }

    fn unreachable(&self, server: &str, url: &str, error: impl std::fmt::Display) -> ! {
        panic!(
            "the two-replica test needs {server} at {url} (set LANDFALL_TEST_POSTGRES_URL / \
             LANDFALL_TEST_REDIS_URL to another server, or LANDFALL_TEST_SKIP_POSTGRES=1 / \
             LANDFALL_TEST_SKIP_REDIS=1 to skip it): {error}"
        )
    }

    async fn redis(&self) -> ::redis::aio::MultiplexedConnection {
        let client = ::redis::Client::open(self.redis_url.as_str()).unwrap();
        tokio::time::timeout(
            Duration::from_secs(5),
            client.get_multiplexed_async_connection(),
        )
        .await
        .unwrap_or_else(|_| self.unreachable("Redis", &self.redis_url, "no answer in 5 s"))
        .unwrap_or_else(|error| self.unreachable("Redis", &self.redis_url, error))
    }

    /// The URL of the fresh database: the server's URL with the database name replaced.
    fn database_url(&self) -> String {
        let (without_query, query) = match self.postgres_url.split_once('?') {
            Some((url, query)) => (url, format!("?{query}")),
            None => (self.postgres_url.as_str(), String::new()),
        };
        let authority_start = without_query.find("://").map_or(0, |index| index + 3);
        let base = match without_query[authority_start..].find('/') {
            Some(slash) => &without_query[..authority_start + slash],
            None => without_query,
        };
        format!("{base}/{}{query}", self.database)
    }

    async fn connect_database(&self) -> sqlx::PgPool {
        sqlx::PgPool::connect(&self.database_url()).await.unwrap()
    }

    fn config(&self, upstream_base_url: &str) -> String {
        format!(
            r#"
[server]
shutdown_grace_ms = 5000

[storage.metadata]
type = "postgres"
url = "{database_url}"
max_connections = 4

[storage.kv]
type = "redis"
url = "{redis_url}"
prefix = "{prefix}"
# Generous: the machine is shared with builds, and a slow answer must not count as Redis down.
timeout_ms = 2000

[limits]
# A Redis failure must show as an error here, not as requests admitted without limits.
on_backend_error = "fail_closed"

[shedding]
enabled = false

[accounting]
flush_interval_ms = 100

[providers.mock]
type = "openai"
base_url = "{upstream_base_url}"
api_key = "x"

[models.m]
targets = [{{ provider = "mock", model = "m" }}]
"#,
            database_url = self.database_url(),
            redis_url = self.redis_url,
            prefix = self.prefix,
        )
    }

    /// Drops the database and deletes the Redis keys (best effort: says what it could not do).
    async fn remove(&self) {
        match sqlx::PgConnection::connect(&self.postgres_url).await {
            Ok(mut postgres) => {
                let drop = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.database);
                if let Err(error) = sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
                    .execute(&mut postgres)
                    .await
                {
                    eprintln!("cannot drop database {}: {error}", self.database);
                }
            }
            Err(error) => eprintln!("cannot drop database {}: {error}", self.database),
        }
        let mut redis = self.redis().await;
        let keys: Vec<String> = ::redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query_async(&mut redis)
            .await
            .unwrap_or_default();
        if !keys.is_empty() {
            let deleted: Result<u64, _> =
                ::redis::cmd("DEL").arg(&keys).query_async(&mut redis).await;
            if let Err(error) = deleted {
                eprintln!("cannot delete Redis keys under {}: {error}", self.prefix);
            }
        }
    }
}
