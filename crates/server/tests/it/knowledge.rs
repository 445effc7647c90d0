//! Files and vector stores through the HTTP API: uploads in every format, background
//! ingestion with per-file errors, hybrid search with citations, filters, deletes, and
//! tenant and key isolation.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Landfall, start};

pub(crate) const ADMIN_KEY: &str = "admin-key-0123456789";

/// A server with knowledge bases in `dir`; `embedder` is a `[knowledge.embedder]` table or "".
async fn knowledge_server(dir: &std::path::Path, embedder: &str) -> Landfall {
    let config = format!(
        "[auth]\nadmin_key = \"{ADMIN_KEY}\"\nallow_anonymous = true\n\
         [knowledge]\nindex_dir = {:?}\n{embedder}\n",
        dir.join("index")
    );
    start(&config).await
}

impl Landfall {
    pub(crate) async fn get(&self, path: &str, key: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, key, None).await
    }

    pub(crate) async fn post(&self, path: &str, key: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, key, Some(body))
            .await
    }

    async fn upload(&self, key: &str, name: &str, bytes: Vec<u8>) -> (u16, Value) {
        let form = reqwest::multipart::Form::new()
            .text("purpose", "assistants")
            .part(
                "file",
                reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned()),
            );
        let mut request = self.client.post(self.url("/v1/files")).multipart(form);
        if !key.is_empty() {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn upload_ok(&self, key: &str, name: &str, bytes: Vec<u8>) -> String {
        let (status, body) = self.upload(key, name, bytes).await;
        assert_eq!(status, 200, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    /// Waits until no file of the store is in progress; returns the store.
    pub(crate) async fn settled(&self, key: &str, store_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, store) = self
                .get(&format!("/v1/vector_stores/{store_id}"), key)
                .await;
            assert_eq!(status, 200, "{store}");
            if store["file_counts"]["in_progress"] == 0 {
                return store;
            }
            assert!(
                Instant::now() < deadline,
                "ingestion did not finish: {store}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Uploads `bytes` as `name` into a new store and waits for its ingestion: (file, store).
    pub(crate) async fn store_of(&self, key: &str, name: &str, bytes: &[u8]) -> (String, String) {
        let file = self.upload_ok(key, name, bytes.to_vec()).await;
        let (status, store) = self
            .post(
                "/v1/vector_stores",
                key,
                json!({"name": name, "file_ids": [file]}),
            )
            .await;
        assert_eq!(status, 200, "{store}");
        let store_id = store["id"].as_str().unwrap().to_owned();
        self.settled(key, &store_id).await;
        (file, store_id)
    }

    pub(crate) async fn search(&self, key: &str, store_id: &str, body: Value) -> Vec<Value> {
        let (status, page) = self
            .post(&format!("/v1/vector_stores/{store_id}/search"), key, body)
            .await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["object"], "vector_store.search_results.page");
        page["data"].as_array().unwrap().clone()
    }

    pub(crate) async fn tenant_key(&self, tenant: &str, scopes: Value) -> String {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                "/admin/v1/tenants",
                ADMIN_KEY,
                Some(json!({"id": tenant, "name": tenant})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let key = json!({"tenant_id": tenant, "name": "k", "scopes": scopes});
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                "/admin/v1/keys",
                ADMIN_KEY,
                Some(key),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["secret"].as_str().unwrap().to_owned()
    }
}

pub(crate) const MANUAL_MD: &str = "# Pump manual\n\n## Installation\n\nMount the pump on a level \
    concrete base and tighten the four anchor bolts to 40 Nm.\n\n## Maintenance\n\nReplace the \
    impeller seal every 2000 operating hours. Drain the housing before winter.\n";

const POLICY_ZH: &str = "报销政策\n\n员工出差的住宿费用每晚不超过五百元。\n\n医疗费用报销需要提供\
    医院开具的发票原件，并在三十天内提交。";

#[tokio::test(flavor = "multi_thread")]
async fn files_ingest_in_every_text_format_and_search_cites_them() {
    let dir = tempfile::tempdir().unwrap();
    let landfall = knowledge_server(dir.path(), "").await;

    let manual = landfall
        .upload_ok("", "pump.md", MANUAL_MD.as_bytes().to_vec())
        .await;
    let (gbk, _, _) = encoding_rs::GBK.encode(POLICY_ZH);
    let policy = landfall
        .upload_ok("", "policy-gbk.txt", gbk.into_owned())
        .await;
    let csv = landfall
        .upload_ok(
            "",
            "parts.csv",
            b"part,price\nimpeller seal,12.50\nanchor bolt,0.80\n".to_vec(),
        )
        .await;
    let html = landfall
        .upload_ok(
            "",
            "faq.html",
            b"<html><head><script>var tracking = 'SECRET';</script></head><body><nav>Home | About</nav>\
              <main><h1>FAQ</h1><p>The warranty covers the motor for five years.</p></main></body></html>"
                .to_vec(),
        )
        .await;
    let junk = landfall
        .upload_ok(
            "",
            "firmware.bin",
            vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0xff, 0xfe],
        )
        .await;

    let (status, store) = landfall
        .post(
            "/v1/vector_stores",
            "",
            json!({"name": "manuals", "metadata": {"team": "support"}}),
        )
        .await;
    assert_eq!(status, 200, "{store}");
    let store_id = store["id"].as_str().unwrap().to_owned();
    assert!(store_id.starts_with("vs_"));

    let batch = json!({"files": [
        {"file_id": manual, "attributes": {"product": "pump", "year": 2024}},
        {"file_id": policy, "attributes": {"product": "hr"}},
        {"file_id": csv}, {"file_id": html}, {"file_id": junk}
    ]});
    let (status, created) = landfall
        .post(
            &format!("/v1/vector_stores/{store_id}/file_batches"),
            "",
            batch,
        )
        .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["object"], "vector_store.file_batch");
    assert_eq!(created["file_counts"]["total"], 5);

    let store = landfall.settled("", &store_id).await;
    assert_eq!(store["file_counts"]["completed"], 4, "{store}");
    assert_eq!(store["file_counts"]["failed"], 1, "{store}");
    assert!(store["usage_bytes"].as_u64().unwrap() > 0);
    let (_, failed) = landfall
        .get(&format!("/v1/vector_stores/{store_id}/files/{junk}"), "")
        .await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["last_error"]["code"], "unsupported_file", "{failed}");
    let batch_id = created["id"].as_str().unwrap();
    let (_, batch) = landfall
        .get(
            &format!("/v1/vector_stores/{store_id}/file_batches/{batch_id}"),
            "",
        )
        .await;
    assert_eq!(batch["status"], "completed", "{batch}");

    // English, with the heading path and offsets to cite.
    let hits = landfall
        .search(
            "",
            &store_id,
            json!({"query": "how often to replace the impeller seal"}),
        )
        .await;
    assert_eq!(hits[0]["file_id"], manual.as_str(), "{hits:?}");
    assert_eq!(hits[0]["filename"], "pump.md");
    assert!(
        hits[0]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("2000 operating hours")
    );
    let heading_path = hits[0]["landfall"]["heading_path"].to_string();
    assert!(heading_path.contains("Maintenance"), "{heading_path}");
    assert!(hits[0]["landfall"]["keyword"]["rank"] == 1);
    let score = hits[0]["score"].as_f64().unwrap();
    assert!(score > 0.0 && score <= 1.0, "{score}");

    // Chinese from a GBK file: decoded, segmented, found.
    let hits = landfall
        .search("", &store_id, json!({"query": "医疗费用怎么报销"}))
        .await;
    assert_eq!(hits[0]["file_id"], policy.as_str(), "{hits:?}");
    assert!(
        hits[0]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("发票原件")
    );

    // Records and HTML main text; scripts and navigation left out.
    let hits = landfall
        .search("", &store_id, json!({"query": "anchor bolt price"}))
        .await;
    assert_eq!(hits[0]["file_id"], csv.as_str());
    let hits = landfall
        .search(
            "",
            &store_id,
            json!({"query": "tracking SECRET Home About"}),
        )
        .await;
    assert!(
        hits.iter().all(|hit| hit["file_id"] != html.as_str()),
        "{hits:?}"
    );

    // Filters are pushed down; max_num_results is respected.
    let filtered = landfall
        .search(
            "",
            &store_id,
            json!({"query": "pump warranty seal 报销", "max_num_results": 2,
                   "filters": {"type": "eq", "key": "product", "value": "hr"}}),
        )
        .await;
    assert!(!filtered.is_empty() && filtered.len() <= 2);
    assert!(
        filtered.iter().all(|hit| hit["file_id"] == policy.as_str()),
        "{filtered:?}"
    );

    // Attributes can change; the index follows at once.
    let (status, _) = landfall
        .post(
            &format!("/v1/vector_stores/{store_id}/files/{policy}"),
            "",
            json!({"attributes": {"product": "finance"}}),
        )
        .await;
    assert_eq!(status, 200);
    let refiltered = landfall
        .search(
            "",
            &store_id,
            json!({"query": "报销", "filters": {"type": "eq", "key": "product", "value": "hr"}}),
        )
        .await;
    assert!(refiltered.is_empty(), "{refiltered:?}");

    // Chunks of a file, in order, with offsets.
    let (status, chunks) = landfall
        .get(
            &format!("/v1/vector_stores/{store_id}/files/{manual}/chunks"),
            "",
        )
        .await;
    assert_eq!(status, 200);
    assert!(!chunks["data"].as_array().unwrap().is_empty());

    // Deleting a file removes it from search.
    let (status, deleted) = landfall
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/files/{manual}"),
            "",
            None,
        )
        .await;
    assert_eq!((status, &deleted["deleted"]), (200, &json!(true)));
    let hits = landfall
        .search(
            "",
            &store_id,
            json!({"query": "impeller seal operating hours"}),
        )
        .await;
    assert!(
        hits.iter().all(|hit| hit["file_id"] != manual.as_str()),
        "{hits:?}"
    );
    let (status, _) = landfall.get(&format!("/v1/files/{manual}"), "").await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let landfall = knowledge_server(dir.path(), "").await;
    let (status, body) = landfall.upload("", "empty.txt", Vec::new()).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("empty"));
    let response = landfall
        .client
        .post(landfall.url("/v1/files"))
        .json(&json!({"file": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 415);

    let (_, store) = landfall
        .post("/v1/vector_stores", "", json!({"name": "s"}))
        .await;
    let store_id = store["id"].as_str().unwrap();
    for (body, param) in [
        (json!({"query": ""}), "query"),
        (
            json!({"query": "x", "max_num_results": 0}),
            "max_num_results",
        ),
        (
            json!({"query": "x", "ranking_options": {"mode": "vector"}}),
            "ranking_options.mode",
        ),
    ] {
        let (status, error) = landfall
            .post(&format!("/v1/vector_stores/{store_id}/search"), "", body)
            .await;
        assert_eq!(status, 400, "{error}");
        assert_eq!(error["error"]["param"], param, "{error}");
    }
    let (status, error) = landfall
        .post(
            &format!("/v1/vector_stores/{store_id}/files"),
            "",
            json!({"file_id": "file-missing"}),
        )
        .await;
    assert_eq!(status, 404, "{error}");
    let (status, error) = landfall
        .post(
            "/v1/vector_stores",
            "",
            json!({"chunking_strategy": {"type": "static", "static": {"max_chunk_size_tokens": 50, "chunk_overlap_tokens": 0}}}),
        )
        .await;
    assert_eq!(status, 400, "{error}");
    let (status, error) = landfall.get("/v1/files?limit=1000", "").await;
    assert_eq!(
        (status, error["error"]["param"].as_str()),
        (400, Some("limit"))
    );
}

/// Files uploaded with `expires_after` report when they expire and are deleted everywhere,
/// chunks included, once they have; stores count their days from their last activity.
#[tokio::test(flavor = "multi_thread")]
async fn expired_files_are_deleted_and_stores_report_their_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let landfall = knowledge_server(dir.path(), "").await;
    let upload = |fields: Vec<(&'static str, &'static str)>| {
        let mut form = reqwest::multipart::Form::new()
            .text("purpose", "assistants")
            .part(
                "file",
                reqwest::multipart::Part::bytes(MANUAL_MD.as_bytes().to_vec()).file_name("pump.md"),
            );
        for (name, value) in fields {
            form = form.text(name, value);
        }
        let request = landfall
            .client
            .post(landfall.url("/v1/files"))
            .multipart(form);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let (status, file) = upload(vec![
        ("expires_after[anchor]", "created_at"),
        ("expires_after[seconds]", "3600"),
    ])
    .await;
    assert_eq!(status, 200, "{file}");
    assert_eq!(
        file["expires_at"].as_i64().unwrap(),
        file["created_at"].as_i64().unwrap() + 3600
    );
    for (fields, param) in [
        (
            vec![("expires_after[seconds]", "60")],
            "expires_after[seconds]",
        ),
        (
            vec![("expires_after[seconds]", "soon")],
            "expires_after[seconds]",
        ),
        (
            vec![
                ("expires_after[anchor]", "last_active_at"),
                ("expires_after[seconds]", "3600"),
            ],
            "expires_after[anchor]",
        ),
    ] {
        let (status, error) = upload(fields).await;
        assert_eq!(
            (status, error["error"]["param"].as_str()),
            (400, Some(param)),
            "{error}"
        );
    }

    let file_id = file["id"].as_str().unwrap();
    let (status, store) = landfall
        .post(
            "/v1/vector_stores",
            "",
            json!({"name": "s", "file_ids": [file_id],
                   "expires_after": {"anchor": "last_active_at", "days": 2}}),
        )
        .await;
    assert_eq!(status, 200, "{store}");
    assert_eq!(
        store["expires_at"].as_i64().unwrap(),
        store["last_active_at"].as_i64().unwrap() + 2 * 86_400
    );
    let store_id = store["id"].as_str().unwrap();
    let store = landfall.settled("", store_id).await;
    assert_eq!(store["status"], "completed", "{store}");
    assert!(
        !landfall
            .search("", store_id, json!({"query": "impeller"}))
            .await
            .is_empty()
    );
    let (status, error) = landfall
        .post(
            "/v1/vector_stores",
            "",
            json!({"expires_after": {"anchor": "created_at", "days": 2}}),
        )
        .await;
    assert_eq!(
        (status, error["error"]["param"].as_str()),
        (400, Some("expires_after"))
    );

    // An hour later the sweeper deletes the file, its attachment and its chunks.
    let knowledge = landfall.state.knowledge().unwrap();
    let created_ms = file["created_at"].as_i64().unwrap() * 1000; // rounded down to seconds
    let sweep = |seconds: i64| knowledge.sweep_expired(created_ms + seconds * 1000);
    assert_eq!(sweep(3599).await.unwrap(), 0);
    assert_eq!(sweep(3601).await.unwrap(), 1);
    let (status, _) = landfall.get(&format!("/v1/files/{file_id}"), "").await;
    assert_eq!(status, 404);
    assert!(
        landfall
            .search("", store_id, json!({"query": "impeller"}))
            .await
            .is_empty()
    );
    let (_, store) = landfall
        .get(&format!("/v1/vector_stores/{store_id}"), "")
        .await;
    assert_eq!(store["file_counts"]["total"], 0, "{store}");
}

/// Lists page forward with `after` and backward with `before`, in either order, and say
/// whether more items lie past the page.
#[tokio::test(flavor = "multi_thread")]
async fn lists_page_forward_and_backward() {
    let dir = tempfile::tempdir().unwrap();
    let landfall = knowledge_server(dir.path(), "").await;
    for index in 0..5 {
        let (status, _) = landfall
            .post(
                "/v1/vector_stores",
                "",
                json!({"name": format!("s{index}")}),
            )
            .await;
        assert_eq!(status, 200);
        landfall
            .upload_ok("", &format!("f{index}.txt"), b"some text".to_vec())
            .await;
    }
    let ids = |page: &Value| -> Vec<String> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["id"].as_str().unwrap().to_owned())
            .collect()
    };
    for list in ["/v1/vector_stores", "/v1/files"] {
        for order in ["desc", "asc"] {
            let (_, all) = landfall
                .get(&format!("{list}?order={order}&limit=100"), "")
                .await;
            let all = ids(&all);
            assert_eq!(all.len(), 5, "{list}");
            let page = |query: String| {
                let landfall = &landfall;
                async move {
                    let (status, page) = landfall
                        .get(&format!("{list}?order={order}&limit=2&{query}"), "")
                        .await;
                    assert_eq!(status, 200, "{page}");
                    (ids(&page), page["has_more"].as_bool().unwrap())
                }
            };
            assert_eq!(
                page(format!("after={}", all[1])).await,
                (all[2..4].to_vec(), true)
            );
            assert_eq!(
                page(format!("after={}", all[3])).await,
                (all[4..].to_vec(), false)
            );
            assert_eq!(
                page(format!("before={}", all[4])).await,
                (all[2..4].to_vec(), true)
            );
            assert_eq!(
                page(format!("before={}", all[2])).await,
                (all[..2].to_vec(), false)
            );
        }
    }
    let (status, error) = landfall
        .get("/v1/files?after=file-a&before=file-b", "")
        .await;
    assert_eq!(
        (status, error["error"]["param"].as_str()),
        (400, Some("before"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_see_only_their_tenants_files_and_the_stores_their_scope_allows() {
    let dir = tempfile::tempdir().unwrap();
    let landfall = knowledge_server(dir.path(), "").await;
    let alice = landfall.tenant_key("alice", json!({})).await;
    let bob = landfall.tenant_key("bob", json!({})).await;
    let (status, body) = landfall
        .call(
            reqwest::Method::POST,
            "/admin/v1/keys",
            ADMIN_KEY,
            Some(json!({"tenant_id": "alice", "name": "narrow", "scopes": {"knowledge_bases": ["public"]}})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let narrow = body["secret"].as_str().unwrap().to_owned();

    let file = landfall
        .upload_ok(
            &alice,
            "secret.md",
            b"# Plans\n\nThe launch date is May 5.".to_vec(),
        )
        .await;
    let (_, private) = landfall
        .post(
            "/v1/vector_stores",
            &alice,
            json!({"name": "private", "file_ids": [file]}),
        )
        .await;
    let (_, public) = landfall
        .post(
            "/v1/vector_stores",
            &alice,
            json!({"name": "public", "file_ids": [file]}),
        )
        .await;
    let private_id = private["id"].as_str().unwrap();
    let public_id = public["id"].as_str().unwrap();
    landfall.settled(&alice, private_id).await;
    landfall.settled(&alice, public_id).await;

    // Another tenant: nothing exists.
    assert_eq!(
        landfall.get(&format!("/v1/files/{file}"), &bob).await.0,
        404
    );
    assert_eq!(
        landfall
            .get(&format!("/v1/files/{file}/content"), &bob)
            .await
            .0,
        404
    );
    assert_eq!(
        landfall
            .get(&format!("/v1/vector_stores/{private_id}"), &bob)
            .await
            .0,
        404
    );
    let (status, _) = landfall
        .post(
            &format!("/v1/vector_stores/{private_id}/search"),
            &bob,
            json!({"query": "launch"}),
        )
        .await;
    assert_eq!(status, 404);
    let (_, listed) = landfall.get("/v1/files", &bob).await;
    assert_eq!(listed["data"], json!([]));
    let (_, listed) = landfall.get("/v1/vector_stores", &bob).await;
    assert_eq!(listed["data"], json!([]));
    let (status, _) = landfall
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/files/{file}"),
            &bob,
            None,
        )
        .await;
    assert_eq!(status, 404);

    // A key scoped to `public`: only that store.
    let hits = landfall
        .search(&narrow, public_id, json!({"query": "launch date"}))
        .await;
    assert_eq!(hits.len(), 1);
    let (status, error) = landfall
        .post(
            &format!("/v1/vector_stores/{private_id}/search"),
            &narrow,
            json!({"query": "launch"}),
        )
        .await;
    assert_eq!(status, 403, "{error}");
    let (_, listed) = landfall.get("/v1/vector_stores", &narrow).await;
    let names: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["public"]);

    // The owner sees both.
    let (_, listed) = landfall.get("/v1/vector_stores?order=asc", &alice).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);
    let (status, content) = landfall
        .client
        .get(landfall.url(&format!("/v1/files/{file}/content")))
        .bearer_auth(&alice)
        .send()
        .await
        .map(|r| (r.status().as_u16(), r))
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        content.text().await.unwrap(),
        "# Plans\n\nThe launch date is May 5."
    );
}

/// With the real MiniLM model: vector and hybrid search find a paraphrase BM25 cannot.
#[tokio::test(flavor = "multi_thread")]
async fn hybrid_search_with_a_local_embedder_finds_paraphrases() {
    let Some(model) =
        landfall_models::test_support::minilm_dir().unwrap_or_else(|missing| panic!("{missing}"))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let embedder = format!(
        "[knowledge.embedder]\ntype = \"local\"\nmodel = {:?}\n",
        model
    );
    let landfall = knowledge_server(dir.path(), &embedder).await;
    let file = landfall
        .upload_ok("", "pump.md", MANUAL_MD.as_bytes().to_vec())
        .await;
    let (_, store) = landfall
        .post(
            "/v1/vector_stores",
            "",
            json!({"name": "m", "file_ids": [file]}),
        )
        .await;
    let store_id = store["id"].as_str().unwrap();
    let store = landfall.settled("", store_id).await;
    assert_eq!(store["file_counts"]["completed"], 1, "{store}");
    assert!(store["landfall"]["embedding_model"].is_string());

    // No shared keyword with the manual's installation section.
    let query = json!({"query": "fastening the machine to the floor", "ranking_options": {"mode": "vector"}});
    let hits = landfall.search("", store_id, query).await;
    assert!(
        hits[0]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("anchor bolts"),
        "{hits:?}"
    );
    assert!(hits[0]["landfall"]["vector"]["score"].as_f64().unwrap() > 0.2);
    let hybrid = landfall
        .search("", store_id, json!({"query": "winter housing", "ranking_options": {"fusion": "weighted", "vector_weight": 0.3}}))
        .await;
    assert!(
        hybrid[0]["landfall"]["keyword"].is_object() && hybrid[0]["landfall"]["vector"].is_object(),
        "{hybrid:?}"
    );
}

/// `rewrite_query`, HyDE and RAG-Fusion call `knowledge.search.rewrite_model` through the
/// gateway; without one configured they are refused clearly.
#[tokio::test(flavor = "multi_thread")]
async fn query_rewriting_goes_through_the_gateway() {
    let upstream = landfall_testkit::MockUpstream::start(landfall_testkit::Script::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[auth]\nadmin_key = \"{ADMIN_KEY}\"\nallow_anonymous = true\n\
         [knowledge]\nindex_dir = {:?}\n[knowledge.search]\nrewrite_model = \"chat\"\n{}\
         [models.chat]\ntargets = [{{ provider = \"mock\" }}]\n",
        dir.path().join("index"),
        crate::harness::provider("mock", &upstream.base_url(), "")
    );
    let landfall = start(&config).await;
    let file = landfall
        .upload_ok("", "pump.md", MANUAL_MD.as_bytes().to_vec())
        .await;
    let (_, store) = landfall
        .post(
            "/v1/vector_stores",
            "",
            json!({"name": "m", "file_ids": [file]}),
        )
        .await;
    let store_id = store["id"].as_str().unwrap();
    landfall.settled("", store_id).await;
    let (status, page) = landfall
        .post(
            &format!("/v1/vector_stores/{store_id}/search"),
            "",
            json!({"query": "impeller seal", "rewrite_query": true, "fusion_queries": 2}),
        )
        .await;
    assert_eq!(status, 200, "{page}");
    // The mock answers `echo: <input>`: the rewrite and one fusion query come from it.
    let queries = page["search_query"].as_array().unwrap();
    assert!(queries[0].as_str().unwrap().starts_with("echo:"), "{page}");
    assert_eq!(queries.len(), 3, "the rewrite and two fusion lines: {page}");
    assert!(!page["data"].as_array().unwrap().is_empty(), "{page}");
    assert_eq!(upstream.requests().len(), 2);
    // Both calls are governed and recorded for the searching tenant, with their usage.
    let calls = crate::knowledge_models::knowledge_calls(
        &landfall,
        "anonymous",
        "knowledge:chat/completions",
        2,
    )
    .await;
    for call in &calls {
        assert_eq!(call["status"], 200, "{call}");
        assert_eq!(call["model"], "chat", "{call}");
        assert!(
            call["record"]["usage"]["output_tokens"].as_u64().unwrap() > 0,
            "{call}"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let plain = knowledge_server(dir.path(), "").await;
    let (_, store) = plain
        .post("/v1/vector_stores", "", json!({"name": "m"}))
        .await;
    let (status, error) = plain
        .post(
            &format!("/v1/vector_stores/{}/search", store["id"].as_str().unwrap()),
            "",
            json!({"query": "x", "hyde": true}),
        )
        .await;
    assert_eq!(status, 400, "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("rewrite_model")
    );
}

/// A chat completion with the `knowledge` extension answers from the store's chunks and
/// cites them: the sources reach the model in a system message, `[n]` markers in the answer
/// become `file_citation` annotations, streaming included.
#[tokio::test(flavor = "multi_thread")]
async fn grounded_chat_answers_cite_their_sources() {
    use landfall_testkit::{MockUpstream, Reply, Script};
    let answer = "Replace the impeller seal every 2000 hours [1].";
    let upstream = MockUpstream::start(Script::new().chat([
        Reply::Text(answer.to_owned()),
        Reply::Text(answer.to_owned()),
    ]))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[knowledge]\nindex_dir = {:?}\n{}[models.chat]\ntargets = [{{ provider = \"mock\" }}]\n\
         [models.support]\ntargets = [{{ provider = \"mock\" }}]\n\
         knowledge = {{ vector_store_ids = [\"manuals\"] }}\n",
        dir.path().join("index"),
        crate::harness::provider("mock", &upstream.base_url(), "")
    );
    let landfall = start(&config).await;
    let file = landfall
        .upload_ok("", "pump.md", MANUAL_MD.as_bytes().to_vec())
        .await;
    let (_, store) = landfall
        .post(
            "/v1/vector_stores",
            "",
            json!({"name": "manuals", "file_ids": [file]}),
        )
        .await;
    let store_id = store["id"].as_str().unwrap().to_owned();
    landfall.settled("", &store_id).await;

    let body = json!({
        "model": "chat",
        "messages": [{"role": "user", "content": "How often is the impeller seal replaced?"}],
        "knowledge": {"vector_store_ids": [store_id], "max_num_results": 2}
    });
    let response = landfall.chat(body.clone()).await;
    assert_eq!(response.status(), 200);
    let completion: Value = response.json().await.unwrap();
    let annotation = &completion["choices"][0]["message"]["annotations"][0];
    assert_eq!(annotation["type"], "file_citation", "{completion}");
    assert_eq!(annotation["file_citation"]["file_id"], file.as_str());
    assert_eq!(annotation["file_citation"]["start_index"], 43);
    assert_eq!(completion["landfall"]["sources"][0]["filename"], "pump.md");
    // The model saw the numbered sources in a system message, and not the extension.
    let sent = &upstream.requests()[0].body;
    let system = sent["messages"][0]["content"].as_str().unwrap();
    assert!(
        system.starts_with("You answer questions using only the numbered sources"),
        "{system}"
    );
    assert!(
        system.contains("[1] pump.md") && system.contains("2000 operating hours"),
        "{system}"
    );
    assert!(sent.get("knowledge").is_none());

    let mut streamed = body;
    streamed["stream"] = json!(true);
    let text = landfall.chat(streamed).await.text().await.unwrap();
    let events = crate::harness::sse_data(&text);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let last: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(
        last["choices"][0]["delta"]["annotations"][0]["file_citation"]["file_id"],
        file.as_str(),
        "{text}"
    );

    // An alias bound to the store by name in the configuration grounds without the extension.
    let response = landfall
        .chat(json!({"model": "support", "messages": [{"role": "user", "content": "impeller seal?"}]}))
        .await;
    let completion: Value = response.json().await.unwrap();
    assert_eq!(
        completion["landfall"]["sources"][0]["file_id"],
        file.as_str(),
        "{completion}"
    );

    let (status, error) = landfall
        .post("/v1/chat/completions", "", json!({"model": "chat", "messages": [{"role": "user", "content": "x"}], "knowledge": {"vector_store_ids": ["vs_missing"]}}))
        .await;
    assert_eq!(status, 404, "{error}");
}
