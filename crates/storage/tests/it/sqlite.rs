//! The conformance suite on SQLite (always), and what only a file can show.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use landfall_storage::{MetadataStore, PageRequest, SqliteStore, Store, StoreError, UsageScope};
use sqlx::Connection;
use tempfile::TempDir;

use crate::audit::Backdoor;
use crate::conformance::{key, tenant};

/// A store in a fresh temporary directory, removed when the fixture is dropped.
pub struct SqliteFixture {
    store: Arc<SqliteStore>,
    backdoor: Arc<SqliteBackdoor>,
    _dir: TempDir,
}

impl SqliteFixture {
    pub async fn start(_test: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        // A nested path: `open` creates the missing directories.
        let path = dir.path().join("data/meta/landfall.db");
        let store = SqliteStore::open(&path).await.unwrap();
        Some(Self {
            store: Arc::new(store),
            backdoor: Arc::new(SqliteBackdoor {
                path,
                others: Mutex::new(Vec::new()),
            }),
            _dir: dir,
        })
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    pub fn backdoor(&self) -> Arc<dyn Backdoor> {
        self.backdoor.clone()
    }

    pub async fn finish(self) {
        let others = std::mem::take(&mut *self.backdoor.others.lock().unwrap());
        for other in others {
            other.close().await;
        }
        self.store.close().await;
    }
}

/// The database file, opened behind the store's back.
struct SqliteBackdoor {
    path: PathBuf,
    /// Stores from `another_store`, closed by `finish`.
    others: Mutex<Vec<SqliteStore>>,
}

#[async_trait]
impl Backdoor for SqliteBackdoor {
    async fn execute(&self, sql: &str) -> Result<u64, String> {
        let mut conn =
            sqlx::SqliteConnection::connect(&format!("sqlite://{}", self.path.display()))
                .await
                .unwrap();
        let result = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut conn)
            .await;
        conn.close().await.unwrap();
        result
            .map(|done| done.rows_affected())
            .map_err(|err| err.to_string())
    }

    async fn drop_append_only_guards(&self) {
        self.execute("DROP TRIGGER audit_records_no_update; DROP TRIGGER audit_records_no_delete")
            .await
            .unwrap();
    }

    async fn another_store(&self) -> Arc<dyn Store> {
        let other = SqliteStore::open(&self.path).await.unwrap();
        self.others.lock().unwrap().push(other.clone());
        Arc::new(other)
    }
}

crate::conformance_suite!(SqliteFixture);

#[tokio::test(flavor = "multi_thread")]
async fn committed_writes_survive_abandoning_and_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("landfall.db");
    let store = SqliteStore::open(&path).await.unwrap();
    store.create_tenant(&tenant("acme")).await.unwrap();
    store.create_key(&key("key_a", "acme")).await.unwrap();
    let mut row = landfall_storage::UsageRecord {
        tenant_id: "acme".to_owned(),
        key_id: "key_a".to_owned(),
        model: "chat".to_owned(),
        target: "cache".to_owned(),
        hour: 0,
        requests: 3,
        cache_hits: 3,
        input_tokens: 10,
        cached_input_tokens: 10,
        output_tokens: 5,
        cost_nanos: 0,
    };
    store
        .record_usage(std::slice::from_ref(&row))
        .await
        .unwrap();
    // Never closed, as after a crash: nothing is checkpointed or flushed on the way out, so the
    // reopened store has to find every committed write in the file and its WAL.
    std::mem::forget(store);

    // Reopening runs the migrations again: they must recognise the schema as current.
    let reopened = SqliteStore::open(&path).await.unwrap();
    assert_eq!(
        reopened.get_tenant("acme").await.unwrap(),
        Some(tenant("acme"))
    );
    assert_eq!(
        reopened.get_key("key_a").await.unwrap(),
        Some(key("key_a", "acme"))
    );
    let totals = reopened
        .usage_totals(UsageScope::Key("key_a"), 0)
        .await
        .unwrap();
    assert_eq!((totals.requests, totals.tokens), (3, 15));
    row.requests = 1;
    reopened.record_usage(&[row]).await.unwrap();
    let totals = reopened
        .usage_totals(UsageScope::Key("key_a"), 0)
        .await
        .unwrap();
    assert_eq!(totals.requests, 4);
    reopened.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn file_uses_wal_journal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("landfall.db");
    let store = SqliteStore::open(&path).await.unwrap();
    store.create_tenant(&tenant("acme")).await.unwrap();

    // The journal mode is stored in the file, so a separate connection sees it.
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    conn.close().await.unwrap();
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hand_edited_json_is_reported_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("landfall.db");
    let store = SqliteStore::open(&path).await.unwrap();
    store.create_tenant(&tenant("acme")).await.unwrap();
    store.create_tenant(&tenant("beta")).await.unwrap();

    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query("UPDATE tenants SET budgets = '[{\"period\":\"week\"}]' WHERE id = 'beta'")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    assert!(store.get_tenant("acme").await.unwrap().is_some());
    let err = store.get_tenant("beta").await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { entity: "tenant", id, message }
            if id == "beta" && message.contains("budgets")),
        "{err:?}"
    );
    let listed = store
        .list_tenants(&PageRequest::default())
        .await
        .unwrap_err();
    assert!(matches!(listed, StoreError::Corrupt { .. }), "{listed:?}");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unopenable_path_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, b"plain file").unwrap();
    let err = SqliteStore::open(&file.join("landfall.db"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains("not-a-directory"), "{err}");
}
