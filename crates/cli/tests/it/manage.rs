//! `landfall tenants …` and `landfall keys …` on the embedded store, and start-up failures of
//! the stores.

use std::process::{Command, Output};

use serde_json::Value;

use crate::BIN;

struct Store {
    directory: tempfile::TempDir,
}

impl Store {
    fn new() -> Store {
        let directory = tempfile::tempdir().unwrap();
        let config = format!(
            "[storage.metadata]\ntype = \"sqlite\"\npath = {:?}\n\
             [providers.p]\ntype = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\
             [models.chat]\ntargets = [{{ provider = \"p\" }}]\n",
            directory.path().join("landfall.db")
        );
        std::fs::write(directory.path().join("landfall.toml"), config).unwrap();
        Store { directory }
    }

    fn run(&self, args: &[&str]) -> Output {
        let config = self.directory.path().join("landfall.toml");
        Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(&config)
            .env_remove("LANDFALL_CONFIG")
            .output()
            .unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }
}

#[test]
fn tenants_and_keys_round_trip_through_the_cli() {
    let store = Store::new();
    let tenant = store.json(&[
        "tenants",
        "create",
        "--id",
        "acme",
        "--name",
        "Acme",
        "--rps",
        "200",
        "--monthly-cost",
        "25.5",
    ]);
    assert_eq!(tenant["limits"]["requests_per_second"], 200);
    assert_eq!(tenant["budgets"][0]["cost"], 25.5);

    let created = store.run(&[
        "keys", "create", "--tenant", "acme", "--models", "chat", "--name", "bot",
    ]);
    assert!(created.status.success());
    assert!(String::from_utf8_lossy(&created.stderr).contains("cannot be shown again"));
    let created: Value = serde_json::from_slice(&created.stdout).unwrap();
    let secret = created["secret"].as_str().unwrap();
    let id = created["id"].as_str().unwrap();
    assert!(secret.starts_with("lf-"));
    assert_eq!(created["scopes"]["models"][0], "chat");

    let shown = store.json(&["keys", "get", id]);
    assert!(shown.get("secret").is_none());
    assert!(
        shown["redacted_secret"]
            .as_str()
            .unwrap()
            .ends_with(&secret[secret.len() - 4..])
    );
    let listed = store.json(&["keys", "list", "--tenant", "acme"]);
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);

    let updated = store.json(&[
        "tenants",
        "update",
        "acme",
        "--json",
        r#"{"metadata": {"team": "support"}}"#,
    ]);
    assert_eq!(updated["metadata"]["team"], "support");
    assert_eq!(updated["limits"]["requests_per_second"], 200);
    let revoked = store.json(&["keys", "revoke", id]);
    assert!(revoked["revoked_at"].is_i64());
    let tenants = store.json(&["tenants", "list"]);
    assert_eq!(tenants["data"][0]["id"], "acme");
}

#[test]
fn cli_mistakes_get_plain_messages_and_exit_1() {
    let store = Store::new();
    for (args, expected) in [
        (
            vec!["tenants", "get", "nobody"],
            "tenant `nobody` does not exist",
        ),
        (
            vec!["tenants", "create", "--id", "Not Valid"],
            "id: must be",
        ),
        (
            vec!["tenants", "create", "--json", "{\"limits\": {\"rps\": 1}}"],
            "limits.rps",
        ),
        (
            vec!["tenants", "create", "--json", "[1]"],
            "--json must be a JSON object",
        ),
        (
            vec!["keys", "create", "--tenant", "nobody"],
            "tenant `nobody` does not exist",
        ),
    ] {
        let output = store.run(&args);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    store.json(&["tenants", "create", "--id", "acme"]);
    let output = store.run(&["keys", "create", "--tenant", "acme", "--models", "gpt-9"]);
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("scopes.models[0]: no model named `gpt-9`")
    );
}

#[test]
fn an_unreachable_postgres_at_start_is_a_clear_error() {
    let directory = tempfile::tempdir().unwrap();
    let config = directory.path().join("landfall.toml");
    std::fs::write(
        &config,
        "[storage.metadata]\ntype = \"postgres\"\nurl = \"postgres://landfall:secret-password@127.0.0.1:1/landfall\"\n",
    )
    .unwrap();
    let started = std::time::Instant::now();
    let output = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .env("LANDFALL__KNOWLEDGE__ENABLED", "false")
        .output()
        .unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot open the metadata store"),
        "{stderr}"
    );
    assert!(stderr.contains("127.0.0.1:1"), "{stderr}");
    assert!(
        !stderr.contains("secret-password"),
        "the password leaked: {stderr}"
    );
}

#[test]
fn an_unreachable_redis_at_start_is_a_clear_error() {
    let directory = tempfile::tempdir().unwrap();
    let config = directory.path().join("landfall.toml");
    std::fs::write(
        &config,
        format!(
            "[storage.metadata]\ntype = \"sqlite\"\npath = {:?}\n[storage.kv]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:1\"\n",
            directory.path().join("landfall.db")
        ),
    )
    .unwrap();
    let output = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .env("LANDFALL__KNOWLEDGE__ENABLED", "false")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot connect to the counter and cache backend"),
        "{stderr}"
    );
}
