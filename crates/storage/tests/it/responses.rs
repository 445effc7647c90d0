//! `ResponseStore` conformance: responses round-trip, refuse a duplicate id, and are seen and
//! deleted only by their own tenant.

use std::sync::Arc;

use landfall_storage::{ResponseRecord, ResponseStore, Store, StoreError};
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
