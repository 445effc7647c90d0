#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

const NOW: u64 = 1_700_000_000_000_000;

/// (stored TAT offset from now in µs, limit, period_ms, cost, passes, remaining, reset_ms)
type StateCase = (Option<u64>, u64, u64, u64, bool, u64, u64);
/// (stored TAT offset, limit, period_ms, delta, new TAT offset)
type ReleaseCase = (Option<u64>, u64, u64, i64, Option<u64>);
/// (outcomes, admitted, denied, retry_after_ms, unseeded)
type VerdictCase = (Vec<Outcome>, bool, Option<usize>, Option<u64>, Vec<usize>);

/// Admits `cost` units at one instant until refused; returns how many calls passed and the
/// refusal.
fn burst(limit: u64, period_ms: u64, cost: u64) -> (u64, Outcome) {
    let mut tat = None;
    for admitted in 0.. {
        let (outcome, stored) = rate_check(tat, NOW, limit, period_ms, cost);
        match stored {
            Some(next) => tat = Some(next),
            None => return (admitted, outcome),
        }
    }
    unreachable!()
}

#[test]
fn a_full_bucket_admits_exactly_limit_units() {
    // (limit, period_ms, cost, calls admitted, retry_after_ms of the refusal)
    let cases = [
        (5, 1_000, 1, 5, Some(200)),
        (7, 60_000, 1, 7, Some(8_572)),
        (3, 1_000, 1, 3, Some(334)),
        (1_000, 60_000, 1, 1_000, Some(60)),
        (3_000, 1_000, 1, 3_000, Some(1)),
        (100, 1_000, 10, 10, Some(100)),
        (100, 1_000, 100, 1, Some(1_000)),
        (1, 1, 1, 1, Some(1)),
        (10, 1_000, 11, 0, None),
    ];
    for (limit, period_ms, cost, admitted, retry) in cases {
        let (count, refusal) = burst(limit, period_ms, cost);
        let case = (limit, period_ms, cost);
        assert_eq!(count, admitted, "{case:?}");
        assert_eq!(refusal.status, Status::Refused, "{case:?}");
        assert_eq!(refusal.retry_after_ms, retry, "{case:?}");
        let remaining = if admitted == 0 { limit } else { 0 };
        assert_eq!(refusal.applied.remaining, remaining, "{case:?}");
    }
}

#[test]
fn states_report_remaining_units_and_time_until_full() {
    let cases: [StateCase; 7] = [
        (None, 5, 1_000, 1, true, 4, 200),
        (Some(0), 5, 1_000, 0, true, 5, 0),
        (Some(400_000), 5, 1_000, 1, true, 2, 600),
        (Some(1_000_000), 5, 1_000, 1, false, 0, 1_000),
        (Some(999_999), 5, 1_000, 0, true, 0, 1_000),
        (Some(200_001), 5, 1_000, 3, true, 0, 801),
        (Some(200_000), 5, 1_000, 3, true, 1, 800),
    ];
    for (offset, limit, period_ms, cost, passes, remaining, reset_ms) in cases {
        let tat = offset.map(|offset| NOW + offset);
        let (outcome, stored) = rate_check(tat, NOW, limit, period_ms, cost);
        let case = (offset, limit, period_ms, cost);
        assert_eq!(stored.is_some(), passes, "{case:?}");
        assert_eq!(outcome.applied.remaining, remaining, "{case:?}");
        assert_eq!(outcome.applied.reset_ms, reset_ms, "{case:?}");
    }
}

#[test]
fn a_stale_tat_counts_as_a_full_bucket() {
    let (outcome, stored) = rate_check(Some(NOW - 5_000_000), NOW, 5, 1_000, 1);
    assert_eq!(stored, Some(NOW + 200_000));
    assert_eq!(outcome.applied.remaining, 4);
}

#[test]
fn the_bucket_refills_at_the_rate() {
    let (_, stored) = rate_check(None, NOW, 2, 1_000, 2);
    let tat = stored;
    assert_eq!(tat, Some(NOW + 1_000_000));
    // Half a period later one unit is back, not two.
    let later = NOW + 500_000;
    assert!(rate_check(tat, later, 2, 1_000, 1).1.is_some());
    let (refused, stored) = rate_check(tat, later, 2, 1_000, 2);
    assert_eq!(stored, None);
    assert_eq!(refused.retry_after_ms, Some(500));
    assert_eq!(refused.applied.remaining, 1);
}

#[test]
fn invalid_limits_never_pass() {
    for (limit, period_ms) in [(0, 1_000), (5, 0)] {
        let (outcome, stored) = rate_check(None, NOW, limit, period_ms, 0);
        assert_eq!(stored, None);
        assert_eq!(outcome.status, Status::Refused);
        assert_eq!(outcome.retry_after_ms, None);
    }
    assert_eq!(concurrency_check(0, false, 0).retry_after_ms, None);
}

#[test]
fn huge_values_saturate_instead_of_overflowing() {
    let (outcome, _) = rate_check(Some(u64::MAX), u64::MAX - 1, u64::MAX, u64::MAX, u64::MAX);
    assert_eq!(outcome.status, Status::Refused);
    assert_eq!(
        rate_release(Some(1), 0, 1, u64::MAX, i64::MAX),
        Some(u64::MAX)
    );
    assert_eq!(budget_check(Some(i64::MAX), u64::MAX, u64::MAX).1, None);
}

#[test]
fn releases_move_the_tat_but_never_before_now() {
    let cases: [ReleaseCase; 7] = [
        (Some(600_000), 5, 1_000, -2, Some(200_000)),
        (Some(600_000), 5, 1_000, -10, Some(0)),
        (None, 5, 1_000, -1, None),
        (None, 5, 1_000, 2, Some(400_000)),
        (Some(100_000), 5, 1_000, 1, Some(300_000)),
        (Some(100_000), 3, 1_000, -1, Some(0)),
        (Some(100_000), 5, 1_000, 0, None),
    ];
    for (offset, limit, period_ms, delta, expected) in cases {
        let tat = offset.map(|offset| NOW + offset);
        let released = rate_release(tat, NOW, limit, period_ms, delta);
        assert_eq!(
            released,
            expected.map(|offset| NOW + offset),
            "{offset:?} {delta}"
        );
    }
    // A past TAT is a full bucket: adding starts from now.
    assert_eq!(
        rate_release(Some(NOW - 9), NOW, 5, 1_000, 1),
        Some(NOW + 200_000)
    );
}

#[test]
fn a_refund_restores_what_the_estimate_took() {
    let (_, tat) = rate_check(None, NOW, 1_000, 60_000, 700);
    let (_, tat) = rate_check(tat, NOW, 1_000, 60_000, 300);
    assert_eq!(rate_check(tat, NOW, 1_000, 60_000, 1).1, None);
    let refunded = rate_release(tat, NOW, 1_000, 60_000, -650);
    let (outcome, _) = rate_check(refunded, NOW, 1_000, 60_000, 0);
    assert_eq!(outcome.applied.remaining, 650);
}

#[test]
fn concurrency_counts_each_lease_once() {
    // (held, already held, limit, passes, remaining, retry)
    let cases = [
        (0, false, 2, true, 1, None),
        (1, false, 2, true, 0, None),
        (2, false, 2, false, 0, Some(CONCURRENCY_RETRY_AFTER_MS)),
        (2, true, 2, true, 0, None),
        (3, false, 2, false, 0, Some(CONCURRENCY_RETRY_AFTER_MS)),
    ];
    for (held, already, limit, passes, remaining, retry) in cases {
        let outcome = concurrency_check(held, already, limit);
        assert_eq!(outcome.status == Status::Passed, passes, "{held} {already}");
        assert_eq!(outcome.applied.remaining, remaining, "{held} {already}");
        assert_eq!(outcome.retry_after_ms, retry, "{held} {already}");
    }
}

#[test]
fn budgets_pass_up_to_the_limit_exactly() {
    // (used, limit, cost, status, remaining, stored)
    let cases = [
        (None, 100, 1, Status::Unseeded, 100, None),
        (Some(0), 100, 100, Status::Passed, 0, Some(100)),
        (Some(60), 100, 40, Status::Passed, 0, Some(100)),
        (Some(60), 100, 41, Status::Refused, 40, None),
        (Some(-20), 100, 10, Status::Passed, 100, Some(-10)),
        (Some(150), 100, 0, Status::Refused, 0, None),
    ];
    for (used, limit, cost, status, remaining, stored) in cases {
        let (outcome, new_used) = budget_check(used, limit, cost);
        assert_eq!(outcome.status, status, "{used:?} {cost}");
        assert_eq!(outcome.applied.remaining, remaining, "{used:?} {cost}");
        assert_eq!(outcome.retry_after_ms, None);
        assert_eq!(new_used, stored, "{used:?} {cost}");
    }
}

fn outcome(status: Status, retry_after_ms: Option<u64>) -> Outcome {
    Outcome {
        status,
        unapplied: Counter::remaining(1),
        applied: Counter::remaining(0),
        retry_after_ms,
    }
}

#[test]
fn the_verdict_names_the_first_refusal_and_the_longest_wait() {
    let passed = outcome(Status::Passed, None);
    let unseeded = outcome(Status::Unseeded, None);
    let (wait_10, wait_30) = (
        outcome(Status::Refused, Some(10)),
        outcome(Status::Refused, Some(30)),
    );
    let never = outcome(Status::Refused, None);
    let cases: Vec<VerdictCase> = vec![
        (vec![], true, None, None, vec![]),
        (vec![passed, passed], true, None, None, vec![]),
        (
            vec![passed, wait_10, wait_30],
            false,
            Some(1),
            Some(30),
            vec![],
        ),
        (vec![wait_30, never], false, Some(0), None, vec![]),
        (vec![unseeded, passed], false, None, None, vec![0]),
        (vec![unseeded, wait_10], false, Some(1), Some(10), vec![0]),
    ];
    for (outcomes, admitted, denied, retry, unseeded) in cases {
        let verdict = verdict(vec![7; outcomes.len()], &outcomes);
        assert_eq!(verdict.admitted, admitted, "{outcomes:?}");
        assert_eq!(verdict.denied, denied, "{outcomes:?}");
        assert_eq!(verdict.retry_after_ms, retry, "{outcomes:?}");
        assert_eq!(verdict.unseeded, unseeded, "{outcomes:?}");
        assert_eq!(verdict.states.len(), outcomes.len());
        assert!(verdict.states.iter().all(|state| state.limit == 7));
        // Admitted: the counters after applying; refused: as they stand.
        let remaining = u64::from(!admitted);
        assert!(
            verdict
                .states
                .iter()
                .all(|state| state.remaining == remaining)
        );
    }
}
