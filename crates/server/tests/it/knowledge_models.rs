//! Knowledge bases with their models elsewhere: embeddings from a model alias through the
//! gateway, and reranking by a cross-encoder.

use serde_json::{Value, json};

use crate::harness::{provider, start};
use crate::knowledge::MANUAL_MD;

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
