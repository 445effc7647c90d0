//! `GuardrailStore` conformance: reviews round-trip, page by status, are decided exactly once
//! even by concurrent reviewers; rule-set versions refuse a version that exists.

use std::sync::Arc;

use landfall_storage::{
    GuardrailStore, PageRequest, ReviewDecision, ReviewRecord, RuleSetVersion, Store, StoreError,
};
use serde_json::json;

fn review(id: &str) -> ReviewRecord {
    ReviewRecord {
        id: id.to_owned(),
        tenant_id: "t1".to_owned(),
        key_id: "k1".to_owned(),
        request_id: format!("req-{id}"),
        model: "chat".to_owned(),
        status: "pending".to_owned(),
        hits: json!([{ "rule": "review-diagnosis", "action": "review" }]),
        response: json!({ "choices": [{ "message": { "content": "held 诊断" } }] }),
        released: None,
        note: None,
        created_at: 1_000,
        decided_at: None,
    }
}

pub async fn reviews_round_trip_page_and_decide_once(store: Arc<dyn Store>) {
    let store: Arc<dyn GuardrailStore> = store;
    for id in ["rev_1", "rev_2", "rev_3"] {
        store.create_review(&review(id)).await.unwrap();
    }
    assert!(matches!(
        store.create_review(&review("rev_1")).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(
        store.get_review("rev_2").await.unwrap(),
        Some(review("rev_2"))
    );
    assert_eq!(store.get_review("rev_9").await.unwrap(), None);

    let released = json!({ "choices": [{ "message": { "content": "edited" } }] });
    let approve = ReviewDecision {
        status: "approved",
        released: Some(&released),
        note: Some("ok"),
        decided_at: 2_000,
    };
    // Two reviewers at once: exactly one decision lands.
    let (first, second) = tokio::join!(
        store.decide_review("rev_1", &approve),
        store.decide_review(
            "rev_1",
            &ReviewDecision {
                status: "rejected",
                released: None,
                note: Some("no"),
                decided_at: 2_001,
            }
        )
    );
    assert_eq!(
        [first.unwrap(), second.unwrap()]
            .iter()
            .filter(|won| **won)
            .count(),
        1
    );
    let decided = store.get_review("rev_1").await.unwrap().unwrap();
    assert_ne!(decided.status, "pending");
    assert!(decided.decided_at.is_some());
    assert!(!store.decide_review("rev_1", &approve).await.unwrap());
    assert!(!store.decide_review("rev_9", &approve).await.unwrap());

    let page = |after: Option<&str>, limit| PageRequest {
        after: after.map(str::to_owned),
        limit,
    };
    let pending = store
        .list_reviews(Some("pending"), &page(None, 10))
        .await
        .unwrap();
    let ids: Vec<&str> = pending.iter().map(|review| review.id.as_str()).collect();
    assert_eq!(ids, ["rev_2", "rev_3"]);
    let all = store
        .list_reviews(None, &page(Some("rev_1"), 1))
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].id, "rev_2");
}

pub async fn rule_set_versions_are_saved_once(store: Arc<dyn Store>) {
    let store: Arc<dyn GuardrailStore> = store;
    assert_eq!(store.latest_rule_set().await.unwrap(), None);
    for version in 1..=3 {
        store
            .save_rule_set(&RuleSetVersion {
                version,
                document: json!({ "rules": [], "policies": [], "n": version }),
                created_at: version * 10,
            })
            .await
            .unwrap();
    }
    let stale = RuleSetVersion {
        version: 2,
        document: json!({}),
        created_at: 99,
    };
    assert!(matches!(
        store.save_rule_set(&stale).await,
        Err(StoreError::Conflict { .. })
    ));
    let latest = store.latest_rule_set().await.unwrap().unwrap();
    assert_eq!(
        (latest.version, latest.document["n"].as_i64()),
        (3, Some(3))
    );
    let listed = store.list_rule_sets(Some(1), 10).await.unwrap();
    let versions: Vec<i64> = listed.iter().map(|saved| saved.version).collect();
    assert_eq!(versions, [2, 3]);
}
