//! The behaviour every `KnowledgeStore` promises, written once and run on every backend.

use std::sync::Arc;

use landfall_storage::{
    BatchRecord, ChangeOp, FileRecord, IngestError, IngestStatus, KnowledgeStore, NewChunk,
    PageRequest, Store, StoreError, StoreFileQuery, StoreFileRecord, VectorStoreRecord,
};
use serde_json::{Map, Value, json};

const T0: i64 = 1_704_067_200_000;

fn object(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap()
}

fn file(id: &str, tenant: &str, content: &[u8]) -> FileRecord {
    FileRecord {
        id: id.to_owned(),
        tenant_id: tenant.to_owned(),
        filename: format!("{id}.txt"),
        purpose: "assistants".to_owned(),
        bytes: content.len() as u64,
        sha256: format!("sha-of-{id}"),
        created_at: T0,
        expires_at: None,
    }
}

fn vector_store(id: &str, tenant: &str) -> VectorStoreRecord {
    VectorStoreRecord {
        id: id.to_owned(),
        tenant_id: tenant.to_owned(),
        name: format!("Store {id}"),
        metadata: object(json!({"team": "support"})),
        settings: json!({"chunking": {"max_tokens": 128, "overlap_tokens": 32}}),
        created_at: T0,
        last_active_at: T0,
        expires_at: None,
    }
}

fn attached(store: &str, file: &str, batch: Option<&str>) -> StoreFileRecord {
    StoreFileRecord {
        store_id: store.to_owned(),
        file_id: file.to_owned(),
        tenant_id: "t1".to_owned(),
        batch_id: batch.map(str::to_owned),
        status: IngestStatus::InProgress,
        last_error: None,
        attributes: object(json!({"region": "eu", "year": 2024})),
        chunking: json!({"type": "static"}),
        usage_bytes: 0,
        chunk_count: 0,
        created_at: T0,
        updated_at: T0,
    }
}

fn chunk(text: &str, page: u32) -> NewChunk {
    NewChunk {
        text: text.to_owned(),
        page: Some(page),
        char_start: 10,
        char_end: 10 + text.chars().count() as u64,
        heading_path: vec!["Manual".to_owned(), "安装".to_owned()],
        token_count: 7,
        embedding: vec![0.25, -0.5, 1.0e-3],
    }
}

pub async fn knowledge_files_are_tenant_scoped_and_page(store: Arc<dyn Store>) {
    let store: Arc<dyn KnowledgeStore> = store;
    for id in ["file-a", "file-b", "file-c"] {
        store
            .create_file(&file(id, "t1", b"hello"), b"hello")
            .await
            .unwrap();
    }
    store
        .create_file(&file("file-z", "t2", b"other"), b"other")
        .await
        .unwrap();
    let conflict = store.create_file(&file("file-a", "t1", b"x"), b"x").await;
    assert!(
        matches!(conflict, Err(StoreError::Conflict { .. })),
        "{conflict:?}"
    );

    assert_eq!(
        store.get_file("t1", "file-a").await.unwrap(),
        Some(file("file-a", "t1", b"hello"))
    );
    assert_eq!(
        store.get_file("t2", "file-a").await.unwrap(),
        None,
        "another tenant's file"
    );
    assert_eq!(
        store.file_content("t1", "file-b").await.unwrap().as_deref(),
        Some(&b"hello"[..])
    );
    assert_eq!(store.file_content("t2", "file-b").await.unwrap(), None);
    let found = store
        .find_file("t1", "sha-of-file-b", "file-b.txt")
        .await
        .unwrap();
    assert_eq!(found.map(|f| f.id).as_deref(), Some("file-b"));

    let first = PageRequest {
        after: None,
        limit: 2,
    };
    let ids = |files: Vec<FileRecord>| files.into_iter().map(|f| f.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.list_files("t1", None, &first, false).await.unwrap()),
        ["file-a", "file-b"]
    );
    let next = PageRequest {
        after: Some("file-b".to_owned()),
        limit: 2,
    };
    assert_eq!(
        ids(store.list_files("t1", None, &next, false).await.unwrap()),
        ["file-c"]
    );
    assert_eq!(
        ids(store.list_files("t1", None, &first, true).await.unwrap()),
        ["file-c", "file-b"]
    );
    assert!(
        store
            .list_files("t1", Some("batch"), &first, false)
            .await
            .unwrap()
            .is_empty()
    );

    // Expiring files of every tenant, soonest first; files without expiry never.
    for (id, tenant, expires_at) in [("file-e2", "t2", T0 + 20), ("file-e1", "t1", T0 + 10)] {
        let record = FileRecord {
            expires_at: Some(expires_at),
            ..file(id, tenant, b"x")
        };
        store.create_file(&record, b"x").await.unwrap();
    }
    assert!(store.expired_files(T0 + 9, 10).await.unwrap().is_empty());
    assert_eq!(
        ids(store.expired_files(T0 + 20, 10).await.unwrap()),
        ["file-e1", "file-e2"]
    );
    assert_eq!(
        ids(store.expired_files(T0 + 20, 1).await.unwrap()),
        ["file-e1"]
    );
    for (id, tenant) in [("file-e1", "t1"), ("file-e2", "t2")] {
        store.delete_file(tenant, id).await.unwrap();
    }

    assert_eq!(
        store.delete_file("t2", "file-a").await.unwrap(),
        None,
        "not t2's to delete"
    );
    assert_eq!(
        store.delete_file("t1", "file-a").await.unwrap(),
        Some(vec![])
    );
    assert_eq!(store.get_file("t1", "file-a").await.unwrap(), None);
    assert_eq!(store.file_content("t1", "file-a").await.unwrap(), None);
}

pub async fn knowledge_vector_stores_round_trip(store: Arc<dyn Store>) {
    let store: Arc<dyn KnowledgeStore> = store;
    let mut record = vector_store("vs_1", "t1");
    store.create_vector_store(&record).await.unwrap();
    store
        .create_vector_store(&vector_store("vs_2", "t1"))
        .await
        .unwrap();
    store
        .create_vector_store(&vector_store("vs_9", "t2"))
        .await
        .unwrap();
    assert!(matches!(
        store.create_vector_store(&record).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(
        store.get_vector_store("t1", "vs_1").await.unwrap(),
        Some(record.clone())
    );
    assert_eq!(store.get_vector_store("t2", "vs_1").await.unwrap(), None);

    record.name = "Renamed".to_owned();
    record.metadata = object(json!({"owner": "ops"}));
    record.last_active_at = T0 + 5;
    assert!(store.update_vector_store(&record).await.unwrap());
    assert_eq!(
        store.get_vector_store("t1", "vs_1").await.unwrap(),
        Some(record.clone())
    );
    let mut foreign = record.clone();
    foreign.tenant_id = "t2".to_owned();
    assert!(!store.update_vector_store(&foreign).await.unwrap());

    let page = PageRequest {
        after: None,
        limit: 10,
    };
    let listed = store.list_vector_stores("t1", &page, true).await.unwrap();
    assert_eq!(
        listed.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["vs_2", "vs_1"]
    );
    assert!(!store.delete_vector_store("t2", "vs_1").await.unwrap());
    assert!(store.delete_vector_store("t1", "vs_1").await.unwrap());
    assert_eq!(store.get_vector_store("t1", "vs_1").await.unwrap(), None);
}

pub async fn knowledge_ingest_lifecycle_and_change_log(store: Arc<dyn Store>) {
    let store: Arc<dyn KnowledgeStore> = store;
    store
        .create_vector_store(&vector_store("vs_1", "t1"))
        .await
        .unwrap();
    store
        .create_file(&file("file-1", "t1", b"abc"), b"abc")
        .await
        .unwrap();
    store
        .create_file(&file("file-2", "t1", b"def"), b"def")
        .await
        .unwrap();
    let start = store.last_change().await.unwrap();

    let missing = store
        .replace_chunks("vs_1", "file-1", &[chunk("x", 1)])
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound { .. })),
        "not attached yet"
    );

    store
        .create_batch(&BatchRecord {
            id: "vsfb_1".to_owned(),
            store_id: "vs_1".to_owned(),
            tenant_id: "t1".to_owned(),
            created_at: T0,
            cancelled: false,
        })
        .await
        .unwrap();
    store
        .attach_file(&attached("vs_1", "file-1", Some("vsfb_1")))
        .await
        .unwrap();
    store
        .attach_file(&attached("vs_1", "file-2", Some("vsfb_1")))
        .await
        .unwrap();
    assert!(matches!(
        store.attach_file(&attached("vs_1", "file-1", None)).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(store.pending_ingests(10).await.unwrap().len(), 2);

    let chunks = [chunk("第一章 安装", 1), chunk("Chapter two", 2)];
    let seq1 = store
        .replace_chunks("vs_1", "file-1", &chunks)
        .await
        .unwrap();
    let seq2 = store
        .replace_chunks("vs_1", "file-1", &chunks[..1])
        .await
        .unwrap();
    assert!(seq1 > start && seq2 > seq1);
    let stored = store.file_chunks("vs_1", "file-1").await.unwrap();
    assert_eq!(stored.len(), 1, "replace, not append");
    assert_eq!(stored[0].chunk, chunks[0]);
    assert_eq!(stored[0].position, 0);
    assert_eq!(
        stored[0].attributes,
        object(json!({"region": "eu", "year": 2024}))
    );
    let by_id = store
        .chunks_by_id(&[stored[0].id, 999_999_999])
        .await
        .unwrap();
    assert_eq!(by_id.len(), 1);
    assert_eq!(by_id[0].chunk.text, "第一章 安装");
    assert!(
        by_id[0].chunk.embedding.is_empty(),
        "chunks_by_id leaves embeddings out"
    );

    let mut done = attached("vs_1", "file-1", Some("vsfb_1"));
    done.status = IngestStatus::Completed;
    done.usage_bytes = 1234;
    done.chunk_count = 1;
    assert!(store.update_store_file(&done).await.unwrap());
    let mut failed = attached("vs_1", "file-2", Some("vsfb_1"));
    failed.status = IngestStatus::Failed;
    failed.last_error = Some(IngestError {
        code: "unsupported_file".to_owned(),
        message: "encrypted PDF".to_owned(),
    });
    assert!(store.update_store_file(&failed).await.unwrap());
    assert_eq!(
        store.get_store_file("vs_1", "file-2").await.unwrap(),
        Some(failed)
    );
    assert!(store.pending_ingests(10).await.unwrap().is_empty());

    let (counts, bytes) = store.store_usage("vs_1").await.unwrap();
    assert_eq!(
        (counts.completed, counts.failed, counts.total(), bytes),
        (1, 1, 2, 1234)
    );
    let (batch, batch_counts) = store.get_batch("vs_1", "vsfb_1").await.unwrap().unwrap();
    assert_eq!((batch.id.as_str(), batch_counts.total()), ("vsfb_1", 2));
    let query = StoreFileQuery {
        status: Some(IngestStatus::Failed),
        ..StoreFileQuery::default()
    };
    let failed_files = store.list_store_files("vs_1", &query).await.unwrap();
    assert_eq!(
        failed_files
            .iter()
            .map(|f| f.file_id.as_str())
            .collect::<Vec<_>>(),
        ["file-2"]
    );

    // Deleting the file detaches it everywhere and logs the removal.
    assert_eq!(
        store.delete_file("t1", "file-1").await.unwrap(),
        Some(vec!["vs_1".to_owned()])
    );
    assert!(
        store
            .file_chunks("vs_1", "file-1")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.detach_file("vs_1", "file-2").await.unwrap());
    assert!(!store.detach_file("vs_1", "file-2").await.unwrap());
    assert!(store.delete_vector_store("t1", "vs_1").await.unwrap());

    let changes = store.changes_after(start, 100).await.unwrap();
    let ops: Vec<_> = changes.iter().map(|c| (c.file_id.as_str(), c.op)).collect();
    assert_eq!(
        ops,
        [
            ("file-1", ChangeOp::Replace),
            ("file-1", ChangeOp::Replace),
            ("file-1", ChangeOp::Remove),
            ("file-2", ChangeOp::Remove),
            ("", ChangeOp::RemoveStore),
        ]
    );
    assert!(changes.windows(2).all(|pair| pair[0].seq < pair[1].seq));
    assert_eq!(store.last_change().await.unwrap(), changes[4].seq);
    assert_eq!(
        store
            .changes_after(changes[3].seq, 100)
            .await
            .unwrap()
            .len(),
        1
    );
}

pub async fn knowledge_cancel_batch_stops_pending_files(store: Arc<dyn Store>) {
    let store: Arc<dyn KnowledgeStore> = store;
    store
        .create_vector_store(&vector_store("vs_1", "t1"))
        .await
        .unwrap();
    store
        .create_file(&file("file-1", "t1", b"abc"), b"abc")
        .await
        .unwrap();
    store
        .create_batch(&BatchRecord {
            id: "vsfb_1".to_owned(),
            store_id: "vs_1".to_owned(),
            tenant_id: "t1".to_owned(),
            created_at: T0,
            cancelled: false,
        })
        .await
        .unwrap();
    store
        .attach_file(&attached("vs_1", "file-1", Some("vsfb_1")))
        .await
        .unwrap();
    assert!(store.cancel_batch("vs_1", "vsfb_1").await.unwrap());
    assert!(!store.cancel_batch("vs_1", "vsfb_404").await.unwrap());
    let (batch, counts) = store.get_batch("vs_1", "vsfb_1").await.unwrap().unwrap();
    assert!(batch.cancelled);
    assert_eq!(counts.cancelled, 1);
    assert!(store.pending_ingests(10).await.unwrap().is_empty());
}

/// Concurrent writers still produce a change log a reader can follow without skipping.
pub async fn knowledge_change_log_is_gapless_under_concurrency(store: Arc<dyn Store>) {
    let store: Arc<dyn KnowledgeStore> = store;
    store
        .create_vector_store(&vector_store("vs_1", "t1"))
        .await
        .unwrap();
    let start = store.last_change().await.unwrap();
    let mut tasks = Vec::new();
    for n in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let file_id = format!("file-{n}");
            store
                .create_file(&file(&file_id, "t1", b"x"), b"x")
                .await
                .unwrap();
            store
                .attach_file(&attached("vs_1", &file_id, None))
                .await
                .unwrap();
            for round in 0..5 {
                let text = format!("chunk {n} {round}");
                store
                    .replace_chunks("vs_1", &file_id, &[chunk(&text, 1)])
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let changes = store.changes_after(start, 1000).await.unwrap();
    assert_eq!(changes.len(), 40);
    assert!(changes.windows(2).all(|pair| pair[0].seq < pair[1].seq));
}
