//! `ResponseStore` conformance: responses round-trip, refuse a duplicate id, and are seen and
//! deleted only by their own tenant; tool approvals round-trip, page by status and are
//! decided once. `PromptStore`: versions are immutable, the latest is the highest, lists page
//! by id.

use std::sync::Arc;

use landfall_storage::{
    ApprovalRecord, PageRequest, PromptRecord, PromptStore, ResponseRecord, ResponseStore, Store,
    StoreError,
};
use serde_json::json;

fn response(id: &str, tenant: &str) -> ResponseRecord {
    ResponseRecord {
        id: id.to_owned(),
        tenant_id: tenant.to_owned(),
        key_id: "k1".to_owned(),
        model: "chat".to_owned(),
        previous_response_id: Some("resp_0".to_owned()),
        response: json!({ "id": id, "output": [{ "type": "message", "text": "退货 30 天" }] }),
        conversation: json!([{ "role": "user", "content": "hi" }]),
        created_at: 1_000,
    }
}

pub async fn responses_round_trip_and_stay_in_their_tenant(store: Arc<dyn Store>) {
    let store: Arc<dyn ResponseStore> = store;
    store
        .save_response(&response("resp_1", "t1"))
        .await
        .unwrap();
    assert!(matches!(
        store.save_response(&response("resp_1", "t1")).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(
        store.get_response("t1", "resp_1").await.unwrap(),
        Some(response("resp_1", "t1"))
    );
    assert_eq!(store.get_response("t2", "resp_1").await.unwrap(), None);
    assert!(!store.delete_response("t2", "resp_1").await.unwrap());
    assert!(store.delete_response("t1", "resp_1").await.unwrap());
    assert!(!store.delete_response("t1", "resp_1").await.unwrap());
    assert_eq!(store.get_response("t1", "resp_1").await.unwrap(), None);
}

fn approval(id: &str) -> ApprovalRecord {
    ApprovalRecord {
        id: id.to_owned(),
        tenant_id: "t1".to_owned(),
        key_id: "k1".to_owned(),
        request_id: "req_1".to_owned(),
        tool: "send_mail".to_owned(),
        entry: "send_mail".to_owned(),
        arguments: json!({ "to": ["a@example.com"], "subject": "报告" }),
        status: "pending".to_owned(),
        reason: None,
        created_at: 2_000,
        decided_at: None,
    }
}

pub async fn approvals_round_trip_page_and_decide_once(store: Arc<dyn Store>) {
    let store: Arc<dyn ResponseStore> = store;
    for id in ["apr_1", "apr_2", "apr_3"] {
        store.create_approval(&approval(id)).await.unwrap();
    }
    assert!(matches!(
        store.create_approval(&approval("apr_1")).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(
        store.get_approval("apr_1").await.unwrap(),
        Some(approval("apr_1"))
    );
    assert_eq!(store.get_approval("apr_9").await.unwrap(), None);

    assert!(
        store
            .decide_approval("apr_2", "approved", Some("ok by ops"), 3_000)
            .await
            .unwrap()
    );
    assert!(
        !store
            .decide_approval("apr_2", "rejected", None, 4_000)
            .await
            .unwrap(),
        "decided once"
    );
    let decided = store.get_approval("apr_2").await.unwrap().unwrap();
    assert_eq!(
        (
            decided.status.as_str(),
            decided.reason.as_deref(),
            decided.decided_at
        ),
        ("approved", Some("ok by ops"), Some(3_000))
    );

    let page = |after: Option<&str>, limit| PageRequest {
        after: after.map(str::to_owned),
        limit,
    };
    let pending = store
        .list_approvals(Some("pending"), &page(None, 10))
        .await
        .unwrap();
    let ids: Vec<&str> = pending.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["apr_1", "apr_3"]);
    let all = store
        .list_approvals(None, &page(Some("apr_1"), 1))
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].id, "apr_2");
}

fn prompt(id: &str, version: i64) -> PromptRecord {
    PromptRecord {
        id: id.to_owned(),
        version,
        template: json!({ "role": format!("v{version} 客服"), "variables": {"type": "object"} }),
        created_at: 3_000 + version,
    }
}

pub async fn prompt_versions_are_immutable_and_list_latest(store: Arc<dyn Store>) {
    let store: Arc<dyn PromptStore> = store;
    for (id, version) in [
        ("support", 1),
        ("support", 2),
        ("report", 1),
        ("support", 3),
    ] {
        store.save_prompt(&prompt(id, version)).await.unwrap();
    }
    assert!(matches!(
        store.save_prompt(&prompt("support", 2)).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(
        store.get_prompt("support", None).await.unwrap(),
        Some(prompt("support", 3))
    );
    assert_eq!(
        store.get_prompt("support", Some(2)).await.unwrap(),
        Some(prompt("support", 2))
    );
    assert_eq!(store.get_prompt("support", Some(9)).await.unwrap(), None);
    assert_eq!(store.get_prompt("missing", None).await.unwrap(), None);
    let latest = store
        .list_prompts(&PageRequest {
            after: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(latest, vec![prompt("report", 1), prompt("support", 3)]);
    let after = store
        .list_prompts(&PageRequest {
            after: Some("report".to_owned()),
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(after, vec![prompt("support", 3)]);
    let versions: Vec<i64> = store
        .list_prompt_versions("support")
        .await
        .unwrap()
        .iter()
        .map(|record| record.version)
        .collect();
    assert_eq!(versions, vec![1, 2, 3]);
    assert!(store.delete_prompt("support").await.unwrap());
    assert!(!store.delete_prompt("support").await.unwrap());
    assert_eq!(store.get_prompt("support", Some(1)).await.unwrap(), None);
    assert_eq!(store.list_prompt_versions("support").await.unwrap(), vec![]);
}
