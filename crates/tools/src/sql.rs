//! `type = "sql"`: read-only queries on a SQLite, PostgreSQL or MySQL/MariaDB database, and
//! its schema for the model.
//!
//! An entry gives two tools: `NAME` runs one query and returns a table, `NAME_schema` lists
//! the tables and columns the model may query. Three layers keep a query read-only:
//!
//! 1. a statement check: the text must parse (in the database's dialect) as exactly one
//!    query — no `INSERT`/`UPDATE`/`DELETE` even inside a `WITH`, no `SELECT … INTO`, no
//!    locking clause — and, when the entry lists `tables`, name only those;
//! 2. a read-only transaction (`BEGIN READ ONLY`, `START TRANSACTION READ ONLY`), always
//!    rolled back; SQLite connections are opened read-only with `query_only`;
//! 3. the database's own statement timeout (`statement_timeout`, `max_statement_time` or
//!    `max_execution_time`) at the call's remaining time, so a slow query stops on the
//!    server too. SQLite has none; its query is abandoned at the deadline.
//!
//! A read-only database role is still the strongest guarantee, and the one to configure:
//! functions such as PostgreSQL's `pg_read_file` are queries too.
//!
//! Queries run through the text protocol (`raw_sql`), so every PostgreSQL and MySQL value
//! arrives as its text form and is typed back by its column's type.

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::TryStreamExt;
use landfall_agents::{Tool, ToolContext, ToolError, ToolOutput, ToolSpec};
use landfall_config::{SqlToolConfig, ToolConfig};
use serde_json::{Value, json};
use sqlparser::ast::{Query, SetExpr, Statement, Visit, Visitor};
use sqlparser::dialect::{Dialect, MySqlDialect, PostgreSqlDialect, SQLiteDialect};
use sqlx::{AssertSqlSafe, Column, Row, TypeInfo, ValueRef};

use crate::BuildError;

/// Characters of one cell in the model's table; the data keeps the whole value.
const MAX_CELL_CHARS: usize = 200;
/// Characters of the whole table the model reads.
const MAX_TEXT_CHARS: usize = 32 * 1024;

#[derive(Clone)]
enum Database {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
    MySql(sqlx::MySqlPool),
}

impl Database {
    fn open(url: &str) -> Result<Self, String> {
        if url.starts_with("sqlite:") {
            let connect: sqlx::sqlite::SqliteConnectOptions = url
                .parse()
                .map_err(|error| format!("`url` is not a SQLite URL: {error}"))?;
            let connect = connect.read_only(true).pragma("query_only", "ON");
            Ok(Self::Sqlite(Self::pool(2).connect_lazy_with(connect)))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Self::pool(4)
                .connect_lazy(url)
                .map(Self::Postgres)
                .map_err(|error| format!("`url` is not a PostgreSQL URL: {error}"))
        } else if url.starts_with("mysql:") || url.starts_with("mariadb:") {
            let url = url.replacen("mariadb:", "mysql:", 1);
            Self::pool(4)
                .connect_lazy(&url)
                .map(Self::MySql)
                .map_err(|error| format!("`url` is not a MySQL URL: {error}"))
        } else {
            Err("`url` must start with sqlite:, postgres: or mysql:".to_owned())
        }
    }

    fn pool<DB: sqlx::Database>(max: u32) -> sqlx::pool::PoolOptions<DB> {
        sqlx::pool::PoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(10))
    }

    fn dialect(&self) -> Box<dyn Dialect + Send + Sync> {
        match self {
            Self::Sqlite(_) => Box::new(SQLiteDialect {}),
            Self::Postgres(_) => Box::new(PostgreSqlDialect {}),
            Self::MySql(_) => Box::new(MySqlDialect {}),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "SQLite",
            Self::Postgres(_) => "PostgreSQL",
            Self::MySql(_) => "MySQL",
        }
    }

    /// Runs `sql` (already checked) in a read-only transaction, returning at most `max_rows`
    /// rows and whether there were more.
    async fn query(
        &self,
        sql: &str,
        max_rows: usize,
        deadline: Instant,
    ) -> Result<Table, sqlx::Error> {
        let millis = deadline
            .saturating_duration_since(Instant::now())
            .as_millis()
            .max(1);
        let sql = AssertSqlSafe(sql.to_owned());
        match self {
            Self::Sqlite(pool) => {
                let transaction = pool.begin().await?;
                read_and_roll_back(transaction, sql, max_rows, sqlite_value).await
            }
            Self::Postgres(pool) => {
                let mut transaction = pool.begin_with("BEGIN READ ONLY").await?;
                sqlx::raw_sql(AssertSqlSafe(format!(
                    "SET LOCAL statement_timeout = {millis}"
                )))
                .execute(&mut *transaction)
                .await?;
                read_and_roll_back(transaction, sql, max_rows, text_value).await
            }
            Self::MySql(pool) => {
                let mut connection = pool.acquire().await?;
                // MariaDB's limit is in seconds, MySQL's in milliseconds; each refuses the
                // other's, which changes nothing.
                let seconds = millis.div_ceil(1000);
                for limit in [
                    format!("SET SESSION max_statement_time = {seconds}"),
                    format!("SET SESSION max_execution_time = {millis}"),
                ] {
                    let _ = sqlx::raw_sql(AssertSqlSafe(limit))
                        .execute(&mut *connection)
                        .await;
                }
                let transaction =
                    sqlx::Connection::begin_with(&mut *connection, "START TRANSACTION READ ONLY")
                        .await?;
                read_and_roll_back(transaction, sql, max_rows, text_value).await
            }
        }
    }

    /// `(table, column, type)` of every table and view in the default schema.
    async fn schema(&self, deadline: Instant) -> Result<Vec<(String, String, String)>, String> {
        let sql = match self {
            Self::Sqlite(_) => {
                "SELECT m.name, p.name, p.type FROM sqlite_master m \
                 JOIN pragma_table_info(m.name) p \
                 WHERE m.type IN ('table', 'view') AND m.name NOT LIKE 'sqlite_%' \
                 ORDER BY m.name, p.cid"
            }
            Self::Postgres(_) => {
                "SELECT table_name, column_name, data_type FROM information_schema.columns \
                 WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
            }
            Self::MySql(_) => {
                "SELECT table_name, column_name, column_type FROM information_schema.columns \
                 WHERE table_schema = DATABASE() ORDER BY table_name, ordinal_position"
            }
        };
        let table = self
            .query(sql, usize::MAX, deadline)
            .await
            .map_err(|error| error.to_string())?;
        Ok(table
            .rows
            .into_iter()
            .map(|row| {
                let mut cells = row.into_iter().map(|cell| match cell {
                    Value::String(text) => text,
                    other => other.to_string(),
                });
                let mut next = || cells.next().unwrap_or_default();
                (next(), next(), next())
            })
            .collect())
    }
}

/// Runs `sql` in `transaction` and rolls it back, whatever the query did.
async fn read_and_roll_back<DB>(
    mut transaction: sqlx::Transaction<'_, DB>,
    sql: AssertSqlSafe<String>,
    max_rows: usize,
    value: fn(&DB::Row, usize) -> Value,
) -> Result<Table, sqlx::Error>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
{
    let table = collect(sqlx::raw_sql(sql).fetch(&mut *transaction), max_rows, value).await;
    transaction.rollback().await?;
    table
}

struct Table {
    columns: Vec<String>,
    rows: Vec<Vec<Value>>,
    truncated: bool,
}

async fn collect<R: Row>(
    mut rows: impl futures::Stream<Item = Result<R, sqlx::Error>> + Unpin,
    max_rows: usize,
    value: fn(&R, usize) -> Value,
) -> Result<Table, sqlx::Error> {
    let mut table = Table {
        columns: Vec::new(),
        rows: Vec::new(),
        truncated: false,
    };
    while let Some(row) = rows.try_next().await? {
        if table.rows.len() == max_rows {
            table.truncated = true;
            break;
        }
        if table.columns.is_empty() {
            table.columns = row
                .columns()
                .iter()
                .map(|column| column.name().to_owned())
                .collect();
        }
        table
            .rows
            .push((0..row.columns().len()).map(|i| value(&row, i)).collect());
    }
    Ok(table)
}

/// A SQLite value, by its storage class.
fn sqlite_value(row: &sqlx::sqlite::SqliteRow, index: usize) -> Value {
    let Ok(raw) = row.try_get_raw(index) else {
        return Value::Null;
    };
    if raw.is_null() {
        return Value::Null;
    }
    match raw.type_info().name() {
        "INTEGER" => row
            .try_get::<i64, _>(index)
            .map_or(Value::Null, Value::from),
        "REAL" => row
            .try_get::<f64, _>(index)
            .map_or(Value::Null, Value::from),
        "BLOB" => row
            .try_get::<Vec<u8>, _>(index)
            .map_or(Value::Null, |bytes| binary(&bytes)),
        _ => row
            .try_get::<String, _>(index)
            .map_or(Value::Null, Value::String),
    }
}

/// A PostgreSQL or MySQL value from the text protocol, typed by its column.
fn text_value<R: Row>(row: &R, index: usize) -> Value
where
    usize: sqlx::ColumnIndex<R>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database>,
    for<'r> Option<Vec<u8>>: sqlx::Decode<'r, R::Database>,
{
    let Ok(text) = row.try_get_unchecked::<Option<String>, _>(index) else {
        return row
            .try_get_unchecked::<Option<Vec<u8>>, _>(index)
            .ok()
            .flatten()
            .map_or(Value::Null, |bytes| binary(&bytes));
    };
    let Some(text) = text else {
        return Value::Null;
    };
    let kind = row.columns()[index].type_info().name().to_ascii_uppercase();
    let number = || {
        text.parse::<i64>()
            .map(Value::from)
            .ok()
            .or_else(|| text.parse::<f64>().ok().map(Value::from))
    };
    let numeric = [
        "INT", "SERIAL", "YEAR", "FLOAT", "DOUBLE", "REAL", "NUMERIC", "DECIMAL",
    ];
    let typed = if numeric.iter().any(|name| kind.contains(name)) {
        number()
    } else if kind == "BOOL" || kind == "BOOLEAN" {
        match text.as_str() {
            "t" | "true" | "1" => Some(Value::Bool(true)),
            "f" | "false" | "0" => Some(Value::Bool(false)),
            _ => None,
        }
    } else if kind == "JSON" || kind == "JSONB" {
        serde_json::from_str(&text).ok()
    } else {
        None
    };
    typed.unwrap_or(Value::String(text))
}

fn binary(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => Value::String(text.to_owned()),
        Err(_) => Value::String(format!("<{} bytes of binary data>", bytes.len())),
    }
}

/// Why a query text is refused before it reaches the database.
fn check(
    sql: &str,
    dialect: &dyn Dialect,
    tables: Option<&BTreeSet<String>>,
) -> Result<(), String> {
    let statements = sqlparser::parser::Parser::parse_sql(dialect, sql)
        .map_err(|error| format!("the query could not be parsed: {error}"))?;
    let [statement] = statements.as_slice() else {
        return Err(format!(
            "send exactly one query, not {} statements",
            statements.len()
        ));
    };
    if !matches!(statement, Statement::Query(_)) {
        return Err("only read-only queries (SELECT, WITH … SELECT, VALUES) may run".to_owned());
    }
    let mut checker = Checker {
        tables,
        ctes: BTreeSet::new(),
    };
    match statement.visit(&mut checker) {
        ControlFlow::Break(message) => Err(message),
        ControlFlow::Continue(()) => Ok(()),
    }
}

struct Checker<'a> {
    tables: Option<&'a BTreeSet<String>>,
    /// Names bound by `WITH`, which are not tables.
    ctes: BTreeSet<String>,
}

impl Visitor for Checker<'_> {
    type Break = String;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<String> {
        if !query.locks.is_empty() {
            return ControlFlow::Break("locking clauses (FOR UPDATE/SHARE) are refused".into());
        }
        if let Some(with) = &query.with {
            self.ctes.extend(
                with.cte_tables
                    .iter()
                    .map(|cte| cte.alias.name.value.to_lowercase()),
            );
        }
        match query.body.as_ref() {
            SetExpr::Select(select) if select.into.is_some() => {
                ControlFlow::Break("SELECT … INTO is refused".into())
            }
            SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => {
                ControlFlow::Break("a query may not change data".into())
            }
            _ => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<String> {
        if matches!(statement, Statement::Query(_)) {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break("a query may not contain other statements".into())
        }
    }

    fn pre_visit_relation(&mut self, relation: &sqlparser::ast::ObjectName) -> ControlFlow<String> {
        let Some(tables) = self.tables else {
            return ControlFlow::Continue(());
        };
        let name = relation
            .0
            .last()
            .and_then(|part| part.as_ident())
            .map(|ident| ident.value.to_lowercase())
            .unwrap_or_default();
        let qualified = relation.0.len() > 1;
        if (!qualified && self.ctes.contains(&name)) || (tables.contains(&name)) {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(format!(
                "`{relation}` is not one of the tables this tool may read ({})",
                tables.iter().cloned().collect::<Vec<_>>().join(", ")
            ))
        }
    }
}

/// The model's view of a table: a Markdown table, cells and the whole cut to size.
fn render(table: &Table) -> String {
    if table.columns.is_empty() {
        return "The query returned no rows.".to_owned();
    }
    let cell = |value: &Value| {
        let text = match value {
            Value::Null => "NULL".to_owned(),
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        let text = text.replace('|', "\\|").replace(['\n', '\r'], " ");
        if text.chars().count() > MAX_CELL_CHARS {
            let cut: String = text.chars().take(MAX_CELL_CHARS).collect();
            format!("{cut}…")
        } else {
            text
        }
    };
    let mut text = format!("| {} |\n", table.columns.join(" | "));
    text.push_str(&format!("|{}\n", " --- |".repeat(table.columns.len())));
    let mut shown = 0;
    for row in &table.rows {
        let line = format!(
            "| {} |\n",
            row.iter().map(cell).collect::<Vec<_>>().join(" | ")
        );
        if text.len() + line.len() > MAX_TEXT_CHARS {
            break;
        }
        text.push_str(&line);
        shown += 1;
    }
    text.push_str(&format!(
        "({shown} row{})",
        if shown == 1 { "" } else { "s" }
    ));
    if shown < table.rows.len() || table.truncated {
        text.push_str(&format!(
            "; more rows were cut off ({} returned at most) — aggregate or filter to see them",
            table.rows.len()
        ));
    }
    text
}

struct Shared {
    database: Database,
    max_rows: usize,
    /// Lowercased; every table when `None`.
    tables: Option<BTreeSet<String>>,
}

struct QueryTool {
    spec: ToolSpec,
    shared: Arc<Shared>,
}

struct SchemaTool {
    spec: ToolSpec,
    shared: Arc<Shared>,
}

/// The query and schema tools of one entry.
///
/// # Errors
/// When the URL is not one of the supported databases.
pub fn build(
    name: &str,
    tool: &ToolConfig,
    sql: &SqlToolConfig,
) -> Result<Vec<Arc<dyn Tool>>, BuildError> {
    let database =
        Database::open(sql.url.expose()).map_err(|error| BuildError::new(name, error))?;
    let engine = database.name();
    let shared = Arc::new(Shared {
        database,
        max_rows: sql.max_rows,
        tables: sql
            .tables
            .as_ref()
            .map(|tables| tables.iter().map(|table| table.to_lowercase()).collect()),
    });
    let description = tool.description.clone().unwrap_or_else(|| {
        format!("Runs one read-only SQL query on the {engine} database and returns the rows.")
    });
    let schema_name = format!("{name}_schema");
    let query = QueryTool {
        spec: ToolSpec {
            name: name.to_owned(),
            description: format!(
                "{description} Write {engine} SQL; call `{schema_name}` first for the tables \
                 and columns. At most {} rows come back.",
                sql.max_rows
            ),
            parameters: json!({
                "type": "object",
                "properties": {
                    "query": {"type": "string", "minLength": 1,
                              "description": format!("One {engine} SELECT query.")},
                },
                "required": ["query"],
                "additionalProperties": false,
            }),
            sensitive: false,
        },
        shared: shared.clone(),
    };
    let schema = SchemaTool {
        spec: ToolSpec {
            name: schema_name,
            description: format!(
                "Lists the tables and columns (with types) that `{name}` can query."
            ),
            parameters: json!({"type": "object", "properties": {}, "additionalProperties": false}),
            sensitive: false,
        },
        shared,
    };
    Ok(vec![Arc::new(query), Arc::new(schema)])
}

fn failed(engine: &str, error: &sqlx::Error) -> ToolError {
    let message = match error {
        sqlx::Error::Database(error) => error.message().to_owned(),
        other => other.to_string(),
    };
    ToolError::failed(format!("{engine} refused the query: {message}"))
}

#[async_trait]
impl Tool for QueryTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, arguments: Value, context: &ToolContext) -> Result<ToolOutput, ToolError> {
        let sql = arguments
            .get("query")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .trim();
        let database = &self.shared.database;
        check(
            sql,
            database.dialect().as_ref(),
            self.shared.tables.as_ref(),
        )
        .map_err(|message| ToolError::Refused { message })?;
        let table = database
            .query(sql, self.shared.max_rows, context.deadline)
            .await
            .map_err(|error| failed(database.name(), &error))?;
        Ok(ToolOutput {
            text: render(&table),
            data: Some(json!({
                "columns": table.columns,
                "rows": table.rows,
                "truncated": table.truncated,
            })),
        })
    }
}

#[async_trait]
impl Tool for SchemaTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, _: Value, context: &ToolContext) -> Result<ToolOutput, ToolError> {
        let database = &self.shared.database;
        let columns = database.schema(context.deadline).await.map_err(|message| {
            ToolError::failed(format!("{} schema: {message}", database.name()))
        })?;
        let mut tables: Vec<(String, Vec<(String, String)>)> = Vec::new();
        for (table, column, kind) in columns {
            if self
                .shared
                .tables
                .as_ref()
                .is_some_and(|allowed| !allowed.contains(&table.to_lowercase()))
            {
                continue;
            }
            match tables.last_mut() {
                Some((last, columns)) if *last == table => columns.push((column, kind)),
                _ => tables.push((table, vec![(column, kind)])),
            }
        }
        if tables.is_empty() {
            return Ok(ToolOutput::text(
                "The database has no tables this tool may read.",
            ));
        }
        let text = tables
            .iter()
            .map(|(table, columns)| {
                let columns = columns
                    .iter()
                    .map(|(column, kind)| format!("{column} {kind}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                format!("{table}({columns})")
            })
            .collect::<Vec<_>>()
            .join("\n");
        let data = tables
            .into_iter()
            .map(|(table, columns)| {
                json!({"table": table, "columns": columns.into_iter()
                    .map(|(name, kind)| json!({"name": name, "type": kind}))
                    .collect::<Vec<_>>()})
            })
            .collect::<Vec<_>>();
        Ok(ToolOutput {
            text: format!("{} tables:\n{text}", database.name()),
            data: Some(Value::Array(data)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn only_single_read_only_queries_pass_the_check() {
        let dialect = PostgreSqlDialect {};
        assert!(check("SELECT 1", &dialect, None).is_ok());
        assert!(check("WITH t AS (SELECT 1 AS x) SELECT x FROM t", &dialect, None).is_ok());
        for refused in [
            "DELETE FROM orders",
            "SELECT 1; DROP TABLE orders",
            "WITH gone AS (DELETE FROM orders RETURNING *) SELECT * FROM gone",
            "SELECT * INTO copy FROM orders",
            "SELECT * FROM orders FOR UPDATE",
            "CREATE TABLE x (a int)",
            "SET ROLE admin",
            "",
            "SELEC nonsense",
        ] {
            assert!(check(refused, &dialect, None).is_err(), "{refused}");
        }
    }

    #[test]
    fn an_allowlist_of_tables_covers_every_relation_but_ctes() {
        let dialect = SQLiteDialect {};
        let allowed = tables(&["orders"]);
        assert!(check("SELECT * FROM Orders", &dialect, Some(&allowed)).is_ok());
        assert!(
            check(
                "WITH big AS (SELECT * FROM orders WHERE total > 10) SELECT * FROM big",
                &dialect,
                Some(&allowed)
            )
            .is_ok()
        );
        for refused in [
            "SELECT * FROM customers",
            "SELECT * FROM orders JOIN customers ON 1 = 1",
            "SELECT * FROM orders WHERE id IN (SELECT id FROM secrets)",
            "SELECT * FROM main.sqlite_master",
        ] {
            let error = check(refused, &dialect, Some(&allowed)).unwrap_err();
            assert!(
                error.contains("not one of the tables"),
                "{refused}: {error}"
            );
        }
    }
}
