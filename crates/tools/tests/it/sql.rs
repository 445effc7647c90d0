//! The `sql` tool on SQLite (a file), PostgreSQL (`LANDFALL_TEST_POSTGRES_URL`, default
//! 127.0.0.1:5432 database `test`) and MariaDB/MySQL (`LANDFALL_TEST_MYSQL_URL`, default
//! root@127.0.0.1:3306 database `test`): schema, typed rows, row limits, the statement
//! check, the read-only transaction under it, and the server-side time limit.

use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Executor};

use crate::{context, registry, tool};

const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const MYSQL_URL: &str = "mysql://root@127.0.0.1:3306/test";

const FIXTURE: &[&str] = &[
    "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer VARCHAR(40) NOT NULL, \
     total DECIMAL(10, 2) NOT NULL, paid BOOLEAN NOT NULL, note VARCHAR(80))",
    "CREATE TABLE secrets (id INTEGER PRIMARY KEY, value VARCHAR(40))",
    "INSERT INTO orders VALUES (1, 'Ada', 120.50, TRUE, NULL), (2, 'Lin', 80.00, FALSE, 'a|b'), \
     (3, 'Ada', 42.25, TRUE, '加急')",
    "INSERT INTO secrets VALUES (1, 'hunter2')",
];

fn sql_registry(url: &str) -> landfall_tools::Registry {
    registry(&format!(
        "[tools.db]\ntype = \"sql\"\nurl = \"{url}\"\nmax_rows = 2\ntables = [\"orders\"]\n\
         [tools.everything]\ntype = \"sql\"\nurl = \"{url}\"\n"
    ))
}

async fn call(
    registry: &landfall_tools::Registry,
    entry: &str,
    name: &str,
    args: Value,
) -> Result<landfall_agents::ToolOutput, landfall_agents::ToolError> {
    tool(registry, entry, name).call(args, &context(10)).await
}

/// What every database must do the same way.
async fn behaves_as_a_read_only_table_source(url: &str, engine: &str) {
    let registry = sql_registry(url);
    let schema = call(&registry, "db", "db_schema", json!({})).await.unwrap();
    assert!(schema.text.contains(engine), "{}", schema.text);
    assert!(schema.text.contains("orders(id "), "{}", schema.text);
    assert!(
        !schema.text.contains("secrets"),
        "tables outside the allowlist are not shown: {}",
        schema.text
    );
    let everything = call(&registry, "everything", "everything_schema", json!({}))
        .await
        .unwrap();
    assert!(everything.text.contains("secrets("), "{}", everything.text);

    let output = call(
        &registry,
        "everything",
        "everything",
        json!({"query": "SELECT id, customer, total, paid, note FROM orders ORDER BY id"}),
    )
    .await
    .unwrap();
    let data = output.data.unwrap();
    assert_eq!(
        data["columns"],
        json!(["id", "customer", "total", "paid", "note"])
    );
    assert_eq!(data["rows"][0][0], json!(1));
    assert_eq!(data["rows"][0][1], json!("Ada"));
    assert_eq!(data["rows"][0][2].as_f64(), Some(120.5), "{data}");
    assert!(
        data["rows"][0][3] == json!(true) || data["rows"][0][3] == json!(1),
        "{data}"
    );
    assert_eq!(data["rows"][0][4], Value::Null);
    assert_eq!(data["rows"][2][4], json!("加急"));
    assert!(output.text.contains("| 2 | Lin | 80"), "{}", output.text);
    assert!(
        output.text.contains("a\\|b"),
        "cells are escaped: {}",
        output.text
    );
    assert!(output.text.contains("NULL"), "{}", output.text);

    // Row limit: the model is told rows were cut off.
    let limited = call(
        &registry,
        "db",
        "db",
        json!({"query": "SELECT * FROM orders"}),
    )
    .await
    .unwrap();
    assert_eq!(
        limited.data.as_ref().unwrap()["rows"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(limited.data.unwrap()["truncated"], json!(true));
    assert!(limited.text.contains("cut off"), "{}", limited.text);

    let aggregate = call(
        &registry,
        "db",
        "db",
        json!({"query": "WITH spend AS (SELECT customer, SUM(total) AS spent FROM orders GROUP BY customer) \
                         SELECT customer, spent FROM spend ORDER BY spent DESC"}),
    )
    .await
    .unwrap();
    assert_eq!(aggregate.data.unwrap()["rows"][0][0], json!("Ada"));

    for (query, why) in [
        ("DELETE FROM orders", "read-only"),
        ("SELECT 1; DELETE FROM orders", "exactly one"),
        ("SELECT value FROM secrets", "not one of the tables"),
        ("UPDATE orders SET paid = TRUE", "read-only"),
    ] {
        let error = call(&registry, "db", "db", json!({"query": query}))
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains(why), "{query}: {error}");
    }
    let error = call(
        &registry,
        "everything",
        "everything",
        json!({"query": "SELECT no_such_column FROM orders"}),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        error.contains(&format!("{engine} refused the query")),
        "{error}"
    );

    // Nothing above changed the data.
    let count = call(
        &registry,
        "everything",
        "everything",
        json!({"query": "SELECT COUNT(*) AS n FROM orders"}),
    )
    .await
    .unwrap();
    assert_eq!(count.data.unwrap()["rows"][0][0], json!(3));
}

#[tokio::test]
async fn sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shop.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    for statement in FIXTURE {
        pool.execute(*statement).await.unwrap();
    }
    pool.close().await;
    let url = format!("sqlite://{}", path.display());
    behaves_as_a_read_only_table_source(&url, "SQLite").await;
}

#[tokio::test]
async fn postgres() {
    let base =
        std::env::var("LANDFALL_TEST_POSTGRES_URL").unwrap_or_else(|_| POSTGRES_URL.to_owned());
    let schema = format!("lf_sql_tool_{}", std::process::id());
    let admin = sqlx::PgPool::connect(&base).await.unwrap();
    admin
        .execute(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .await
        .unwrap();
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}options=-c%20search_path%3D{schema}");
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    for statement in FIXTURE {
        pool.execute(*statement).await.unwrap();
    }
    pool.execute("CREATE SEQUENCE counter").await.unwrap();
    behaves_as_a_read_only_table_source(&url, "PostgreSQL").await;

    let registry = sql_registry(&url);
    // A query the check cannot tell writes: the read-only transaction refuses it.
    let error = call(
        &registry,
        "everything",
        "everything",
        json!({"query": "SELECT nextval('counter')"}),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(error.contains("read-only transaction"), "{error}");
    // The statement timeout stops a slow query on the server, at the call's deadline.
    let slow = tool(&registry, "everything", "everything");
    let started = std::time::Instant::now();
    let mut short = context(10);
    short.deadline = started + std::time::Duration::from_millis(300);
    let error = slow
        .call(json!({"query": "SELECT pg_sleep(5)"}), &short)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("statement timeout"), "{error}");
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    pool.close().await;
    admin
        .execute(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .await
        .unwrap();
}

#[tokio::test]
async fn mariadb() {
    let base = std::env::var("LANDFALL_TEST_MYSQL_URL").unwrap_or_else(|_| MYSQL_URL.to_owned());
    let database = format!("lf_sql_tool_{}", std::process::id());
    let admin = sqlx::MySqlPool::connect(&base).await.unwrap();
    admin
        .execute(AssertSqlSafe(format!("CREATE DATABASE {database}")))
        .await
        .unwrap();
    let root = base
        .rsplit_once('/')
        .map_or(base.as_str(), |(root, _)| root);
    let url = format!("{root}/{database}");
    let pool = sqlx::MySqlPool::connect(&url).await.unwrap();
    for statement in FIXTURE {
        pool.execute(*statement).await.unwrap();
    }
    behaves_as_a_read_only_table_source(&url, "MySQL").await;
    pool.close().await;
    admin
        .execute(AssertSqlSafe(format!("DROP DATABASE {database}")))
        .await
        .unwrap();
}
