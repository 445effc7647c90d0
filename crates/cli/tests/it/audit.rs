//! The audit log through the binary: records queued at a graceful stop are written, a `kill -9`
//! under load leaves a chain that verifies, and `landfall audit verify` reports edited,
//! deleted and torn records (exit 1) in plain words.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use landfall_testkit::{MockUpstream, Script};
use sqlx::Connection;

use crate::BIN;

struct Server {
    child: Child,
    url: String,
    config: PathBuf,
    database: PathBuf,
    _directory: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start(upstream: &MockUpstream) -> Server {
    let directory = tempfile::tempdir().unwrap();
    let config = directory.path().join("landfall.toml");
    let database = directory.path().join("landfall.db");
    let port = crate::free_port();
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n\
             [auth]\nallow_anonymous = true\n[storage.metadata]\ntype = \"sqlite\"\npath = {database:?}\n\
             [audit]\nflush_interval_ms = 50\n\
             [providers.mock]\ntype = \"openai\"\nbase_url = \"{}\"\n\
             [models.chat]\ntargets = [{{ provider = \"mock\" }}]\n",
            upstream.base_url()
        ),
    )
    .unwrap();
    let child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .env("LANDFALL__KNOWLEDGE__ENABLED", "false")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Owned by `Server` at once, so a failed start still kills and reaps the process.
    let server = Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
        config,
        database,
        _directory: directory,
    };
    wait_until_ready(&server.url).await;
    server
}

async fn wait_until_ready(url: &str) {
    let client = crate::http_client().build().unwrap();
    for _ in 0..200 {
        if client.get(format!("{url}/healthz")).send().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("landfall did not start");
}

async fn chat(client: &reqwest::Client, url: &str, index: usize) -> bool {
    client
        .post(format!("{url}/v1/chat/completions"))
        .json(&serde_json::json!({"model": "chat",
            "messages": [{"role": "user", "content": format!("question {index}")}]}))
        .send()
        .await
        .is_ok_and(|response| response.status() == 200)
}

fn verify(config: &Path) -> Output {
    Command::new(BIN)
        .args(["audit", "verify", "--config"])
        .arg(config)
        .output()
        .unwrap()
}

fn verify_json(config: &Path) -> serde_json::Value {
    let output = Command::new(BIN)
        .args(["audit", "verify", "--json", "--config"])
        .arg(config)
        .output()
        .unwrap();
    serde_json::from_slice(&output.stdout).unwrap()
}

async fn stop(server: &mut Server, signal: &str) {
    let sent = Command::new("kill")
        .args([signal, &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let mut child = std::mem::replace(&mut server.child, Command::new("true").spawn().unwrap());
    tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
}

async fn execute(database: &Path, statements: &[&str]) {
    let mut connection =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}", database.display()))
            .await
            .unwrap();
    for statement in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe((*statement).to_owned()))
            .execute(&mut connection)
            .await
            .unwrap();
    }
    connection.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_graceful_stop_writes_every_queued_record_and_tampering_is_reported() {
    let upstream = MockUpstream::start(Script::new()).await;
    let mut server = start(&upstream).await;
    let client = crate::http_client().build().unwrap();
    for index in 0..40 {
        assert!(chat(&client, &server.url, index).await);
    }
    stop(&mut server, "-TERM").await;

    let output = verify(&server.config);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.starts_with("audit log intact: 40 records"),
        "{stdout}"
    );

    // An attacker with write access to the file edits one record and deletes another.
    execute(
        &server.database,
        &[
            "DROP TRIGGER audit_records_no_update",
            "DROP TRIGGER audit_records_no_delete",
            "UPDATE audit_records SET status = 500 WHERE seq = 7",
            "DELETE FROM audit_records WHERE seq = 20",
        ],
    )
    .await;
    let output = verify(&server.config);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("record 7 was altered"), "{stdout}");
    assert!(stdout.contains("record 20 is missing"), "{stdout}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("failed verification"),
        "{output:?}"
    );

    // The last record cut short, as by a torn write.
    execute(
        &server.database,
        &["UPDATE audit_records SET record = substr(record, 1, length(record) / 2) WHERE seq = 40"],
    )
    .await;
    let output = verify(&server.config);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout.contains("record 40, the last one, is incomplete"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn after_kill_9_under_load_the_chain_still_verifies() {
    let upstream = MockUpstream::start(Script::new()).await;
    let mut server = start(&upstream).await;
    let client = crate::http_client().build().unwrap();
    // Eight clients send requests until the process is killed.
    let load: Vec<_> = (0..8)
        .map(|worker| {
            let client = client.clone();
            let url = server.url.clone();
            tokio::spawn(async move {
                let mut served = 0;
                for index in 0..10_000 {
                    if !chat(&client, &url, worker * 10_000 + index).await {
                        break;
                    }
                    served += 1;
                }
                served
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop(&mut server, "-KILL").await;
    let mut served = 0;
    for worker in load {
        served += worker.await.unwrap();
    }
    assert!(served > 100, "the load ran: {served} requests");

    let report = verify_json(&server.config);
    assert_eq!(report["problems"], serde_json::json!([]), "{report}");
    let records = report["records"].as_u64().unwrap();
    // What was committed before the kill is there (at most the last unflushed batch is not),
    // plus up to one request per client whose response the kill cut off.
    assert!(
        records > 0 && records <= served + 8,
        "{records} of {served}"
    );

    // Restarted on the same file, the server goes on with the same chain.
    restart(&mut server).await;
    assert!(chat(&client, &server.url, 1).await);
    stop(&mut server, "-TERM").await;
    let report = verify_json(&server.config);
    assert_eq!(report["problems"], serde_json::json!([]), "{report}");
    assert_eq!(report["records"].as_u64().unwrap(), records + 1);

    // Retention removes the oldest records; what is left still verifies from the new anchor.
    let pruned = Command::new(BIN)
        .args(["audit", "prune", "--older-than-days", "0", "--config"])
        .arg(&server.config)
        .output()
        .unwrap();
    assert!(pruned.status.success(), "{pruned:?}");
    assert!(
        String::from_utf8_lossy(&pruned.stdout)
            .starts_with(&format!("deleted {} audit records", records + 1)),
        "{pruned:?}"
    );
    let report = verify_json(&server.config);
    assert_eq!(report["problems"], serde_json::json!([]), "{report}");
    assert_eq!(report["records"], 0);
    assert_eq!(report["anchor_seq"].as_u64().unwrap(), records + 1);
}

/// Starts `landfall serve` again on the stopped server's configuration and database.
async fn restart(server: &mut Server) {
    server.child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&server.config)
        .env("LANDFALL__KNOWLEDGE__ENABLED", "false")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until_ready(&server.url).await;
}
