//! The order in which a request tries its targets: ascending priority, and within one
//! priority a weighted random permutation, so load spreads by weight and each request still
//! has every target of the group as a fallback.

use rand::Rng;

/// Indices of `targets` (given as `(priority, weight)`) in trying order.
pub(crate) fn try_order(targets: &[(u32, u32)], rng: &mut impl Rng) -> Vec<usize> {
    // Efraimidis–Spirakis: sorting by u^(1/w) descending samples without replacement with
    // probability proportional to weight. Ties in priority keep this random order.
    let mut keyed: Vec<(u32, f64, usize)> = targets
        .iter()
        .enumerate()
        .map(|(index, &(priority, weight))| {
            let uniform: f64 = rng.random_range(f64::EPSILON..1.0);
            (
                priority,
                uniform.powf(1.0 / f64::from(weight.max(1))),
                index,
            )
        })
        .collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)));
    keyed.into_iter().map(|(_, _, index)| index).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn priorities_come_first_in_ascending_order() {
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..100 {
            let order = try_order(&[(2, 1), (0, 1), (1, 100), (0, 1)], &mut rng);
            assert!(matches!(order[..2], [1, 3] | [3, 1]), "{order:?}");
            assert_eq!(order[2..], [2, 0]);
        }
    }

    #[test]
    fn weights_share_first_place_proportionally() {
        let mut rng = StdRng::seed_from_u64(7);
        let targets = [(0, 1), (0, 3)];
        let runs = 20_000;
        let heavy_first = (0..runs)
            .filter(|_| try_order(&targets, &mut rng)[0] == 1)
            .count();
        let share = heavy_first as f64 / f64::from(runs);
        assert!((share - 0.75).abs() < 0.02, "share {share}");
    }

    #[test]
    fn every_target_appears_once() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut order = try_order(&[(0, 5), (0, 1), (1, 1), (0, 2)], &mut rng);
        order.sort_unstable();
        assert_eq!(order, [0, 1, 2, 3]);
    }
}
