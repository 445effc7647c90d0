//! `MemoryStore` conformance: conversations and their items stay in their tenant, append in
//! order, page both ways and go with their conversation; memories list per end user and are
//! deleted only by their tenant.

use std::sync::Arc;

use landfall_storage::{
    ConversationRecord, ItemQuery, ItemRecord, MemoryRecord, MemoryStore, Store, StoreError,
};
use serde_json::json;

fn conversation(id: &str) -> ConversationRecord {
    ConversationRecord {
        id: id.to_owned(),
        tenant_id: "t1".to_owned(),
        metadata: json!({"topic": "退货"}),
        summary: None,
        summary_seq: None,
        created_at: 1_000,
    }
}

fn item(id: &str, text: &str) -> ItemRecord {
    ItemRecord {
        seq: 0,
        id: id.to_owned(),
        item: json!({"type": "message", "role": "user", "content": text}),
        created_at: 2_000,
    }
}

fn ids(items: &[ItemRecord]) -> Vec<&str> {
    items.iter().map(|item| item.id.as_str()).collect()
}

fn query(after: Option<&str>, limit: u32, descending: bool) -> ItemQuery {
    ItemQuery {
        after: after.map(str::to_owned),
        limit,
        descending,
    }
}

pub async fn conversations_append_page_and_stay_in_their_tenant(store: Arc<dyn Store>) {
    let store: Arc<dyn MemoryStore> = store;
    store
        .create_conversation(&conversation("conv_1"), &[item("msg_1", "hi")])
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_conversation(&conversation("conv_1"), &[])
            .await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(
        store.get_conversation("t1", "conv_1").await.unwrap(),
        Some(conversation("conv_1"))
    );
    assert_eq!(store.get_conversation("t2", "conv_1").await.unwrap(), None);
    assert!(
        !store
            .append_items("t2", "conv_1", &[item("msg_x", "intruder")])
            .await
            .unwrap()
    );
    assert!(
        store
            .append_items("t1", "conv_1", &[item("msg_2", "a"), item("msg_3", "b")])
            .await
            .unwrap()
    );
    store
        .append_items("t1", "conv_1", &[item("msg_4", "c")])
        .await
        .unwrap();
    let all = store
        .list_items("conv_1", &query(None, 100, false))
        .await
        .unwrap();
    assert_eq!(ids(&all), ["msg_1", "msg_2", "msg_3", "msg_4"]);
    assert!(all.windows(2).all(|pair| pair[0].seq < pair[1].seq));
    assert_eq!(all[1].item["content"], "a");
    let page = store
        .list_items("conv_1", &query(Some("msg_2"), 1, false))
        .await
        .unwrap();
    assert_eq!(ids(&page), ["msg_3"]);
    let newest = store
        .list_items("conv_1", &query(None, 2, true))
        .await
        .unwrap();
    assert_eq!(ids(&newest), ["msg_4", "msg_3"]);
    let older = store
        .list_items("conv_1", &query(Some("msg_3"), 10, true))
        .await
        .unwrap();
    assert_eq!(ids(&older), ["msg_2", "msg_1"]);
    assert_eq!(
        store
            .get_item("conv_1", "msg_3")
            .await
            .unwrap()
            .map(|i| i.id),
        Some("msg_3".to_owned())
    );
    assert!(store.delete_item("conv_1", "msg_3").await.unwrap());
    assert!(!store.delete_item("conv_1", "msg_3").await.unwrap());

    let mut summarized = conversation("conv_1");
    summarized.summary = Some("The user asked about returns.".to_owned());
    summarized.summary_seq = Some(all[2].seq);
    summarized.metadata = json!({"topic": "returns"});
    assert!(store.update_conversation(&summarized).await.unwrap());
    assert_eq!(
        store.get_conversation("t1", "conv_1").await.unwrap(),
        Some(summarized.clone())
    );
    summarized.tenant_id = "t2".to_owned();
    assert!(!store.update_conversation(&summarized).await.unwrap());

    assert!(!store.delete_conversation("t2", "conv_1").await.unwrap());
    assert!(store.delete_conversation("t1", "conv_1").await.unwrap());
    assert_eq!(store.get_conversation("t1", "conv_1").await.unwrap(), None);
    assert!(
        store
            .list_items("conv_1", &query(None, 100, false))
            .await
            .unwrap()
            .is_empty()
    );
}

fn memory(id: &str, user: &str, text: &str) -> MemoryRecord {
    MemoryRecord {
        id: id.to_owned(),
        tenant_id: "t1".to_owned(),
        user_id: user.to_owned(),
        text: text.to_owned(),
        embedding: vec![0.25, -1.5, 3.0],
        source: "api".to_owned(),
        created_at: 5_000,
    }
}

pub async fn memories_list_per_user_and_delete_in_their_tenant(store: Arc<dyn Store>) {
    let store: Arc<dyn MemoryStore> = store;
    store
        .save_memory(&memory("mem_1", "alice", "prefers email"))
        .await
        .unwrap();
    store
        .save_memory(&memory("mem_2", "bob", "住在上海"))
        .await
        .unwrap();
    store
        .save_memory(&memory("mem_3", "alice", "owns an X200"))
        .await
        .unwrap();
    assert!(matches!(
        store.save_memory(&memory("mem_1", "alice", "again")).await,
        Err(StoreError::Conflict { .. })
    ));
    let alice = store.list_memories("t1", "alice").await.unwrap();
    assert_eq!(
        alice,
        vec![
            memory("mem_1", "alice", "prefers email"),
            memory("mem_3", "alice", "owns an X200")
        ]
    );
    assert!(store.list_memories("t2", "alice").await.unwrap().is_empty());
    assert!(!store.delete_memory("t2", "mem_1").await.unwrap());
    assert!(store.delete_memory("t1", "mem_1").await.unwrap());
    assert_eq!(store.list_memories("t1", "alice").await.unwrap().len(), 1);
}
