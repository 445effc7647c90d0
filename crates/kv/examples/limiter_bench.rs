//! Throughput of [`RedisLimiter`]: admissions (one `acquire` and one `release`, as a governed
//! request makes) per second from many concurrent tasks sharing one limiter, as the tasks of
//! one gateway replica do.
//!
//! ```text
//! cargo run --release -p landfall-kv --example limiter_bench -- \
//!     [--url redis://127.0.0.1:6379] [--tasks 64] [--seconds 5] [--checks rate|governed|KIND:N]
//! ```
//!
//! `--checks rate`: one requests-per-second check, released with nothing to correct (one
//! `acquire` script call; the release is empty and costs no round trip).
//! `--checks governed` (the default): what a request of a key whose tenant and key both have
//! requests-per-second, requests-per-minute, tokens-per-minute and concurrency limits and a
//! daily token budget takes: 10 checks in one `acquire`, then one `release` returning the
//! concurrency leases and correcting the token reservations.
//! `--checks rate:N`, `concurrency:N` or `budget:N`: N checks of one kind (with their
//! releases), to see what each kind costs.
//!
//! Limits are set so that nothing is refused. Keys live under a fresh prefix and are deleted at
//! the end. Prints one JSON object on stdout.

#![expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a benchmark reports on stdout and stderr"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use landfall_kv::{Check, Limiter, RedisLimiter, RedisSettings, Release};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Which checks each admission takes.
#[derive(Clone, Copy)]
enum Checks {
    Rate,
    Governed,
    Only(Kind, usize),
}

#[derive(Clone, Copy)]
enum Kind {
    Rate,
    Concurrency,
    Budget,
}

struct Options {
    url: String,
    tasks: usize,
    seconds: f64,
    checks: Checks,
    label: String,
}

fn options() -> Result<Options, BoxError> {
    let mut options = Options {
        url: "redis://127.0.0.1:6379".to_owned(),
        tasks: 64,
        seconds: 5.0,
        checks: Checks::Governed,
        label: "governed".to_owned(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => options.url = value()?,
            "--tasks" => options.tasks = value()?.parse()?,
            "--seconds" => options.seconds = value()?.parse()?,
            "--checks" => {
                let label = value()?;
                options.checks = match label.split_once(':') {
                    None if label == "rate" => Checks::Rate,
                    None if label == "governed" => Checks::Governed,
                    Some((kind, count)) => {
                        let kind = match kind {
                            "rate" => Kind::Rate,
                            "concurrency" => Kind::Concurrency,
                            "budget" => Kind::Budget,
                            other => return Err(format!("no check kind {other}").into()),
                        };
                        Checks::Only(kind, count.parse()?)
                    }
                    None => {
                        return Err(format!("--checks rate|governed|KIND:N, not {label}").into());
                    }
                };
                options.label = label;
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    Ok(options)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

/// Tokens one request reserves, and the correction after it used 20.
const RESERVED: u64 = 266;
const DELTA: i64 = 20 - 266;

/// The checks of one request, and the releases it makes after being served.
fn request(checks: Checks) -> (Vec<Check>, Vec<Release>) {
    match checks {
        Checks::Rate => (vec![rate("rl:t:bench:rps", 1_000, 1)], Vec::new()),
        Checks::Governed => governed(),
        Checks::Only(kind, count) => only(kind, count),
    }
}

fn rate(key: &str, period_ms: u64, cost: u64) -> Check {
    Check::Rate {
        key: key.to_owned(),
        limit: 1_000_000_000_000,
        period_ms,
        cost,
    }
}

fn only(kind: Kind, count: usize) -> (Vec<Check>, Vec<Release>) {
    let expires_at_ms = now_ms() + 86_400_000;
    let mut checks = Vec::new();
    let mut releases = Vec::new();
    for index in 0..count {
        let key = format!("only:{index}");
        match kind {
            Kind::Rate => checks.push(rate(&key, 60_000, RESERVED)),
            Kind::Concurrency => {
                checks.push(Check::Concurrency {
                    key: key.clone(),
                    limit: 1_000_000,
                });
                releases.push(Release::Concurrency { key });
            }
            Kind::Budget => {
                checks.push(Check::Budget {
                    key: key.clone(),
                    limit: u64::MAX / 4,
                    cost: RESERVED,
                    expires_at_ms,
                });
                releases.push(Release::Budget {
                    key,
                    delta: DELTA,
                    expires_at_ms,
                });
            }
        }
    }
    (checks, releases)
}

fn governed() -> (Vec<Check>, Vec<Release>) {
    let (reserved, delta) = (RESERVED, DELTA);
    let expires_at_ms = now_ms() + 86_400_000;
    let mut checks = Vec::new();
    let mut releases = Vec::new();
    for scope in ["t:bench", "k:bench"] {
        checks.push(rate(&format!("rl:{scope}:rps"), 1_000, 1));
        checks.push(rate(&format!("rl:{scope}:rpm"), 60_000, 1));
        checks.push(rate(&format!("rl:{scope}:tpm"), 60_000, reserved));
        checks.push(Check::Concurrency {
            key: format!("cc:{scope}"),
            limit: 1_000_000,
        });
        checks.push(Check::Budget {
            key: format!("bg:{scope}:day:t"),
            limit: u64::MAX / 4,
            cost: reserved,
            expires_at_ms,
        });
        releases.push(Release::Rate {
            key: format!("rl:{scope}:tpm"),
            limit: 1_000_000_000_000,
            period_ms: 60_000,
            delta,
        });
        releases.push(Release::Concurrency {
            key: format!("cc:{scope}"),
        });
        releases.push(Release::Budget {
            key: format!("bg:{scope}:day:t"),
            delta,
            expires_at_ms,
        });
    }
    (checks, releases)
}

/// Microseconds at the given quantile of sorted samples.
fn quantile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let options = options()?;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    let settings = RedisSettings {
        url: options.url.clone(),
        prefix: format!("landfall-limiter-bench:{}:{nanos}:", std::process::id()),
        timeout_ms: 2_000,
        lease_ms: 60_000,
    };
    let limiter = Arc::new(RedisLimiter::connect(&settings).await?);
    let (checks, releases) = request(options.checks);
    let checks = Arc::new(checks);
    let releases = Arc::new(releases);

    // Budget counters start unseeded; a gateway seeds them from its ledger on first use.
    for check in checks.iter() {
        if let Check::Budget {
            key, expires_at_ms, ..
        } = check
        {
            limiter.seed_budget(key, 0, *expires_at_ms).await?;
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..options.tasks {
        let (limiter, checks, releases) = (
            Arc::clone(&limiter),
            Arc::clone(&checks),
            Arc::clone(&releases),
        );
        let (stop, refused, errors) =
            (Arc::clone(&stop), Arc::clone(&refused), Arc::clone(&errors));
        tasks.push(tokio::spawn(async move {
            let mut latencies_us: Vec<u32> = Vec::new();
            let mut sequence = 0_u64;
            while !stop.load(Ordering::Relaxed) {
                sequence += 1;
                let lease_id = format!("{task:04}-{sequence:016x}");
                let begun = Instant::now();
                match limiter.acquire(&lease_id, &checks).await {
                    Ok(verdict) if verdict.admitted => {}
                    Ok(_) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                }
                if limiter.release(&lease_id, &releases).await.is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let elapsed = begun.elapsed().as_micros();
                latencies_us.push(u32::try_from(elapsed).unwrap_or(u32::MAX));
            }
            latencies_us
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(options.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies_us = Vec::new();
    for task in tasks {
        latencies_us.extend(task.await?);
    }
    let wall = started.elapsed().as_secs_f64();
    latencies_us.sort_unstable();
    let pairs = latencies_us.len();

    // Remove the benchmark's keys.
    let client = redis::Client::open(options.url.as_str())?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", settings.prefix))
        .query_async(&mut connection)
        .await?;
    if !keys.is_empty() {
        let _: u64 = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut connection)
            .await?;
    }

    eprintln!(
        "{} checks per acquire, {} tasks, {wall:.1} s: {:.0} acquire+release pairs/s, p50 {} µs, \
         p99 {} µs, {} refused, {} errors",
        checks.len(),
        options.tasks,
        pairs as f64 / wall,
        quantile(&latencies_us, 0.5),
        quantile(&latencies_us, 0.99),
        refused.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
    );
    println!(
        "{{\"checks\":\"{}\",\"checks_per_acquire\":{},\"releases_per_pair\":{},\"tasks\":{},\
         \"seconds\":{wall:.3},\"pairs\":{pairs},\"pairs_per_s\":{:.1},\"p50_us\":{},\"p99_us\":{},\
         \"refused\":{},\"errors\":{}}}",
        options.label,
        checks.len(),
        releases.len(),
        options.tasks,
        pairs as f64 / wall,
        quantile(&latencies_us, 0.5),
        quantile(&latencies_us, 0.99),
        refused.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
    );
    Ok(())
}
