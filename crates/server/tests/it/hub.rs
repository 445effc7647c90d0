//! Models named by a Hub repository id: fetched from a stand-in for the Hugging Face Hub on
//! 127.0.0.1 that answers as the Hub does (`resolve` URLs, `X-Repo-Commit`, ETags, a redirect
//! of large files to a CDN that honours `Range`), into the Hub's cache layout, then loaded
//! from that cache with no Hub at all.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::harness::start;
use crate::knowledge::MANUAL_MD;

const REPO: &str = "sentence-transformers/all-MiniLM-L6-v2";
const COMMIT: &str = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf";

#[derive(Default)]
struct Hub {
    files: HashMap<String, Vec<u8>>,
    /// `Range` headers the CDN was sent.
    ranges: Mutex<Vec<String>>,
    /// Bytes the CDN sent.
    sent: Mutex<u64>,
}

fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

async fn resolve(
    State(hub): State<Arc<Hub>>,
    UrlPath((org, name, revision, file)): UrlPath<(String, String, String, String)>,
) -> Response {
    if format!("{org}/{name}") != REPO {
        return (StatusCode::UNAUTHORIZED, [("x-error-code", "RepoNotFound")]).into_response();
    }
    if revision != "main" && revision != COMMIT {
        return (
            StatusCode::NOT_FOUND,
            [("x-error-code", "RevisionNotFound")],
        )
            .into_response();
    }
    let Some(bytes) = hub.files.get(&file) else {
        return (StatusCode::NOT_FOUND, [("x-error-code", "EntryNotFound")]).into_response();
    };
    let digest = sha256(bytes);
    if file.ends_with(".safetensors") {
        // Large files live in LFS: the Hub redirects to the CDN and names the blob.
        return (
            StatusCode::FOUND,
            [
                ("x-repo-commit", COMMIT.to_owned()),
                ("x-linked-etag", format!("\"{digest}\"")),
                ("x-linked-size", bytes.len().to_string()),
                ("location", format!("/cdn/{digest}")),
            ],
        )
            .into_response();
    }
    (
        [
            ("x-repo-commit", COMMIT.to_owned()),
            ("etag", format!("\"{}\"", &digest[..40])),
        ],
        bytes.clone(),
    )
        .into_response()
}

async fn cdn(
    State(hub): State<Arc<Hub>>,
    UrlPath(digest): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let Some(bytes) = hub.files.values().find(|bytes| sha256(bytes) == digest) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let start = headers
        .get("range")
        .and_then(|value| value.to_str().ok())
        .inspect(|range| hub.ranges.lock().unwrap().push((*range).to_owned()))
        .and_then(|range| {
            range
                .strip_prefix("bytes=")?
                .strip_suffix('-')?
                .parse()
                .ok()
        });
    let body = bytes[start.unwrap_or(0)..].to_vec();
    *hub.sent.lock().unwrap() += body.len() as u64;
    let status = if start.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    (status, body).into_response()
}

/// Serves the model folder `dir` as the Hub would serve `REPO`; returns its base URL.
async fn stand_in_hub(dir: &Path) -> (String, Arc<Hub>, tokio::task::JoinHandle<()>) {
    let mut hub = Hub::default();
    for file in landfall_models::MODEL_FILES {
        if let Ok(bytes) = std::fs::read(dir.join(file)) {
            hub.files.insert((*file).to_owned(), bytes);
        }
    }
    let hub = Arc::new(hub);
    let router = axum::Router::new()
        .route(
            "/{org}/{name}/resolve/{revision}/{*file}",
            axum::routing::get(resolve),
        )
        .route("/cdn/{digest}", axum::routing::get(cdn))
        .with_state(hub.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    (url, hub, task)
}

fn config(index: &Path, cache: &Path, endpoint: &str, model: &str) -> String {
    format!(
        "[knowledge]\nindex_dir = {index:?}\nhub_endpoint = {endpoint:?}\n\
         [knowledge.embedder]\ntype = \"local\"\nmodel = {model:?}\ncache_dir = {cache:?}\n"
    )
}

/// A repository id is fetched into the Hub's cache layout, an interrupted download of its
/// weights resumes where it stopped, and the cached model then starts without any Hub.
#[tokio::test(flavor = "multi_thread")]
async fn models_are_fetched_from_the_hub_resumed_and_reused_from_its_cache() {
    let Some(model) =
        landfall_models::test_support::minilm_dir().unwrap_or_else(|missing| panic!("{missing}"))
    else {
        return;
    };
    let (endpoint, hub, task) = stand_in_hub(&model).await;
    let cache = tempfile::tempdir().unwrap();
    // A download interrupted after 1 MiB.
    let weights = &hub.files["model.safetensors"];
    let blobs = cache
        .path()
        .join("models--sentence-transformers--all-MiniLM-L6-v2/blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    let partial = blobs.join(format!("{}.incomplete", sha256(weights)));
    std::fs::write(&partial, &weights[..1 << 20]).unwrap();

    let index = tempfile::tempdir().unwrap();
    let landfall = start(&config(index.path(), cache.path(), &endpoint, REPO)).await;
    assert_eq!(*hub.ranges.lock().unwrap(), [format!("bytes={}-", 1 << 20)]);
    assert_eq!(
        *hub.sent.lock().unwrap(),
        (weights.len() - (1 << 20)) as u64
    );
    let snapshot = cache
        .path()
        .join("models--sentence-transformers--all-MiniLM-L6-v2/snapshots")
        .join(COMMIT);
    assert!(snapshot.join("model.safetensors").is_symlink());
    assert_eq!(
        std::fs::read(snapshot.join("model.safetensors")).unwrap(),
        *weights
    );
    assert_eq!(
        std::fs::read(snapshot.join("1_Pooling/config.json")).unwrap(),
        hub.files["1_Pooling/config.json"]
    );
    let reference = cache
        .path()
        .join("models--sentence-transformers--all-MiniLM-L6-v2/refs/main");
    assert_eq!(std::fs::read_to_string(reference).unwrap(), COMMIT);
    let (_, store) = landfall.store_of("", "pump.md", MANUAL_MD.as_bytes()).await;
    let hits = landfall
        .search(
            "",
            &store,
            json!({"query": "winter storage", "ranking_options": {"mode": "vector"}}),
        )
        .await;
    assert!(!hits.is_empty());
    drop(landfall);

    // No Hub any more: the cached snapshot is used as it is.
    task.abort();
    let index = tempfile::tempdir().unwrap();
    let offline = start(&config(
        index.path(),
        cache.path(),
        "http://127.0.0.1:9",
        REPO,
    ))
    .await;
    let (_, store) = offline.store_of("", "pump.md", MANUAL_MD.as_bytes()).await;
    let settled = offline.settled("", &store).await;
    assert_eq!(settled["file_counts"]["completed"], 1, "{settled}");
}

/// A repository the Hub does not have, or a Hub that cannot be reached, stops the start with
/// a message that names the repository and says what to do instead.
#[tokio::test(flavor = "multi_thread")]
async fn unknown_repositories_and_unreachable_hubs_fail_clearly() {
    let Some(model) =
        landfall_models::test_support::minilm_dir().unwrap_or_else(|missing| panic!("{missing}"))
    else {
        return;
    };
    let (endpoint, _hub, _task) = stand_in_hub(&model).await;
    for (endpoint, model, expected) in [
        (endpoint.as_str(), "someone/no-such-model", "RepoNotFound"),
        (
            endpoint.as_str(),
            "sentence-transformers/all-MiniLM-L6-v2@v9",
            "RevisionNotFound",
        ),
        ("http://127.0.0.1:9", REPO, "cannot reach the Hub"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let text = config(dir.path(), dir.path(), endpoint, model);
        let config =
            landfall_config::from_toml(&text, &landfall_config::Environment::default()).unwrap();
        let error = landfall_server::AppState::start(&config)
            .await
            .err()
            .expect("the start fails")
            .to_string();
        assert!(
            error.contains(model.split('@').next().unwrap())
                && error.contains(expected)
                && error.contains("local model folder"),
            "{error}"
        );
    }
}
