//! The conformance suite on the PostgreSQL server at `LANDFALL_TEST_POSTGRES_URL`, each test in
//! a schema of its own, and how the store behaves when no server answers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use landfall_storage::{MetadataStore, PostgresStore, Store, StoreError};
use sqlx::Connection;
use sqlx::postgres::PgConnectOptions;

use crate::audit::Backdoor;
use crate::conformance::tenant;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn postgres_url() -> String {
    std::env::var("LANDFALL_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// Whether the PostgreSQL tests were asked to skip; says so on stderr when they were.
fn skip_postgres(test: &str) -> bool {
    let skip = std::env::var("LANDFALL_TEST_SKIP_POSTGRES").is_ok_and(|value| value == "1");
    if skip {
        eprintln!("skipping PostgreSQL test `{test}`: LANDFALL_TEST_SKIP_POSTGRES=1");
    }
    skip
}

/// A schema name no other test (in this or another process) uses.
fn fresh_schema() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    format!(
        "landfall_test_{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A store in `schema`, or a failure that says what the PostgreSQL tests need.
async fn connect_in(url: &str, schema: &str) -> PostgresStore {
    match PostgresStore::connect_in_schema(url, 5, schema).await {
        Ok(store) => store,
        Err(err) => panic!(
            "the PostgreSQL tests need a server at {url} (set LANDFALL_TEST_POSTGRES_URL to \
             another one, or LANDFALL_TEST_SKIP_POSTGRES=1 to skip them): {err}"
        ),
    }
}

/// A store in a fresh schema, dropped by `finish`.
pub struct PostgresFixture {
    store: Arc<PostgresStore>,
    backdoor: Arc<PostgresBackdoor>,
}

impl PostgresFixture {
    pub async fn start(test: &str) -> Option<Self> {
        if skip_postgres(test) {
            return None;
        }
        let url = postgres_url();
        let schema = fresh_schema();
        let store = connect_in(&url, &schema).await;
        Some(Self {
            store: Arc::new(store),
            backdoor: Arc::new(PostgresBackdoor {
                url,
                schema,
                others: Mutex::new(Vec::new()),
            }),
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
        self.store.drop_schema().await.unwrap();
    }
}

/// The test's schema, reached behind the store's back.
struct PostgresBackdoor {
    url: String,
    schema: String,
    /// Stores from `another_store`, closed by `finish`.
    others: Mutex<Vec<PostgresStore>>,
}

#[async_trait]
impl Backdoor for PostgresBackdoor {
    async fn execute(&self, sql: &str) -> Result<u64, String> {
        let options: PgConnectOptions = self.url.parse().unwrap();
        let options = options.options([("search_path", self.schema.as_str())]);
        let mut conn = sqlx::PgConnection::connect_with(&options).await.unwrap();
        let result = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut conn)
            .await;
        conn.close().await.unwrap();
        result
            .map(|done| done.rows_affected())
            .map_err(|err| err.to_string())
    }

    async fn drop_append_only_guards(&self) {
        self.execute("DROP TRIGGER audit_records_append_only ON audit_records")
            .await
            .unwrap();
    }

    /// A second pool on the same schema, as another server replica would have.
    async fn another_store(&self) -> Arc<dyn Store> {
        // The compiler cannot prove the `connect` future `Send` inside this boxed
        // `async_trait` future (a higher-ranked lifetime limitation with `sqlx`'s migrator), so
        // it runs on a blocking thread of its own.
        let (url, schema) = (self.url.clone(), self.schema.clone());
        let other = tokio::task::spawn_blocking(move || {
            tokio::runtime::Handle::current().block_on(connect_in(&url, &schema))
        })
        .await
        .unwrap();
        self.others.lock().unwrap().push(other.clone());
        Arc::new(other)
    }
}

crate::conformance_suite!(PostgresFixture);

async fn schema_exists(url: &str, schema: &str) -> bool {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let (exists,): (bool,) =
        sqlx::query_as("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(schema)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    conn.close().await.unwrap();
    exists
}

#[tokio::test(flavor = "multi_thread")]
async fn schemas_isolate_stores_and_drop_cleanly() {
    if skip_postgres("schemas_isolate_stores_and_drop_cleanly") {
        return;
    }
    let url = postgres_url();
    let schema = fresh_schema();
    let first = connect_in(&url, &schema).await;
    let second = connect_in(&url, &fresh_schema()).await;
    first.create_tenant(&tenant("acme")).await.unwrap();
    assert_eq!(second.get_tenant("acme").await.unwrap(), None);
    second.drop_schema().await.unwrap();

    // Connecting again to an existing schema finds its data and its migrations applied.
    let again = connect_in(&url, &schema).await;
    assert_eq!(
        again.get_tenant("acme").await.unwrap(),
        Some(tenant("acme"))
    );
    again.close().await;

    assert!(schema_exists(&url, &schema).await);
    first.drop_schema().await.unwrap();
    assert!(!schema_exists(&url, &schema).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn odd_schema_names_are_refused() {
    for bad in ["", "Upper", "a-b", "x\"; DROP SCHEMA public; --"] {
        let err = PostgresStore::connect_in_schema(&postgres_url(), 1, bad)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Database(_)), "{bad}: {err:?}");
    }
}

/// Connecting to `url` fails with `Unavailable` naming the server, in well under the time a
/// caller would wait.
async fn assert_unavailable_quickly(url: &str, server: &str) {
    let started = Instant::now();
    let result = PostgresStore::connect(url, 2).await;
    let elapsed = started.elapsed();
    let Err(err) = result else {
        panic!("connecting to {url} succeeded");
    };
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains(server), "{err}");
    assert!(elapsed < Duration::from_secs(7), "took {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_connection_is_unavailable() {
    assert_unavailable_quickly("postgres://postgres@127.0.0.1:1/test", "127.0.0.1:1").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_server_is_unavailable_after_the_timeout() {
    // A listener that accepts but never answers the startup message.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let server = format!("127.0.0.1:{port}");
    assert_unavailable_quickly(&format!("postgres://postgres@{server}/test"), &server).await;
    hold.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_url_is_unavailable() {
    let err = PostgresStore::connect("mysql://nope", 1).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}
