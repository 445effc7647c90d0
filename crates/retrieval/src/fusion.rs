//! Fusing ranked hit lists: reciprocal rank fusion (RRF) and a weighted sum of min-max
//! normalized scores, for hybrid search (keyword + vector) and for RAG-Fusion (one list per
//! query rewrite). Pure functions; every fused hit keeps each list's own rank and score.
//!
//! Fused lists are ordered by fused score descending, ties by chunk id ascending, so the
//! result does not depend on hash order or on which list a hit came from first.

use std::collections::HashMap;

use crate::{ChunkId, Hit};

/// The `k` of reciprocal rank fusion from Cormack et al. (2009), which most systems keep.
pub const DEFAULT_RRF_K: f32 = 60.0;

/// A hit's place in one input list.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ranked {
    /// 1-based position in the list.
    pub rank: usize,
    /// The retriever's own score.
    pub score: f32,
}

/// One hit of a keyword + vector fusion.
#[derive(Debug, Clone, PartialEq)]
pub struct FusedHit {
    pub id: ChunkId,
    /// The fused score (higher is better).
    pub score: f32,
    /// Where the keyword retriever ranked it, if it did.
    pub keyword: Option<Ranked>,
    /// Where the vector retriever ranked it, if it did.
    pub vector: Option<Ranked>,
}

/// One hit of a fusion of any number of lists.
#[derive(Debug, Clone, PartialEq)]
pub struct MultiFusedHit {
    pub id: ChunkId,
    pub score: f32,
    /// One entry per input list, in input order: where that list ranked the hit.
    pub ranks: Vec<Option<Ranked>>,
}

/// What to keep of a fused list.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FusionOptions {
    /// Drop hits whose fused score is below this.
    pub score_threshold: Option<f32>,
    /// Keep at most this many hits (after the threshold).
    pub limit: Option<usize>,
}

/// Reciprocal rank fusion of a keyword and a vector list: `Σ 1 / (k + rank)`.
pub fn reciprocal_rank_fusion(
    keyword: &[Hit],
    vector: &[Hit],
    k: f32,
    options: FusionOptions,
) -> Vec<FusedHit> {
    to_pairs(reciprocal_rank_fusion_many(&[keyword, vector], k, options))
}

/// Reciprocal rank fusion of any number of lists (RAG-Fusion: one list per query rewrite).
/// A chunk listed twice in one list counts at its best rank.
pub fn reciprocal_rank_fusion_many(
    lists: &[&[Hit]],
    k: f32,
    options: FusionOptions,
) -> Vec<MultiFusedHit> {
    fuse(lists, options, |_, ranked| 1.0 / (k + ranked.rank as f32))
}

/// `vector_weight · norm(vector score) + (1 − vector_weight) · norm(keyword score)`, where
/// `norm` min-max normalizes each list to 0..=1 (a list whose scores are all equal normalizes
/// to 1) and a list that did not return the hit contributes 0. `vector_weight` is clamped to
/// 0..=1 (NaN counts as 0.5).
pub fn weighted_fusion(
    keyword: &[Hit],
    vector: &[Hit],
    vector_weight: f32,
    options: FusionOptions,
) -> Vec<FusedHit> {
    let vector_weight = if vector_weight.is_nan() {
        0.5
    } else {
        vector_weight.clamp(0.0, 1.0)
    };
    let fused = weighted_fusion_many(
        &[(keyword, 1.0 - vector_weight), (vector, vector_weight)],
        options,
    );
    to_pairs(fused)
}

/// The weighted sum of min-max normalized scores of any number of `(list, weight)` pairs.
pub fn weighted_fusion_many(lists: &[(&[Hit], f32)], options: FusionOptions) -> Vec<MultiFusedHit> {
    let ranges: Vec<(f32, f32)> = lists
        .iter()
        .map(|(hits, _)| {
            hits.iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(low, high), hit| {
                    (low.min(hit.score), high.max(hit.score))
                })
        })
        .collect();
    let only_hits: Vec<&[Hit]> = lists.iter().map(|(hits, _)| *hits).collect();
    fuse(&only_hits, options, |list, ranked| {
        let (low, high) = ranges[list];
        let normalized = if high > low {
            (ranked.score - low) / (high - low)
        } else {
            1.0
        };
        lists[list].1 * normalized
    })
}

fn fuse(
    lists: &[&[Hit]],
    options: FusionOptions,
    contribution: impl Fn(usize, Ranked) -> f32,
) -> Vec<MultiFusedHit> {
    let mut fused: HashMap<ChunkId, MultiFusedHit> = HashMap::new();
    for (list, hits) in lists.iter().enumerate() {
        for (position, hit) in hits.iter().enumerate() {
            let entry = fused.entry(hit.id).or_insert_with(|| MultiFusedHit {
                id: hit.id,
                score: 0.0,
                ranks: vec![None; lists.len()],
            });
            if entry.ranks[list].is_some() {
                continue;
            }
            let ranked = Ranked {
                rank: position + 1,
                score: hit.score,
            };
            entry.ranks[list] = Some(ranked);
            entry.score += contribution(list, ranked);
        }
    }
    let mut fused: Vec<MultiFusedHit> = fused
        .into_values()
        .filter(|hit| {
            options
                .score_threshold
                .is_none_or(|threshold| hit.score >= threshold)
        })
        .collect();
    fused.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
    if let Some(limit) = options.limit {
        fused.truncate(limit);
    }
    fused
}

fn to_pairs(fused: Vec<MultiFusedHit>) -> Vec<FusedHit> {
    fused
        .into_iter()
        .map(|hit| FusedHit {
            id: hit.id,
            score: hit.score,
            keyword: hit.ranks.first().copied().flatten(),
            vector: hit.ranks.get(1).copied().flatten(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    fn hits(list: &[(ChunkId, f32)]) -> Vec<Hit> {
        list.iter().map(|&(id, score)| Hit { id, score }).collect()
    }

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn rrf_sums_reciprocal_ranks_and_keeps_each_side() {
        let keyword = hits(&[(1, 9.0), (2, 5.0), (3, 1.0)]);
        let vector = hits(&[(3, 0.9), (1, 0.8)]);
        let fused = reciprocal_rank_fusion(&keyword, &vector, 60.0, FusionOptions::default());
        let ids: Vec<ChunkId> = fused.iter().map(|h| h.id).collect();
        assert_eq!(ids, vec![1, 3, 2]);
        assert!(close(fused[0].score, 1.0 / 61.0 + 1.0 / 62.0));
        assert!(close(fused[1].score, 1.0 / 63.0 + 1.0 / 61.0));
        assert!(close(fused[2].score, 1.0 / 62.0));
        assert_eq!(
            fused[0].keyword,
            Some(Ranked {
                rank: 1,
                score: 9.0
            })
        );
        assert_eq!(
            fused[0].vector,
            Some(Ranked {
                rank: 2,
                score: 0.8
            })
        );
        assert_eq!(fused[2].vector, None);
    }

    #[test]
    fn weighted_fusion_normalizes_each_list() {
        let keyword = hits(&[(1, 10.0), (2, 5.0), (3, 0.0)]);
        let vector = hits(&[(3, 0.9), (2, 0.5), (4, 0.1)]);
        let cases: [(f32, Vec<(ChunkId, f32)>); 3] = [
            (0.0, vec![(1, 1.0), (2, 0.5), (3, 0.0), (4, 0.0)]),
            (1.0, vec![(3, 1.0), (2, 0.5), (1, 0.0), (4, 0.0)]),
            (0.5, vec![(1, 0.5), (2, 0.5), (3, 0.5), (4, 0.0)]),
        ];
        for (weight, expected) in cases {
            let fused = weighted_fusion(&keyword, &vector, weight, FusionOptions::default());
            let got: Vec<(ChunkId, f32)> = fused.iter().map(|h| (h.id, h.score)).collect();
            assert_eq!(got.len(), expected.len(), "weight {weight}");
            for ((id, score), (want_id, want_score)) in got.iter().zip(&expected) {
                assert_eq!(id, want_id, "weight {weight}: {got:?}");
                assert!(close(*score, *want_score), "weight {weight}: {got:?}");
            }
        }
    }

    #[test]
    fn a_single_hit_list_normalizes_to_one() {
        let fused = weighted_fusion(&hits(&[(7, 3.3)]), &[], 0.3, FusionOptions::default());
        assert!(close(fused[0].score, 0.7));
    }

    #[test]
    fn threshold_and_limit_apply_after_fusion() {
        let keyword = hits(&[(1, 3.0), (2, 2.0), (3, 1.0)]);
        let options = FusionOptions {
            score_threshold: Some(0.5),
            limit: Some(1),
        };
        let fused = weighted_fusion(&keyword, &[], 0.0, options);
        assert_eq!(fused.iter().map(|h| h.id).collect::<Vec<_>>(), vec![1]);
        let options = FusionOptions {
            score_threshold: Some(0.5),
            limit: None,
        };
        assert_eq!(weighted_fusion(&keyword, &[], 0.0, options).len(), 2);
    }

    #[test]
    fn many_lists_fuse_with_per_list_ranks() {
        let (a, b, c) = (
            hits(&[(1, 1.0), (2, 0.5)]),
            hits(&[(2, 1.0)]),
            hits(&[(2, 1.0), (1, 0.1)]),
        );
        let fused = reciprocal_rank_fusion_many(&[&a, &b, &c], 60.0, FusionOptions::default());
        assert_eq!(fused[0].id, 2);
        assert_eq!(fused[0].ranks.iter().filter(|r| r.is_some()).count(), 3);
        assert_eq!(fused[1].ranks[1], None);
    }

    fn hit_list() -> impl Strategy<Value = Vec<Hit>> {
        prop::collection::vec((0i64..30, -5.0f32..5.0), 0..20).prop_map(|pairs| {
            let mut scored: Vec<Hit> = pairs
                .into_iter()
                .map(|(id, score)| Hit { id, score })
                .collect();
            scored.sort_by(|a, b| b.score.total_cmp(&a.score));
            scored
        })
    }

    proptest! {
        #[test]
        fn fused_set_is_the_union_in_a_stable_order(
            keyword in hit_list(),
            vector in hit_list(),
            weight in 0.0f32..=1.0,
            threshold in proptest::option::of(0.0f32..1.0),
        ) {
            let union: BTreeSet<ChunkId> = keyword.iter().chain(&vector).map(|h| h.id).collect();
            for fused in [
                reciprocal_rank_fusion(&keyword, &vector, DEFAULT_RRF_K, FusionOptions::default()),
                weighted_fusion(&keyword, &vector, weight, FusionOptions::default()),
            ] {
                let ids: BTreeSet<ChunkId> = fused.iter().map(|h| h.id).collect();
                prop_assert_eq!(&ids, &union);
                prop_assert_eq!(ids.len(), fused.len());
                for pair in fused.windows(2) {
                    prop_assert!(pair[0].score > pair[1].score
                        || (pair[0].score == pair[1].score && pair[0].id < pair[1].id));
                }
                for hit in &fused {
                    if let Some(ranked) = hit.keyword {
                        prop_assert_eq!(keyword.iter().position(|h| h.id == hit.id), Some(ranked.rank - 1));
                    }
                    prop_assert!(hit.keyword.is_some() || hit.vector.is_some());
                }
            }
            let options = FusionOptions { score_threshold: threshold, limit: Some(5) };
            let kept = weighted_fusion(&keyword, &vector, weight, options);
            prop_assert!(kept.len() <= 5);
            if let Some(threshold) = threshold {
                prop_assert!(kept.iter().all(|h| h.score >= threshold));
            }
            let mut swapped = reciprocal_rank_fusion(&vector, &keyword, 60.0, FusionOptions::default());
            swapped.iter_mut().for_each(|h| std::mem::swap(&mut h.keyword, &mut h.vector));
            prop_assert_eq!(
                swapped.iter().map(|h| h.id).collect::<Vec<_>>(),
                reciprocal_rank_fusion(&keyword, &vector, 60.0, FusionOptions::default())
                    .iter().map(|h| h.id).collect::<Vec<_>>()
            );
        }
    }
}
