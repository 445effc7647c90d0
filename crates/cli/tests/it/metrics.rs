//! `/metrics` on its own listener (`metrics.listen`): served there, open, and not on the main
//! listener.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{BIN, free_port};

#[tokio::test(flavor = "multi_thread")]
async fn metrics_can_have_their_own_listener() {
    let directory = tempfile::tempdir().unwrap();
    let config = directory.path().join("landfall.toml");
    let (port, metrics_port) = (free_port(), free_port());
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\
             [storage.metadata]\ntype = \"sqlite\"\npath = {:?}\n",
            directory.path().join("landfall.db")
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .env("LANDFALL__KNOWLEDGE__ENABLED", "false")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = crate::http_client().build().unwrap();
    let mut scraped = None;
    for _ in 0..200 {
        if let Ok(response) = client
            .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
            .send()
            .await
        {
            scraped = Some((response.status(), response.text().await.unwrap()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let main = client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .map(|response| response.status().as_u16());
    let _ = child.kill();
    let _ = child.wait();
    let (status, text) = scraped.expect("the metrics listener answered");
    assert_eq!(status, 200);
    assert!(
        text.contains("# TYPE landfall_audit_queue_depth gauge"),
        "{text}"
    );
    assert_eq!(main.unwrap(), 404, "/metrics is not on the main listener");
}
