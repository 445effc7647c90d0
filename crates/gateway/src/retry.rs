//! How long to wait before retrying the same target.

use std::time::Duration;

use landfall_config::RoutingConfig;
use rand::Rng;

/// The pause before retry number `retries_done + 1`, or `None` to move on: the retries are used
/// up, or the upstream asked for a longer wait than we are willing to hold the client for.
///
/// Exponential backoff from `backoff_initial_ms`, capped at `backoff_max_ms`, with equal jitter
/// (half fixed, half random) so concurrent retries spread out; never shorter than the
/// upstream's `Retry-After`.
pub(crate) fn wait(
    routing: &RoutingConfig,
    retries_done: u32,
    retry_after: Option<Duration>,
    rng: &mut impl Rng,
) -> Option<Duration> {
    if retries_done >= routing.retries_per_target {
        return None;
    }
    let initial = Duration::from_millis(routing.backoff_initial_ms);
    let ceiling = Duration::from_millis(routing.backoff_max_ms);
    let backoff = initial
        .saturating_mul(1 << retries_done.min(16))
        .min(ceiling);
    let half = backoff / 2;
    let jittered = half + half.mul_f64(rng.random::<f64>());
    match retry_after {
        Some(asked) if asked > Duration::from_millis(routing.max_retry_after_ms) => None,
        Some(asked) => Some(jittered.max(asked)),
        None => Some(jittered),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn routing(retries_per_target: u32) -> RoutingConfig {
        RoutingConfig {
            retries_per_target,
            backoff_initial_ms: 100,
            backoff_max_ms: 1_000,
            max_retry_after_ms: 5_000,
            ..RoutingConfig::default()
        }
    }

    #[test]
    fn backoff_doubles_within_jitter_bounds_and_is_capped() {
        let routing = routing(10);
        let mut rng = StdRng::seed_from_u64(9);
        for (retries_done, full_ms) in [
            (0, 100),
            (1, 200),
            (2, 400),
            (3, 800),
            (4, 1_000),
            (9, 1_000),
        ] {
            for _ in 0..50 {
                let wait = wait(&routing, retries_done, None, &mut rng).unwrap();
                let full = Duration::from_millis(full_ms);
                assert!(wait >= full / 2 && wait <= full, "{retries_done}: {wait:?}");
            }
        }
    }

    #[test]
    fn jitter_spreads_waits() {
        let routing = routing(10);
        let mut rng = StdRng::seed_from_u64(1);
        let waits: std::collections::BTreeSet<Duration> = (0..20)
            .map(|_| wait(&routing, 2, None, &mut rng).unwrap())
            .collect();
        assert!(waits.len() > 10);
    }

    #[test]
    fn retries_run_out() {
        let mut rng = StdRng::seed_from_u64(1);
        assert!(wait(&routing(1), 0, None, &mut rng).is_some());
        assert!(wait(&routing(1), 1, None, &mut rng).is_none());
        assert!(wait(&routing(0), 0, None, &mut rng).is_none());
    }

    #[test]
    fn retry_after_is_a_floor_unless_too_long() {
        let routing = routing(3);
        let mut rng = StdRng::seed_from_u64(1);
        let asked = Duration::from_secs(3);
        assert_eq!(wait(&routing, 0, Some(asked), &mut rng), Some(asked));
        assert_eq!(
            wait(&routing, 0, Some(Duration::from_secs(6)), &mut rng),
            None
        );
        let short = Duration::from_millis(1);
        assert!(wait(&routing, 0, Some(short), &mut rng).unwrap() >= Duration::from_millis(50));
    }
}
