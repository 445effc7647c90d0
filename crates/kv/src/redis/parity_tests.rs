//! `gcra.lua` computes what `math.rs` computes, value for value, at instants the test picks
//! (the conformance suite cannot: Redis's clock moves between calls). Needs the Redis server at
//! `LANDFALL_TEST_REDIS_URL`, like the integration tests.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use crate::math::{self, Status};

/// Calls `rate_check` or `rate_release` once per group of six arguments:
/// kind ('c' or 'r'), TAT ('' for none), now, limit, period_ms, cost or delta.
const HARNESS: &str = r"
local out = {}
for i = 1, #ARGV, 6 do
  local tat = tonumber(ARGV[i + 1])
  local now, limit = tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  local period_ms, x = tonumber(ARGV[i + 4]), tonumber(ARGV[i + 5])
  if ARGV[i] == 'c' then
    local values = { rate_check(tat, now, limit, period_ms, x) }
    for j = 1, 6 do
      out[#out + 1] = values[j]
    end
    out[#out + 1] = values[7] or -1
  else
    out[#out + 1] = rate_release(tat, now, limit, period_ms, x) or -1
  end
end
return out
";

const NOW: u64 = 1_760_000_000_123_456;

async fn eval(args: &[String]) -> Option<Vec<i64>> {
    if std::env::var("LANDFALL_TEST_SKIP_REDIS").is_ok_and(|value| value == "1") {
        eprintln!("skipping the Lua parity test: LANDFALL_TEST_SKIP_REDIS=1");
        return None;
    }
    let url = std::env::var("LANDFALL_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let client = ::redis::Client::open(url.as_str()).unwrap();
    let mut connection = match client.get_multiplexed_async_connection().await {
        Ok(connection) => connection,
        Err(err) => panic!(
            "the Lua parity test needs a Redis server at {url} (set LANDFALL_TEST_REDIS_URL to \
             another one, or LANDFALL_TEST_SKIP_REDIS=1 to skip it): {err}"
        ),
    };
    let script = format!("{}{HARNESS}", include_str!("gcra.lua"));
    let reply = ::redis::cmd("EVAL")
        .arg(script)
        .arg(0)
        .arg(args)
        .query_async(&mut connection)
        .await
        .unwrap();
    Some(reply)
}

const LIMITS: [u64; 9] = [1, 3, 7, 10, 1_000, 3_000, 90_000, 1_000_000, 7_000_000];
const PERIODS_MS: [u64; 7] = [1, 200, 1_000, 60_000, 3_600_000, 86_400_000, 2_592_000_000];

/// Stored TATs around now: none, stale, now, just after, mid-bucket, full, in debt.
fn tats(period_ms: u64) -> [Option<u64>; 7] {
    let period_us = period_ms * 1_000;
    [
        None,
        Some(NOW - 5),
        Some(NOW),
        Some(NOW + 1),
        Some(NOW + period_us / 3),
        Some(NOW + period_us),
        Some(NOW + period_us * 2 + 7),
    ]
}

fn push_args(args: &mut Vec<String>, kind: &str, tat: Option<u64>, limit: u64, period_ms: u64) {
    args.push(kind.to_owned());
    args.push(tat.map(|tat| tat.to_string()).unwrap_or_default());
    args.push(NOW.to_string());
    args.push(limit.to_string());
    args.push(period_ms.to_string());
}

#[tokio::test]
async fn lua_rate_checks_match_rust() {
    let mut cases = Vec::new();
    let mut args = Vec::new();
    for limit in LIMITS {
        for period_ms in PERIODS_MS {
            for cost in [0, 1, 2, 999, limit, limit + 1] {
                for tat in tats(period_ms) {
                    cases.push((tat, limit, period_ms, cost));
                    push_args(&mut args, "c", tat, limit, period_ms);
                    args.push(cost.to_string());
                }
            }
        }
    }
    let Some(reply) = eval(&args).await else {
        return;
    };
    assert_eq!(reply.len(), cases.len() * 7);
    for ((tat, limit, period_ms, cost), lua) in cases.into_iter().zip(reply.chunks_exact(7)) {
        let (outcome, stored) = math::rate_check(tat, NOW, limit, period_ms, cost);
        let as_i64 = |value: u64| i64::try_from(value).unwrap();
        let rust = [
            i64::from(outcome.status != Status::Passed),
            as_i64(outcome.unapplied.remaining),
            as_i64(outcome.unapplied.reset_ms),
            outcome.retry_after_ms.map_or(-1, as_i64),
            as_i64(outcome.applied.remaining),
            as_i64(outcome.applied.reset_ms),
            stored.map_or(-1, as_i64),
        ];
        assert_eq!(
            lua, rust,
            "tat {tat:?}, limit {limit}, period {period_ms} ms, cost {cost}"
        );
    }
}

#[tokio::test]
async fn lua_rate_releases_match_rust() {
    let mut cases = Vec::new();
    let mut args = Vec::new();
    for limit in LIMITS {
        for period_ms in PERIODS_MS {
            let limit_i64 = i64::try_from(limit).unwrap();
            for delta in [-1, 1, -999, 1_000, -3 * limit_i64, 0] {
                for tat in tats(period_ms) {
                    cases.push((tat, limit, period_ms, delta));
                    push_args(&mut args, "r", tat, limit, period_ms);
                    args.push(delta.to_string());
                }
            }
        }
    }
    let Some(reply) = eval(&args).await else {
        return;
    };
    assert_eq!(reply.len(), cases.len());
    for ((tat, limit, period_ms, delta), lua) in cases.into_iter().zip(reply) {
        let rust = math::rate_release(tat, NOW, limit, period_ms, delta);
        let rust = rust.map_or(-1, |tat| i64::try_from(tat).unwrap());
        assert_eq!(
            lua, rust,
            "tat {tat:?}, limit {limit}, period {period_ms} ms, delta {delta}"
        );
    }
}
