//! Knowledge bases with their models elsewhere: embeddings from a model alias through the
//! gateway, and reranking by a cross-encoder.

use serde_json::{Value, json};

use crate::harness::{Landfall, provider, start};
use crate::knowledge::{ADMIN_KEY, MANUAL_MD};

fn tiny_cross_encoder() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/tests/fixtures/tiny-cross-encoder")
}

/// `[knowledge.embedder] type = "gateway"`: chunks and queries are embedded by an alias's
/// upstream, and vectors of the wrong length fail the file with a clear error.
#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_embedder_embeds_through_the_models_upstream() {
    let upstream = landfall_testkit::MockUpstream::start(landfall_testkit::Script::new()).await;
    let config = |dir: &std::path::Path, dimensions: usize| {
        format!(
            "[knowledge]\nindex_dir = {:?}\n\
             [knowledge.embedder]\ntype = \"gateway\"\nmodel = \"emb\"\ndimensions = {dimensions}\n\
             {}[models.emb]\ntargets = [{{ provider = \"mock\", model = \"mock-embed\" }}]\n",
            dir.join("index"),
            provider("mock", &upstream.base_url(), "")
        )
    };
    let dir = tempfile::tempdir().unwrap();
    // The mock's vectors have 8 dimensions unless asked otherwise.
    let landfall = start(&config(dir.path(), 8)).await;
    let (file, store_id) = landfall.store_of("", "pump.md", MANUAL_MD.as_bytes()).await;
    let store_id = store_id.as_str();
    let store = landfall.settled("", store_id).await;
    assert_eq!(store["file_counts"]["completed"], 1, "{store}");
    assert_eq!(store["landfall"]["embedding_model"], "emb", "{store}");
    let calls = upstream.requests();
    assert!(
        calls.iter().any(|call| call.path == "/v1/embeddings"),
        "chunks went to the upstream"
    );
    let (_, chunks) = landfall
        .get(
            &format!("/v1/vector_stores/{store_id}/files/{file}/chunks"),
            "",
        )
        .await;
    let first = chunks["data"][0]["text"].as_str().unwrap().to_owned();
    // The mock's vector is a function of the text: a chunk's own text finds it first.
    let hits = landfall
        .search(
            "",
            store_id,
            json!({"query": first, "ranking_options": {"mode": "vector"}}),
        )
        .await;
    assert_eq!(hits[0]["content"][0]["text"], first, "{hits:?}");
    assert!(hits[0]["landfall"]["vector"]["score"].as_f64().unwrap() > 0.999);

    let dir = tempfile::tempdir().unwrap();
    let wrong = start(&config(dir.path(), 16)).await;
    let (file, store_id) = wrong.store_of("", "pump.md", MANUAL_MD.as_bytes()).await;
    let (_, attached) = wrong
        .get(&format!("/v1/vector_stores/{store_id}/files/{file}"), "")
        .await;
    assert_eq!(attached["status"], "failed", "{attached}");
    let message = attached["last_error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("dimensions"), "{attached}");
}

/// A tenant with `tenant` (limits, budgets) and a key of it: (key secret, key id).
async fn tenant_with_key(landfall: &Landfall, tenant: Value) -> (String, String) {
    let id = tenant["id"].as_str().unwrap().to_owned();
    let (status, body) = landfall.post("/admin/v1/tenants", ADMIN_KEY, tenant).await;
    assert_eq!(status, 201, "{body}");
    let (status, key) = landfall
        .post(
            "/admin/v1/keys",
            ADMIN_KEY,
            json!({"tenant_id": id, "name": "k"}),
        )
        .await;
    assert_eq!(status, 201, "{key}");
    (
        key["secret"].as_str().unwrap().to_owned(),
        key["id"].as_str().unwrap().to_owned(),
    )
}

/// The audit records of the knowledge service's model calls on `route` for `tenant`, once
/// there are `count` of them.
pub(crate) async fn knowledge_calls(
    landfall: &Landfall,
    tenant: &str,
    route: &str,
    count: usize,
) -> Vec<Value> {
    let path = format!("/admin/v1/audit?kind=request&order=asc&tenant_id={tenant}&limit=100");
    for _ in 0..200 {
        let (status, body) = landfall.get(&path, ADMIN_KEY).await;
        assert_eq!(status, 200, "{body}");
        let records: Vec<Value> = body["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|record| record["route"] == route)
            .cloned()
            .collect();
        if records.len() >= count {
            return records;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the audit log never held {count} calls on {route} of `{tenant}`");
}

/// A gateway embedder's calls are the caller's: ingestion is charged to the file's tenant
/// (waiting out a rate limit, failing the file on an exhausted budget), a search's query
/// embedding to the searching key, refused with the same 429 as a direct call, and every
/// call is in the audit log under its tenant.
#[tokio::test(flavor = "multi_thread")]
async fn gateway_embeddings_are_charged_to_the_caller() {
    let upstream = landfall_testkit::MockUpstream::start(landfall_testkit::Script::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[auth]\nadmin_key = \"{ADMIN_KEY}\"\n\
         [knowledge]\nindex_dir = {:?}\n\
         [knowledge.embedder]\ntype = \"gateway\"\nmodel = \"emb\"\ndimensions = 8\n\
         {}[models.emb]\ntargets = [{{ provider = \"mock\", model = \"mock-embed\" }}]\n",
        dir.path().join("index"),
        provider("mock", &upstream.base_url(), "")
    );
    let landfall = start(&config).await;

    // Two requests a minute: the ingestion takes one, the first search the other.
    let (key, key_id) = tenant_with_key(
        &landfall,
        json!({"id": "acme", "limits": {"requests_per_minute": 2}}),
    )
    .await;
    let (_, store_id) = landfall
        .store_of(&key, "pump.md", MANUAL_MD.as_bytes())
        .await;
    let store = landfall.settled(&key, &store_id).await;
    assert_eq!(store["file_counts"]["completed"], 1, "{store}");
    let search = json!({"query": "winter housing", "ranking_options": {"mode": "vector"}});
    assert!(
        !landfall
            .search(&key, &store_id, search.clone())
            .await
            .is_empty()
    );
    let refused = landfall
        .client
        .post(landfall.url(&format!("/v1/vector_stores/{store_id}/search")))
        .bearer_auth(&key)
        .header("x-request-id", "search-over-limit")
        .json(&search)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("acme"),
        "{body}"
    );

    let records = knowledge_calls(&landfall, "acme", "knowledge:embeddings", 3).await;
    let statuses: Vec<u64> = records
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [200, 200, 429], "{records:?}");
    // Ingestion runs for the tenant; the searches for the key, under their request's id.
    assert_eq!(records[0]["key_id"], "anonymous", "{records:?}");
    assert_eq!(records[1]["key_id"], key_id.as_str(), "{records:?}");
    assert_eq!(records[2]["request_id"], "search-over-limit", "{records:?}");
    assert!(
        records[0]["record"]["usage"]["input_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(records[0]["model"], "emb");

    // One request a second: the second file's embeddings wait their turn instead of failing.
    let (key, _) = tenant_with_key(
        &landfall,
        json!({"id": "steady", "limits": {"requests_per_second": 1}}),
    )
    .await;
    let first = landfall
        .upload_ok(&key, "a.md", MANUAL_MD.as_bytes().to_vec())
        .await;
    let second = landfall
        .upload_ok(
            &key,
            "b.md",
            MANUAL_MD.replace("pump", "valve").into_bytes(),
        )
        .await;
    let (status, store) = landfall
        .post(
            "/v1/vector_stores",
            &key,
            json!({"name": "steady", "file_ids": [first, second]}),
        )
        .await;
    assert_eq!(status, 200, "{store}");
    let store = landfall.settled(&key, store["id"].as_str().unwrap()).await;
    assert_eq!(store["file_counts"]["completed"], 2, "{store}");

    // A spent budget fails the file with OpenAI's `rate_limit_exceeded`, saying why.
    let (key, _) = tenant_with_key(
        &landfall,
        json!({"id": "broke", "budgets": [{"period": "day", "tokens": 5}]}),
    )
    .await;
    let file = landfall
        .upload_ok(&key, "pump.md", MANUAL_MD.as_bytes().to_vec())
        .await;
    let (status, store) = landfall
        .post(
            "/v1/vector_stores",
            &key,
            json!({"name": "broke", "file_ids": [file]}),
        )
        .await;
    assert_eq!(status, 200, "{store}");
    let store_id = store["id"].as_str().unwrap().to_owned();
    landfall.settled(&key, &store_id).await;
    let (_, attached) = landfall
        .get(&format!("/v1/vector_stores/{store_id}/files/{file}"), &key)
        .await;
    assert_eq!(attached["status"], "failed", "{attached}");
    assert_eq!(
        attached["last_error"]["code"], "rate_limit_exceeded",
        "{attached}"
    );
    let message = attached["last_error"]["message"].as_str().unwrap();
    assert!(message.contains("budget"), "{attached}");
}

/// With `[knowledge.reranker]`, the fused candidates come back in the cross-encoder's order
/// with its logit; `ranker: "none"` turns it off per request.
#[tokio::test(flavor = "multi_thread")]
async fn a_cross_encoder_reranks_search_hits() {
    let model = tiny_cross_encoder();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[knowledge]\nindex_dir = {:?}\n\
         [knowledge.reranker]\ntype = \"local\"\nmodel = {:?}\ncandidates = 20\n",
        dir.path().join("index"),
        model
    );
    let landfall = start(&config).await;
    let text = "# Help\n\n## Password\n\nOpen the account page and reset the password.\n\n\
        ## Printer\n\nClear the paper jam in the tray and close the door.\n\n\
        ## Lights\n\nThe red light blinks when the tray is open.\n";
    let (_, store_id) = landfall.store_of("", "help.md", text.as_bytes()).await;
    let store_id = store_id.as_str();

    let query = "the tray";
    let hits = landfall
        .search("", store_id, json!({"query": query, "max_num_results": 5}))
        .await;
    assert!(hits.len() >= 2, "{hits:?}");
    let reranker = landfall_models::CrossEncoder::load(&model, None, 8).unwrap();
    let texts: Vec<&str> = hits
        .iter()
        .map(|hit| hit["content"][0]["text"].as_str().unwrap())
        .collect();
    let expected = reranker.score(query, &texts).unwrap();
    let logits: Vec<f64> = hits
        .iter()
        .map(|hit| hit["landfall"]["rerank_score"].as_f64().unwrap())
        .collect();
    for (logit, expected) in logits.iter().zip(&expected) {
        assert!(
            (logit - f64::from(*expected)).abs() < 1e-4,
            "{logits:?} vs {expected:?}"
        );
    }
    assert!(
        logits.windows(2).all(|pair| pair[0] >= pair[1]),
        "{logits:?}"
    );
    let sigmoid = 1.0 / (1.0 + (-logits[0]).exp());
    assert!((hits[0]["score"].as_f64().unwrap() - sigmoid).abs() < 1e-5);

    let plain = landfall
        .search(
            "",
            store_id,
            json!({"query": query, "ranking_options": {"ranker": "none"}}),
        )
        .await;
    assert!(
        plain
            .iter()
            .all(|hit| hit["landfall"]["rerank_score"] == Value::Null)
    );
    let (status, error) = landfall
        .post(
            &format!("/v1/vector_stores/{store_id}/search"),
            "",
            json!({"query": query, "ranking_options": {"ranker": "fancy"}}),
        )
        .await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["error"]["param"], "ranking_options.ranker");
}
