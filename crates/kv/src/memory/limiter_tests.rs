#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicU64, Ordering};

use super::*;

const START_US: u64 = 1_700_000_000_000_000;

/// A limiter on a clock the test moves.
fn limiter() -> (MemoryLimiter, Arc<AtomicU64>) {
    let now = Arc::new(AtomicU64::new(START_US));
    let clock = Arc::clone(&now);
    let limiter = MemoryLimiter::with_clock(move || clock.load(Ordering::SeqCst));
    (limiter, now)
}

fn advance_ms(now: &AtomicU64, ms: u64) {
    now.fetch_add(ms * 1_000, Ordering::SeqCst);
}

fn rate(key: &str, limit: u64, cost: u64) -> Check {
    Check::Rate {
        key: key.to_owned(),
        limit,
        period_ms: 1_000,
        cost,
    }
}

async fn admits(limiter: &MemoryLimiter, checks: &[Check]) -> bool {
    limiter.acquire("lease", checks).await.unwrap().admitted
}

#[tokio::test]
async fn the_bucket_refills_one_unit_per_interval() {
    let (limiter, now) = limiter();
    for _ in 0..5 {
        assert!(admits(&limiter, &[rate("k", 5, 1)]).await);
    }
    let refused = limiter.acquire("lease", &[rate("k", 5, 1)]).await.unwrap();
    assert_eq!(refused.retry_after_ms, Some(200));
    advance_ms(&now, 199);
    assert!(!admits(&limiter, &[rate("k", 5, 1)]).await);
    advance_ms(&now, 1);
    assert!(admits(&limiter, &[rate("k", 5, 1)]).await);
    assert!(!admits(&limiter, &[rate("k", 5, 1)]).await);
    advance_ms(&now, 1_000);
    let full = limiter.acquire("lease", &[rate("k", 5, 0)]).await.unwrap();
    assert_eq!(full.states[0].remaining, 5);
    assert_eq!(full.states[0].reset_ms, 0);
}

#[tokio::test]
async fn checks_on_one_key_in_one_call_see_each_other() {
    let (limiter, _) = limiter();
    let twice = [rate("k", 1, 1), rate("k", 1, 1)];
    let verdict = limiter.acquire("lease", &twice).await.unwrap();
    assert!(!verdict.admitted);
    assert_eq!(verdict.denied, Some(1));
    // Nothing was applied.
    assert!(admits(&limiter, &[rate("k", 1, 1)]).await);

    let lease_twice = [
        Check::Concurrency {
            key: "c".to_owned(),
            limit: 1,
        },
        Check::Concurrency {
            key: "c".to_owned(),
            limit: 1,
        },
    ];
    assert!(admits(&limiter, &lease_twice).await);
    let release = [Release::Concurrency {
        key: "c".to_owned(),
    }];
    limiter.release("lease", &release).await.unwrap();
    assert!(limiter.state.lock().unwrap().leases.is_empty());
}

#[tokio::test]
async fn an_unreleased_lease_expires() {
    let (limiter, now) = limiter();
    let limiter = limiter.with_lease_ms(1_000);
    let check = [Check::Concurrency {
        key: "c".to_owned(),
        limit: 1,
    }];
    assert!(limiter.acquire("a", &check).await.unwrap().admitted);
    assert!(!limiter.acquire("b", &check).await.unwrap().admitted);
    advance_ms(&now, 1_000);
    assert!(limiter.acquire("b", &check).await.unwrap().admitted);
}

#[tokio::test]
async fn a_budget_is_gone_after_its_expiry() {
    let (limiter, now) = limiter();
    let expires_at_ms = i64::try_from(START_US / 1_000).unwrap() + 1_000;
    let check = [Check::Budget {
        key: "b".to_owned(),
        limit: 10,
        cost: 1,
        expires_at_ms,
    }];
    limiter.seed_budget("b", 3, expires_at_ms).await.unwrap();
    let verdict = limiter.acquire("lease", &check).await.unwrap();
    assert_eq!(verdict.states[0].remaining, 6);
    advance_ms(&now, 1_000);
    assert_eq!(
        limiter.acquire("lease", &check).await.unwrap().unseeded,
        vec![0]
    );
    // Seeding an expired counter replaces it.
    limiter
        .seed_budget("b", 0, expires_at_ms + 5_000)
        .await
        .unwrap();
    assert!(limiter.acquire("lease", &check).await.unwrap().admitted);
}

#[tokio::test]
async fn a_sweep_drops_everything_expired() {
    let (limiter, now) = limiter();
    let limiter = limiter.with_lease_ms(2_000);
    let expires_at_ms = i64::try_from(START_US / 1_000).unwrap() + 1_000;
    limiter.seed_budget("b", 0, expires_at_ms).await.unwrap();
    let checks = [
        rate("r", 5, 1),
        Check::Concurrency {
            key: "c".to_owned(),
            limit: 5,
        },
    ];
    assert!(admits(&limiter, &checks).await);
    advance_ms(&now, 2_000);
    limiter.release("nobody", &[]).await.unwrap();
    let state = limiter.state.lock().unwrap();
    assert!(state.rates.is_empty());
    assert!(state.leases.is_empty());
    assert!(state.budgets.is_empty());
}

#[tokio::test]
async fn a_refund_below_a_full_bucket_forgets_the_key() {
    let (limiter, _) = limiter();
    assert!(admits(&limiter, &[rate("k", 5, 2)]).await);
    let refund = [Release::Rate {
        key: "k".to_owned(),
        limit: 5,
        period_ms: 1_000,
        delta: -5,
    }];
    limiter.release("lease", &refund).await.unwrap();
    assert!(limiter.state.lock().unwrap().rates.is_empty());
}
