//! The limiter conformance suite: every case runs on every backend.

use std::sync::Arc;
use std::time::Duration;

use landfall_kv::{Check, Limiter, Release, Verdict};

use crate::now_ms;

const HOUR_MS: u64 = 3_600_000;

fn rate(key: &str, limit: u64, period_ms: u64, cost: u64) -> Check {
    Check::Rate {
        key: key.to_owned(),
        limit,
        period_ms,
        cost,
    }
}

fn concurrency(key: &str, limit: u64) -> Check {
    Check::Concurrency {
        key: key.to_owned(),
        limit,
    }
}

fn budget(key: &str, limit: u64, cost: u64, expires_at_ms: i64) -> Check {
    Check::Budget {
        key: key.to_owned(),
        limit,
        cost,
        expires_at_ms,
    }
}

async fn acquire(limiter: &dyn Limiter, lease_id: &str, checks: &[Check]) -> Verdict {
    limiter.acquire(lease_id, checks).await.unwrap()
}

/// The state of one rate check without taking anything.
async fn remaining(limiter: &dyn Limiter, key: &str, limit: u64, period_ms: u64) -> u64 {
    let verdict = acquire(limiter, "probe", &[rate(key, limit, period_ms, 0)]).await;
    verdict.states[0].remaining
}

pub async fn a_full_bucket_admits_exactly_limit_then_refuses(limiter: Arc<dyn Limiter>) {
    let limiter = limiter.as_ref();
    // 5 per 10 s: one unit comes back every 2 s, far longer than this test.
    for expected in (0..5).rev() {
        let verdict = acquire(limiter, "r", &[rate("rl:t:acme:rps", 5, 10_000, 1)]).await;
        assert!(verdict.admitted);
        assert_eq!(verdict.states[0].limit, 5);
        assert_eq!(verdict.states[0].remaining, expected);
        assert_eq!(verdict.denied, None);
        assert_eq!(verdict.retry_after_ms, None);
    }
    let refused = acquire(limiter, "r", &[rate("rl:t:acme:rps", 5, 10_000, 1)]).await;
    assert!(!refused.admitted);
    assert_eq!(refused.denied, Some(0));
    assert_eq!(refused.states[0].remaining, 0);
    let reset_ms = refused.states[0].reset_ms;
    assert!((9_000..=10_000).contains(&reset_ms), "reset {reset_ms} ms");
    let retry_ms = refused.retry_after_ms.unwrap();
    assert!(
        (1_000..=2_000).contains(&retry_ms),
        "retry after {retry_ms} ms"
    );
    // 7 per minute does not divide evenly into µs; the burst is still exactly 7.
    for _ in 0..7 {
        assert!(
            acquire(limiter, "r", &[rate("rl:rpm", 7, 60_000, 1)])
                .await
                .admitted
        );
    }
    assert!(
        !acquire(limiter, "r", &[rate("rl:rpm", 7, 60_000, 1)])
            .await
            .admitted
    );
}

pub async fn the_bucket_refills_over_time(limiter: Arc<dyn Limiter>) {
    let limiter = limiter.as_ref();
    // 4 per 400 ms: one unit every 100 ms.
    let check = [rate("rl:refill", 4, 400, 1)];
    for _ in 0..4 {
        assert!(acquire(limiter, "r", &check).await.admitted);
    }
    let refused = acquire(limiter, "r", &check).await;
    assert!(!refused.admitted);
    let retry_ms = refused.retry_after_ms.unwrap();
    assert!((1..=100).contains(&retry_ms), "retry after {retry_ms} ms");
    tokio::time::sleep(Duration::from_millis(retry_ms)).await;
    assert!(acquire(limiter, "r", &check).await.admitted);
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(remaining(limiter, "rl:refill", 4, 400).await, 4);
    let full = acquire(limiter, "r", &[rate("rl:refill", 4, 400, 0)]).await;
    assert_eq!(full.states[0].reset_ms, 0);
}

pub async fn a_cost_above_the_limit_never_passes(limiter: Arc<dyn Limiter>) {
    let limiter = limiter.as_ref();
    let refused = acquire(limiter, "r", &[rate("tpm", 1_000, 60_000, 1_001)]).await;
    assert!(!refused.admitted);
    assert_eq!(refused.denied, Some(0));
    assert_eq!(refused.retry_after_ms, None);
    assert_eq!(refused.states[0].remaining, 1_000);
    // Nor does anything on a limit of zero.
    let zero = acquire(limiter, "r", &[rate("zero", 0, 60_000, 0)]).await;
    assert!(!zero.admitted);
    assert_eq!(zero.retry_after_ms, None);
    // A refusal that can pass later and one that never can: never wins.
    let both = [
        rate("tpm", 1_000, 60_000, 1_000),
        rate("tpm2", 1, 60_000, 1),
    ];
    assert!(acquire(limiter, "r", &both).await.admitted);
    let refused = acquire(limiter, "r", &[both[0].clone(), rate("tpm3", 1, 60_000, 2)]).await;
    assert_eq!(refused.denied, Some(0));
    assert_eq!(refused.retry_after_ms, None);
}

pub async fn nothing_is_applied_unless_everything_passes(limiter: Arc<dyn Limiter>) {
    let limiter = limiter.as_ref();
    let expires_at_ms = now_ms() + 60_000;
    limiter
        .seed_budget("bg:full", 100, expires_at_ms)
        .await
        .unwrap();
    let checks = [
        rate("rl:a", 5, 60_000, 1),
        concurrency("cc:a", 1),
        budget("bg:full", 100, 1, expires_at_ms),
    ];
    let refused = acquire(limiter, "req-1", &checks).await;
    assert!(!refused.admitted);
    assert_eq!(refused.denied, Some(2));
    assert_eq!(refused.retry_after_ms, None);
    assert_eq!(refused.unseeded, Vec::<usize>::new());
    assert_eq!(refused.states.len(), 3);
    assert_eq!(refused.states[0].remaining, 5);
    assert_eq!(refused.states[1].remaining, 1);
    assert_eq!(remaining(limiter, "rl:a", 5, 60_000).await, 5);
    assert!(
        acquire(limiter, "req-2", &[concurrency("cc:a", 1)])
            .await
            .admitted
    );

    // An unseeded budget stops the others too, without being a refusal.
    let checks = [
        rate("rl:b", 5, 60_000, 1),
        budget("bg:new", 100, 1, expires_at_ms),
    ];
    let unseeded = acquire(limiter, "req-3", &checks).await;
    assert!(!unseeded.admitted);
    assert_eq!(unseeded.denied, None);
    assert_eq!(unseeded.unseeded, vec![1]);
    assert_eq!(remaining(limiter, "rl:b", 5, 60_000).await, 5);
    // Two refusals: the first is named, the longest wait is reported.
    let checks = [
        rate("rl:b", 5, 60_000, 1),
        rate("rl:c", 1, 1_000, 1),
        rate("rl:d", 1, 5_000, 1),
    ];
    assert!(acquire(limiter, "req-4", &checks).await.admitted);
    let refused = acquire(limiter, "req-5", &checks).await;
    assert_eq!(refused.denied, Some(1));
    let retry_ms = refused.retry_after_ms.unwrap();
    assert!(
        (4_000..=5_000).contains(&retry_ms),
        "retry after {retry_ms} ms"
    );
    assert_eq!(remaining(limiter, "rl:b", 5, 60_000).await, 4);
}

pub async fn a_refund_restores_capacity(limiter: Arc<dyn Limiter>) {
    let limiter = limiter.as_ref();
    // 1_000 tokens per hour: 3.6 s per token, so the time this takes refills nothing.
    let tokens = |cost| [rate("tpm:acme", 1_000, HOUR_MS, cost)];
    let reserved = acquire(limiter, "req-1", &tokens(800)).await;
    assert!(reserved.admitted);
    assert_eq!(reserved.states[0].remaining, 200);
    assert!(!acquire(limiter, "req-2", &tokens(300)).await.admitted);
    let refund = |delta| Release::Rate {
        key: "tpm:acme".to_owned(),
        limit: 1_000,
        period_ms: HOUR_MS,
        delta,
    };
    limiter.release("req-1", &[refund(-500)]).await.unwrap();
    assert_eq!(remaining(limiter, "tpm:acme", 1_000, HOUR_MS).await, 700);
    // Under-estimated: the rest is taken afterwards.
    limiter.release("req-1", &[refund(400)]).await.unwrap();
    assert_eq!(remaining(limiter, "tpm:acme", 1_000, HOUR_MS).await, 300);
    // Giving back more than was taken fills the bucket, no more.
    limiter.release("req-1", &[refund(-5_000)]).await.unwrap();
    assert_eq!(remaining(limiter, "tpm:acme", 1_000, HOUR_MS).await, 1_000);
    assert!(acquire(limiter, "req-3", &tokens(1_000)).await.admitted);
    // On a key that does not exist: a refund does nothing, a charge takes effect.
    limiter
        .release(
            "req-4",
            &[Release::Rate {
                key: "tpm:other".to_owned(),
                limit: 1_000,
                period_ms: HOUR_MS,
                delta: -100,
            }],
        )
        .await
        .unwrap();
    assert_eq!(remaining(limiter, "tpm:other", 1_000, HOUR_MS).await, 1_000);
    limiter
        .release(
            "req-4",
            &[Release::Rate {
                key: "tpm:other".to_owned(),
                limit: 1_000,
                period_ms: HOUR_MS,
                delta: 100,
            }],
        )
        .await
        .unwrap();
    assert_eq!(remaining(limiter, "tpm:other", 1_000, HOUR_MS).await, 900);
}

pub async fn concurrency_leases_release_once(limiter: Arc<dyn Limiter>) {
    let limiter = limiter.as_ref();
    let check = [concurrency("cc:acme", 2)];
    let release = [Release::Concurrency {
        key: "cc:acme".to_owned(),
    }];
    let first = acquire(limiter, "a", &check).await;
    assert!(first.admitted);
    assert_eq!(first.states[0].remaining, 1);
    assert!(acquire(limiter, "b", &check).await.admitted);
    let refused = acquire(limiter, "c", &check).await;
    assert!(!refused.admitted);
    assert_eq!(refused.denied, Some(0));
    assert_eq!(refused.states[0].remaining, 0);
    assert_eq!(refused.retry_after_ms, Some(1_000));
    // Taking a lease it already holds counts it once.
    assert!(acquire(limiter, "b", &check).await.admitted);

    limiter.release("a", &release).await.unwrap();
    assert!(acquire(limiter, "c", &check).await.admitted);
    // Releasing twice, or a lease never taken, frees nothing more.
    limiter.release("a", &release).await.unwrap();
    limiter.release("never", &release).await.unwrap();
    assert!(!acquire(limiter, "d", &check).await.admitted);

    limiter.release("b", &release).await.unwrap();
    limiter.release("c", &release).await.unwrap();
    limiter.release("c", &release).await.unwrap();
    assert!(acquire(limiter, "x", &check).await.admitted);
    let last = acquire(limiter, "y", &check).await;
    assert!(last.admitted);
    assert_eq!(last.states[0].remaining, 0);
    assert!(!acquire(limiter, "z", &check).await.admitted);
}

pub async fn a_budget_is_seeded_then_spent_exactly(limiter: Arc<dyn Limiter>) {
    let limiter = limiter.as_ref();
    let expires_at_ms = now_ms() + 60_000;
    let spend = |cost| [budget("bg:t:acme:month", 100, cost, expires_at_ms)];
    let unseeded = acquire(limiter, "r", &spend(1)).await;
    assert!(!unseeded.admitted);
    assert_eq!(unseeded.unseeded, vec![0]);
    assert_eq!(unseeded.denied, None);
    assert_eq!(unseeded.retry_after_ms, None);
    // A release on a missing counter leaves it missing, for the caller to seed.
    let settle = |delta| Release::Budget {
        key: "bg:t:acme:month".to_owned(),
        delta,
        expires_at_ms,
    };
    limiter.release("r", &[settle(5)]).await.unwrap();
    assert_eq!(acquire(limiter, "r", &spend(1)).await.unseeded, vec![0]);

    limiter
        .seed_budget("bg:t:acme:month", 40, expires_at_ms)
        .await
        .unwrap();
    // Seeding again does not overwrite.
    limiter
        .seed_budget("bg:t:acme:month", 0, expires_at_ms)
        .await
        .unwrap();
    let admitted = acquire(limiter, "r", &spend(30)).await;
    assert!(admitted.admitted);
    assert_eq!(admitted.unseeded, Vec::<usize>::new());
    assert_eq!(admitted.states[0].remaining, 30);
    let refused = acquire(limiter, "r", &spend(31)).await;
    assert!(!refused.admitted);
    assert_eq!(refused.denied, Some(0));
    assert_eq!(refused.retry_after_ms, None);
    assert_eq!(refused.states[0].remaining, 30);
    assert!(acquire(limiter, "r", &spend(30)).await.admitted);
    assert!(!acquire(limiter, "r", &spend(1)).await.admitted);
    // Settling below the reservation gives the difference back.
    limiter.release("r", &[settle(-20)]).await.unwrap();
    let last = acquire(limiter, "r", &spend(20)).await;
    assert!(last.admitted);
    assert_eq!(last.states[0].remaining, 0);
    assert!(!acquire(limiter, "r", &spend(1)).await.admitted);
    assert!(acquire(limiter, "r", &spend(0)).await.admitted);
}

pub async fn a_budget_expires(limiter: Arc<dyn Limiter>) {
    let limiter = limiter.as_ref();
    let expires_at_ms = now_ms() + 600;
    limiter
        .seed_budget("bg:short", 10, expires_at_ms)
        .await
        .unwrap();
    let spend = [budget("bg:short", 100, 5, expires_at_ms)];
    let admitted = acquire(limiter, "r", &spend).await;
    assert!(admitted.admitted);
    assert_eq!(admitted.states[0].remaining, 85);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(acquire(limiter, "r", &spend).await.unseeded, vec![0]);
}

pub async fn parallel_acquires_never_overshoot(limiter: Arc<dyn Limiter>) {
    // 50 tasks of 20 requests against 100 per 10 s (one unit back every 100 ms: the burst may
    // finish slowly on a loaded machine, so allow what refilled meanwhile, and no more).
    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..50)
        .map(|task| {
            let limiter = Arc::clone(&limiter);
            tokio::spawn(async move {
                let mut admitted = 0_u64;
                for request in 0..20 {
                    let lease_id = format!("req-{task}-{request}");
                    let checks = [rate("rl:parallel", 100, 10_000, 1)];
                    if limiter.acquire(&lease_id, &checks).await.unwrap().admitted {
                        admitted += 1;
                    }
                }
                admitted
            })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        admitted += task.await.unwrap();
    }
    let refilled = u64::try_from(started.elapsed().as_millis() / 100).unwrap();
    assert!(
        (100..=100 + refilled).contains(&admitted),
        "admitted {admitted} of limit 100 ({refilled} refilled)"
    );

    // And leases: 40 tasks race for 10.
    let tasks: Vec<_> = (0..40)
        .map(|task| {
            let limiter = Arc::clone(&limiter);
            tokio::spawn(async move {
                let checks = [concurrency("cc:parallel", 10)];
                let lease_id = format!("lease-{task}");
                limiter.acquire(&lease_id, &checks).await.unwrap().admitted
            })
        })
        .collect();
    let mut held = 0;
    for task in tasks {
        held += u32::from(task.await.unwrap());
    }
    assert_eq!(held, 10);
}
