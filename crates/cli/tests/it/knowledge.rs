//! Knowledge bases through the binary: `landfall ingest` and `landfall search` on a folder
//! (per-file errors, unchanged files skipped, changed files replaced), and a `kill -9` in the
//! middle of an ingestion that loses nothing reported completed and resumes the rest.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::BIN;

fn write_config(directory: &Path, port: u16) -> PathBuf {
    let config = directory.join("landfall.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[auth]\nallow_anonymous = true\n\
             [storage.metadata]\ntype = \"sqlite\"\npath = {:?}\n[knowledge]\nindex_dir = {:?}\n",
            directory.join("landfall.db"),
            directory.join("index"),
        ),
    )
    .unwrap();
    config
}

fn landfall(args: &[&str], config: &Path) -> (i32, String, String) {
    let output = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .env("LANDFALL_LOG", "warn")
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn search(config: &Path, query: &str) -> Vec<Value> {
    let (code, stdout, stderr) = landfall(&["search", "--kb", "docs", "--json", query], config);
    assert_eq!(code, 0, "{stderr}");
    serde_json::from_str::<Vec<Value>>(&stdout).unwrap()
}

#[test]
fn ingest_and_search_from_the_command_line() {
    let directory = tempfile::tempdir().unwrap();
    let config = write_config(directory.path(), crate::free_port());
    let docs = directory.path().join("docs");
    std::fs::create_dir_all(docs.join("nested")).unwrap();
    std::fs::write(
        docs.join("pump.md"),
        "# Pump\n\n## Care\n\nReplace the impeller seal yearly.",
    )
    .unwrap();
    std::fs::write(
        docs.join("nested/policy.txt"),
        "员工出差的住宿费用每晚不超过五百元。",
    )
    .unwrap();
    std::fs::write(
        docs.join("nested/firmware.bin"),
        [0x7f, b'E', b'L', b'F', 0, 0xff, 0xfe, 1],
    )
    .unwrap();
    std::fs::write(docs.join(".hidden.md"), "skipped").unwrap();

    let (code, stdout, _) = landfall(&["ingest", docs.to_str().unwrap(), "--kb", "docs"], &config);
    assert_eq!(code, 1, "one file failed: {stdout}");
    assert!(
        stdout.contains("2 ingested") && stdout.contains("1 failed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("firmware.bin"),
        "the summary names the failed file: {stdout}"
    );

    let hits = search(&config, "impeller seal");
    assert!(
        hits[0]["filename"].as_str().unwrap().ends_with("pump.md"),
        "{hits:?}"
    );
    assert_eq!(hits[0]["heading_path"], json!(["Pump", "Care"]));
    let hits = search(&config, "住宿费用");
    assert!(
        hits[0]["filename"]
            .as_str()
            .unwrap()
            .ends_with("policy.txt"),
        "{hits:?}"
    );

    // Unchanged files are skipped; a changed one replaces its old chunks.
    std::fs::remove_file(docs.join("nested/firmware.bin")).unwrap();
    let (code, stdout, stderr) =
        landfall(&["ingest", docs.to_str().unwrap(), "--kb", "docs"], &config);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("0 ingested") && stdout.contains("2 unchanged"),
        "{stdout}"
    );
    std::fs::write(
        docs.join("pump.md"),
        "# Pump\n\n## Care\n\nOil the bearings monthly.",
    )
    .unwrap();
    let (code, stdout, _) = landfall(&["ingest", docs.to_str().unwrap(), "--kb", "docs"], &config);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("1 ingested") && stdout.contains("1 unchanged"),
        "{stdout}"
    );
    assert!(
        search(&config, "impeller").is_empty(),
        "the old version's chunks are gone"
    );
    assert_eq!(search(&config, "bearings").len(), 1);

    let (code, _, stderr) = landfall(&["search", "--kb", "missing", "x"], &config);
    assert_eq!(code, 1);
    assert!(stderr.contains("no knowledge base `missing`"), "{stderr}");
}

struct Serve {
    child: Child,
    url: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn serve(config: &Path, port: u16) -> Serve {
    let child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(config)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Serve {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let client = crate::http_client().build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while client
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "landfall did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server
}

async fn upload(client: &reqwest::Client, url: &str, name: &str, bytes: Vec<u8>) -> String {
    let form = reqwest::multipart::Form::new()
        .text("purpose", "assistants")
        .part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned()),
        );
    let response = client
        .post(format!("{url}/v1/files"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn get(client: &reqwest::Client, url: &str) -> Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

/// A text of about `bytes` bytes whose paragraphs each carry a numbered marker word.
fn big_text(marker: &str, bytes: usize) -> Vec<u8> {
    let mut text = String::with_capacity(bytes + 200);
    let mut n = 0;
    while text.len() < bytes {
        text.push_str(&format!(
            "Paragraph {n} about {marker}{n}: pressure valves, flow rates and maintenance intervals.\n\n"
        ));
        n += 1;
    }
    text.into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_mid_ingest_keeps_completed_files_and_resumes_the_rest() {
    let directory = tempfile::tempdir().unwrap();
    let port = crate::free_port();
    let config = write_config(directory.path(), port);
    let client = crate::http_client().build().unwrap();
    let server = serve(&config, port).await;
    let url = server.url.clone();

    let first = upload(
        &client,
        &url,
        "first.md",
        b"# First\n\nThe quartzite marker.".to_vec(),
    )
    .await;
    let big = upload(&client, &url, "big.txt", big_text("zebra", 24 << 20)).await;
    let last = upload(
        &client,
        &url,
        "last.md",
        b"# Last\n\nThe obsidian marker.".to_vec(),
    )
    .await;
    let store: Value = client
        .post(format!("{url}/v1/vector_stores"))
        .json(&json!({"name": "docs"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let store_id = store["id"].as_str().unwrap().to_owned();
    let batch: Value = client
        .post(format!("{url}/v1/vector_stores/{store_id}/file_batches"))
        .json(&json!({"file_ids": [first, big, last]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(batch["file_counts"]["total"], 3, "{batch}");

    // Kill as soon as the first file is reported completed, while the big one is in progress.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = get(
            &client,
            &format!("{url}/v1/vector_stores/{store_id}/files/{first}"),
        )
        .await;
        if status["status"] == "completed" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the first file never completed: {status}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let big_status = get(
        &client,
        &format!("{url}/v1/vector_stores/{store_id}/files/{big}"),
    )
    .await;
    drop(server); // SIGKILL
    assert_eq!(
        big_status["status"], "in_progress",
        "the kill must land mid-ingest"
    );

    let server = serve(&config, port).await;
    let url = server.url.clone();
    let deadline = Instant::now() + Duration::from_secs(300);
    let store = loop {
        let store = get(&client, &format!("{url}/v1/vector_stores/{store_id}")).await;
        if store["file_counts"]["in_progress"] == 0 {
            break store;
        }
        assert!(
            Instant::now() < deadline,
            "ingestion did not resume: {store}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(store["file_counts"]["completed"], 3, "{store}");

    // Every file is searchable exactly once, and the big file's chunks are whole and in order.
    for (marker, file) in [
        ("quartzite", &first),
        ("obsidian", &last),
        ("zebra12345", &big),
    ] {
        let page: Value = client
            .post(format!("{url}/v1/vector_stores/{store_id}/search"))
            .json(&json!({"query": marker, "max_num_results": 5}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let hits = page["data"].as_array().unwrap();
        assert_eq!(hits[0]["file_id"], file.as_str(), "{marker}: {page}");
        let ids: Vec<&Value> = hits
            .iter()
            .map(|hit| &hit["landfall"]["chunk_id"])
            .collect();
        let mut unique = ids.clone();
        unique.dedup();
        assert_eq!(ids.len(), unique.len(), "no chunk twice: {page}");
    }
    let chunks = get(
        &client,
        &format!("{url}/v1/vector_stores/{store_id}/files/{big}/chunks"),
    )
    .await;
    let positions: Vec<u64> = chunks["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|chunk| chunk["position"].as_u64().unwrap())
        .collect();
    assert!(positions.len() > 1000);
    assert!(
        positions
            .iter()
            .enumerate()
            .all(|(index, position)| index as u64 == *position)
    );
}
