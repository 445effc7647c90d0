//! Local GGUF models (SmolLM2-135M-Instruct) served through the gateway: completions, stream
//! and not; fallback to a local target; the admin API; hot swap under load.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use landfall_config::{Environment, from_toml};
use serde_json::{Value, json};

use crate::harness::{FAST_ROUTING, Landfall, header, sse_data, start};

const ADMIN_KEY: &str = "admin-key-for-local-model-tests";

/// The test model's path, or `None` (the test returns early) when it is absent.
fn smollm2() -> Option<String> {
    let path = landfall_models::test_support::smollm2_file().unwrap()?;
    Some(path.display().to_string())
}

fn local_provider(name: &str, path: &str, extra: &str) -> String {
    format!("[providers.{name}]\ntype = \"local\"\npath = {path:?}\n{extra}\n")
}

/// The admin key, and no response cache: every request here must reach the model.
fn auth() -> String {
    format!(
        "[auth]\nadmin_key = \"{ADMIN_KEY}\"\nallow_anonymous = true\n[cache]\nenabled = false\n"
    )
}

fn greedy(model: &str, question: &str, max_tokens: u32) -> Value {
    json!({
        "model": model,
        "messages": [{"role": "user", "content": question}],
        "temperature": 0,
        "max_tokens": max_tokens,
    })
}

impl Landfall {
    async fn local_admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.call(method, path, ADMIN_KEY, body).await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_local_model_answers_chat_completions_stream_and_not() {
    let Some(path) = smollm2() else { return };
    let config = format!(
        "{}{}[models.chat]\ntargets = [{{ provider = \"local\", model = \"smollm2\" }}]\n",
        auth(),
        local_provider("local", &path, "")
    );
    let landfall = start(&config).await;
    let response = landfall
        .chat(greedy("chat", "List three primary colors.", 16))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-landfall-target"), "local/smollm2");
    let body: Value = response.json().await.unwrap();
    let content = body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(content.starts_with("The primary colors are:"), "{content}");
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(body["usage"]["prompt_tokens"], 35);
    assert_eq!(body["usage"]["completion_tokens"], 16);

    let mut request = greedy("chat", "List three primary colors.", 16);
    request["stream"] = json!(true);
    request["stream_options"] = json!({"include_usage": true});
    let response = landfall.chat(request).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let events = sse_data(&text);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|event| serde_json::from_str(event).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let streamed: String = chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        streamed, content,
        "a stream says what the whole response says"
    );
    assert!(chunks.len() > 10, "token by token: {}", chunks.len());
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["completion_tokens"], 16);
    assert_eq!(usage["total_tokens"], 51);

    // A request the model cannot take is the client's error, said plainly.
    let mut bad = greedy("chat", "hi", 4);
    bad["temperature"] = json!(3);
    let response = landfall.chat(bad).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("temperature"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_remote_target_falls_back_to_the_local_model() {
    let Some(path) = smollm2() else { return };
    let config = format!(
        "{}{FAST_ROUTING}[providers.cloud]\ntype = \"openai\"\nbase_url = \"http://127.0.0.1:1/v1\"\n\
         connect_timeout_ms = 500\n{}\
         [models.chat]\ntargets = [{{ provider = \"cloud\", model = \"gpt-4o\" }}, \
         {{ provider = \"local\", model = \"smollm2\", priority = 9 }}]\n",
        auth(),
        local_provider("local", &path, "")
    );
    let landfall = start(&config).await;
    for stream in [false, true] {
        let mut request = greedy("chat", "List three primary colors.", 8);
        request["stream"] = json!(stream);
        let response = landfall.chat(request).await;
        assert_eq!(response.status(), 200, "stream: {stream}");
        assert_eq!(header(&response, "x-landfall-target"), "local/smollm2");
        let attempts: u32 = header(&response, "x-landfall-attempts").parse().unwrap();
        assert!(attempts >= 2, "the cloud target was tried first");
        let text = response.text().await.unwrap();
        assert!(text.contains("primary"), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_list_load_unload_and_switch_local_models() {
    let Some(path) = smollm2() else { return };
    let config = format!(
        "{}{}[models.chat]\ntargets = [{{ provider = \"local\" }}]\n",
        auth(),
        local_provider("local", &path, "context_length = 2048")
    );
    let landfall = start(&config).await;
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;
    let (status, list) = landfall
        .local_admin(get.clone(), "/admin/v1/models", None)
        .await;
    assert_eq!(status, 200);
    let entry = &list["data"][0];
    assert_eq!(entry["id"], "local");
    assert_eq!(entry["status"], "ready", "preloaded at start: {entry}");
    assert_eq!(entry["architecture"], "llama");
    assert_eq!(entry["context_length"], 2048);
    assert_eq!(entry["aliases"], json!(["chat"]));

    // Unloaded: requests are refused (503, saying how to load it) until it is loaded again.
    let (status, entry) = landfall
        .local_admin(post.clone(), "/admin/v1/models/local/unload", None)
        .await;
    assert_eq!((status, entry["status"].as_str()), (200, Some("unloaded")));
    let response = landfall.chat(greedy("chat", "hi", 2)).await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/admin/v1/models/local/load"),
        "{body}"
    );
    let (status, entry) = landfall
        .local_admin(post.clone(), "/admin/v1/models/local/load", None)
        .await;
    assert_eq!((status, entry["status"].as_str()), (200, Some("ready")));
    assert_eq!(landfall.chat(greedy("chat", "hi", 2)).await.status(), 200);

    // A new model at run time: loaded before it is routed to, with an alias of its name.
    let (status, entry) = landfall
        .local_admin(
            reqwest::Method::PUT,
            "/admin/v1/models/tiny",
            Some(json!({"path": path, "context_length": 512})),
        )
        .await;
    assert_eq!(status, 201, "{entry}");
    assert_eq!(
        (entry["status"].as_str(), entry["context_length"].as_u64()),
        (Some("ready"), Some(512))
    );
    let models: Value = landfall
        .client
        .get(landfall.url("/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|model| model["id"].as_str())
        .collect();
    assert_eq!(ids, ["chat", "tiny"]);
    let response = landfall.chat(greedy("tiny", "hi", 2)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-landfall-target"), "tiny/tiny");

    // Switching a model's file or settings replaces it; bad settings change nothing.
    let (status, entry) = landfall
        .local_admin(
            reqwest::Method::PUT,
            "/admin/v1/models/tiny",
            Some(json!({"path": path, "context_length": 256})),
        )
        .await;
    assert_eq!((status, entry["context_length"].as_u64()), (200, Some(256)));
    let (status, error) = landfall
        .local_admin(
            reqwest::Method::PUT,
            "/admin/v1/models/tiny",
            Some(json!({"path": "/no/such.gguf"})),
        )
        .await;
    assert_eq!(status, 400, "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/no/such.gguf"),
        "{error}"
    );
    let (status, error) = landfall
        .local_admin(
            reqwest::Method::PUT,
            "/admin/v1/models/tiny",
            Some(json!({"path": path, "colour": 1})),
        )
        .await;
    assert_eq!(status, 400, "{error}");
    let (_, entry) = landfall
        .local_admin(get.clone(), "/admin/v1/models/tiny", None)
        .await;
    assert_eq!(entry["context_length"], 256);

    // Removing it; a model other aliases route to cannot be removed.
    let (status, _) = landfall
        .local_admin(reqwest::Method::DELETE, "/admin/v1/models/tiny", None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = landfall
        .local_admin(get.clone(), "/admin/v1/models/tiny", None)
        .await;
    assert_eq!(status, 404);
    assert_eq!(landfall.chat(greedy("tiny", "hi", 2)).await.status(), 404);
    let (status, error) = landfall
        .local_admin(reqwest::Method::DELETE, "/admin/v1/models/local", None)
        .await;
    assert_eq!(status, 409, "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`chat`"),
        "{error}"
    );

    // Not started from a file: nothing to reload.
    let (status, _) = landfall.local_admin(post, "/admin/v1/reload", None).await;
    assert_eq!(status, 409);
}

/// Clients keep sending while `/admin/v1/reload` swaps the alias from one local model to
/// another and back: every request succeeds, and new requests go to the new model.
#[tokio::test(flavor = "multi_thread")]
async fn hot_swap_under_load_fails_no_request() {
    let Some(path) = smollm2() else { return };
    let config_for = |provider: &str| {
        format!(
            "{}{}[models.chat]\ntargets = [{{ provider = \"{provider}\" }}]\n",
            auth(),
            local_provider(provider, &path, "queue_size = 64")
        )
    };
    let landfall = Arc::new(start(&config_for("blue")).await);
    let reloads = Arc::new(AtomicUsize::new(0));
    let counter = reloads.clone();
    let (blue, green) = (config_for("blue"), config_for("green"));
    landfall.state.reload_from(Arc::new(move || {
        let next = if counter.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) {
            &green
        } else {
            &blue
        };
        from_toml(next, &Environment::default())
    }));

    // Each request records the reload generation it started in. The driver reloads only once
    // a request of the current generation has finished, so the test follows the machine's
    // speed instead of a clock: on a loaded CI runner one generation can take seconds.
    let generation = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(std::sync::Mutex::new(Vec::<usize>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for client in 0..4 {
        let (landfall, stop) = (landfall.clone(), stop.clone());
        let (generation, finished) = (generation.clone(), finished.clone());
        clients.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            let mut turn = 0;
            while !stop.load(Ordering::SeqCst) {
                let mut request = greedy("chat", "Say hello.", 6);
                request["stream"] = json!((client + turn) % 2 == 0);
                turn += 1;
                let started_in = generation.load(Ordering::SeqCst);
                let response = landfall.chat(request).await;
                let status = response.status().as_u16();
                let target = header(&response, "x-landfall-target").to_owned();
                let body = response.text().await.unwrap_or_default();
                let complete = body.contains("\"finish_reason\":\"length\"")
                    || body.contains("\"finish_reason\":\"stop\"");
                finished.lock().unwrap().push(started_in);
                outcomes.push((started_in, status, target, complete, body));
            }
            outcomes
        }));
    }
    let one_finished_in = |wanted: usize| {
        let finished = finished.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            while !finished.lock().unwrap().contains(&wanted) {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no request of generation {wanted} finished"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let post = reqwest::Method::POST;
    for next in 1..=3 {
        one_finished_in(next - 1).await;
        let (status, body) = landfall
            .local_admin(post.clone(), "/admin/v1/reload", None)
            .await;
        assert_eq!(status, 200, "{body}");
        generation.store(next, Ordering::SeqCst);
    }
    one_finished_in(3).await;
    stop.store(true, Ordering::SeqCst);
    let mut targets = std::collections::BTreeSet::new();
    let mut total = 0;
    for client in clients {
        for (started_in, status, target, complete, body) in client.await.unwrap() {
            assert_eq!(status, 200, "{body}");
            assert!(complete, "a request broke off: {body}");
            if started_in == 3 {
                assert_eq!(target, "green/chat", "started after the last swap");
            }
            targets.insert(target);
            total += 1;
        }
    }
    assert!(total >= 4, "{total} requests");
    assert_eq!(
        targets.into_iter().collect::<Vec<_>>(),
        ["blue/chat", "green/chat"],
        "both models served"
    );
    // Three swaps: blue → green → blue → green; new requests go to green.
    let response = landfall.chat(greedy("chat", "hi", 2)).await;
    assert_eq!(header(&response, "x-landfall-target"), "green/chat");
    let (_, list) = landfall
        .local_admin(reqwest::Method::GET, "/admin/v1/models", None)
        .await;
    assert_eq!(
        list["data"].as_array().map(Vec::len),
        Some(1),
        "blue was dropped: {list}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_the_hub_cannot_give_says_how_to_point_at_a_file() {
    let cache = tempfile::tempdir().unwrap();
    let config = format!(
        "{}[providers.local]\ntype = \"local\"\nhub_repo = \"org/missing-GGUF\"\n\
         file = \"model.gguf\"\nhub_endpoint = \"http://127.0.0.1:1\"\ncache_dir = {:?}\npreload = false\n\
         [models.local]\ntargets = [{{ provider = \"local\" }}]\n",
        auth(),
        cache.path()
    );
    let landfall = start(&config).await;
    let (_, list) = landfall
        .local_admin(reqwest::Method::GET, "/admin/v1/models", None)
        .await;
    assert_eq!(
        list["data"][0]["status"], "idle",
        "loads on first use: {list}"
    );
    let response = landfall.chat(greedy("local", "hi", 2)).await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("org/missing-GGUF"), "{message}");
    assert!(message.contains("landfall serve --model"), "{message}");
    let (_, list) = landfall
        .local_admin(reqwest::Method::GET, "/admin/v1/models", None)
        .await;
    assert_eq!(list["data"][0]["status"], "failed", "{list}");
}
