//! Integration tests of `landfall-kv`: one conformance suite for limiters and one for caches,
//! each run on the in-process backend and on the Redis server at `LANDFALL_TEST_REDIS_URL`,
//! plus what only Redis can show (its keys, and what happens when it is down).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod cache;
mod limiter;
mod memory;
mod redis;
mod redis_down;

/// Generates one `#[tokio::test]` per conformance case for a backend. `$fixture` has
/// `start(case) -> Option<Self>` (`None`: skipped, after saying why), `limiter()`, `cache()` and
/// `finish()`.
///
/// The case runs in its own task so that when it fails the fixture still cleans up (deletes
/// its Redis keys) before the failure is passed on.
macro_rules! conformance_suite {
    ($fixture:ty) => {
        $crate::conformance_suite!(
            @cases $fixture, limiter, limiter;
            a_full_bucket_admits_exactly_limit_then_refuses,
            the_bucket_refills_over_time,
            a_cost_above_the_limit_never_passes,
            nothing_is_applied_unless_everything_passes,
            a_refund_restores_capacity,
            concurrency_leases_release_once,
            a_budget_is_seeded_then_spent_exactly,
            a_budget_expires,
            parallel_acquires_never_overshoot,
        );
        $crate::conformance_suite!(
            @cases $fixture, cache, cache;
            a_put_is_read_back_by_its_key_only,
            the_latest_put_wins,
            entries_expire_after_their_ttl,
        );
    };
    (@cases $fixture:ty, $module:ident, $backend:ident; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(fixture) = <$fixture>::start(stringify!($case)).await else {
                    return;
                };
                let outcome = tokio::spawn(crate::$module::$case(fixture.$backend())).await;
                fixture.finish().await;
                if let Err(err) = outcome {
                    std::panic::resume_unwind(err.into_panic());
                }
            }
        )*
    };
}
pub(crate) use conformance_suite;

/// Now in ms since the Unix epoch, for budget expiries.
pub fn now_ms() -> i64 {
    let elapsed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(elapsed.as_millis()).unwrap()
}
