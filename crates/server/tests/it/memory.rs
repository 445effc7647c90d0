//! Memory: conversations (`/v1/conversations`, `conversation` in `/v1/responses`), the
//! short-term window and summaries, and long-term memories per end user.

use landfall_testkit::{MockUpstream, Script};
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Landfall, provider, start};

async fn server(upstream: &MockUpstream, extra: &str) -> Landfall {
    let config = format!(
        "[auth]\nallow_anonymous = true\n{}\
         [models.m]\ntargets = [{{ provider = \"mock\", model = \"mock-model\" }}]\n{extra}",
        provider("mock", &upstream.base_url(), ""),
    );
    start(&config).await
}

/// The texts of the messages the upstream's last chat request carried, as `role: text`.
fn last_sent(upstream: &MockUpstream) -> Vec<String> {
    let request = upstream
        .requests()
        .into_iter()
        .rfind(|request| request.path == "/v1/chat/completions")
        .unwrap();
    request.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|message| {
            let content = match &message["content"] {
                Value::String(text) => text.clone(),
                Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect(),
                _ => String::new(),
            };
            format!("{}: {content}", message["role"].as_str().unwrap())
        })
        .collect()
}

async fn respond(landfall: &Landfall, body: Value) -> Value {
    let (status, response) = landfall.post("/v1/responses", "", body).await;
    assert_eq!(status, 200, "{response}");
    response
}

#[tokio::test(flavor = "multi_thread")]
async fn responses_continue_and_extend_a_conversation() {
    let upstream = MockUpstream::start(Script::new()).await;
    let landfall = server(&upstream, "").await;
    let (status, conversation) = landfall
        .post(
            "/v1/conversations",
            "",
            json!({"metadata": {"topic": "returns"},
                   "items": [{"type": "message", "role": "user", "content": "I bought an X200"}]}),
        )
        .await;
    assert_eq!(status, 200, "{conversation}");
    assert_eq!(conversation["object"], "conversation");
    assert_eq!(conversation["metadata"]["topic"], "returns");
    let id = conversation["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("conv_"), "{id}");

    let first = respond(&landfall, json!({"model": "m", "conversation": id, "input": "can I return it?", "instructions": "be brief"})).await;
    assert_eq!(first["conversation"]["id"], id.as_str());
    assert_eq!(
        last_sent(&upstream),
        [
            "system: be brief",
            "user: I bought an X200",
            "user: can I return it?"
        ]
    );
    respond(
        &landfall,
        json!({"model": "m", "conversation": {"id": id}, "input": "how long?"}),
    )
    .await;
    assert_eq!(
        last_sent(&upstream),
        [
            "user: I bought an X200",
            "user: can I return it?",
            "assistant: echo: can I return it?",
            "user: how long?"
        ]
    );

    let (status, items) = landfall
        .get(&format!("/v1/conversations/{id}/items?order=asc"), "")
        .await;
    assert_eq!(status, 200, "{items}");
    let kinds: Vec<String> = items["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            format!(
                "{}:{}",
                item["type"].as_str().unwrap(),
                item["role"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "message:user",
            "message:user",
            "message:assistant",
            "message:user",
            "message:assistant"
        ]
    );
    let (_, newest) = landfall
        .get(&format!("/v1/conversations/{id}/items?limit=1"), "")
        .await;
    assert_eq!(newest["has_more"], true);
    assert_eq!(newest["data"][0]["content"][0]["text"], "echo: how long?");

    // Items added by hand, read back, deleted.
    let (status, added) = landfall
        .post(
            &format!("/v1/conversations/{id}/items"),
            "",
            json!({"items": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "order 42"}]}]}),
        )
        .await;
    assert_eq!(status, 200, "{added}");
    let item_id = added["data"][0]["id"].as_str().unwrap().to_owned();
    let (status, item) = landfall
        .get(&format!("/v1/conversations/{id}/items/{item_id}"), "")
        .await;
    assert_eq!(status, 200);
    assert_eq!(item["content"][0]["text"], "order 42");
    let (status, _) = landfall
        .call(
            Method::DELETE,
            &format!("/v1/conversations/{id}/items/{item_id}"),
            "",
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, missing) = landfall
        .get(&format!("/v1/conversations/{id}/items/{item_id}"), "")
        .await;
    assert_eq!(status, 404, "{missing}");
    assert_eq!(missing["error"]["code"], "item_not_found");

    let (status, updated) = landfall
        .post(
            &format!("/v1/conversations/{id}"),
            "",
            json!({"metadata": {"topic": "refund"}}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(updated["metadata"]["topic"], "refund");

    // Clear errors.
    let cases = [
        (
            json!({"model": "m", "conversation": id, "previous_response_id": first["id"], "input": "x"}),
            400,
            "not both",
        ),
        (
            json!({"model": "m", "conversation": "conv_missing", "input": "x"}),
            404,
            "conv_missing",
        ),
        (
            json!({"model": "m", "conversation": 7, "input": "x"}),
            400,
            "conversation",
        ),
    ];
    for (body, expected, needle) in cases {
        let (status, error) = landfall.post("/v1/responses", "", body.clone()).await;
        assert_eq!(status, expected, "{body}: {error}");
        assert!(
            error["error"]["message"].as_str().unwrap().contains(needle),
            "{error}"
        );
    }
    let (status, error) = landfall
        .post(
            "/v1/conversations",
            "",
            json!({"items": [{"type": "telepathy"}]}),
        )
        .await;
    assert_eq!(status, 400, "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("items[0]"),
        "{error}"
    );
    let (status, _) = landfall
        .post("/v1/conversations", "", json!({"metadata": {"k": 5}}))
        .await;
    assert_eq!(status, 400);

    let (status, deleted) = landfall
        .call(Method::DELETE, &format!("/v1/conversations/{id}"), "", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(deleted["deleted"], true);
    let (status, gone) = landfall.get(&format!("/v1/conversations/{id}"), "").await;
    assert_eq!(status, 404);
    assert_eq!(gone["error"]["code"], "conversation_not_found");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_window_keeps_the_last_turns_and_a_summary_replaces_the_rest() {
    let upstream = MockUpstream::start(Script::new()).await;
    let landfall = server(&upstream, "[agents]\nhistory_turns = 2\n").await;
    let (_, conversation) = landfall.post("/v1/conversations", "", json!({})).await;
    let id = conversation["id"].as_str().unwrap().to_owned();
    for text in ["one", "two", "three"] {
        respond(
            &landfall,
            json!({"model": "m", "conversation": id, "input": text}),
        )
        .await;
    }
    respond(
        &landfall,
        json!({"model": "m", "conversation": id, "input": "four"}),
    )
    .await;
    assert_eq!(
        last_sent(&upstream),
        [
            "user: two",
            "assistant: echo: two",
            "user: three",
            "assistant: echo: three",
            "user: four"
        ]
    );

    // previous_response_id chains are windowed the same way.
    let mut previous = Value::Null;
    for text in ["a", "b", "c"] {
        let response = respond(
            &landfall,
            json!({"model": "m", "input": text, "previous_response_id": previous}),
        )
        .await;
        previous = response["id"].clone();
    }
    assert_eq!(
        last_sent(&upstream),
        [
            "user: a",
            "assistant: echo: a",
            "user: b",
            "assistant: echo: b",
            "user: c"
        ]
    );
    respond(
        &landfall,
        json!({"model": "m", "input": "d", "previous_response_id": previous}),
    )
    .await;
    assert_eq!(last_sent(&upstream)[0], "user: b");

    let (status, summarized) = landfall
        .post(
            &format!("/v1/conversations/{id}/summarize"),
            "",
            json!({"model": "m", "keep_turns": 1}),
        )
        .await;
    assert_eq!(status, 200, "{summarized}");
    let summary = summarized["landfall_summary"].as_str().unwrap();
    // The scripted model echoes the transcript it was asked to summarize.
    assert!(
        summary.contains("User: one") && summary.contains("Assistant: echo: three"),
        "{summary}"
    );
    assert!(!summary.contains("four"), "{summary}");
    respond(
        &landfall,
        json!({"model": "m", "conversation": id, "input": "five"}),
    )
    .await;
    let sent = last_sent(&upstream);
    assert!(
        sent[0].starts_with("system: Summary of the earlier conversation:\necho: User: one"),
        "{sent:?}"
    );
    assert_eq!(
        &sent[1..],
        ["user: four", "assistant: echo: four", "user: five"]
    );

    // A long conversation: the window is read from its newest items.
    let (_, long) = landfall.post("/v1/conversations", "", json!({})).await;
    let long_id = long["id"].as_str().unwrap();
    for batch in 0..4 {
        let items: Vec<Value> = (0..20)
            .map(|index| {
                let number = batch * 20 + index;
                let role = if number % 2 == 0 { "user" } else { "assistant" };
                json!({"type": "message", "role": role, "content": format!("m{number}")})
            })
            .collect();
        let (status, added) = landfall
            .post(
                &format!("/v1/conversations/{long_id}/items"),
                "",
                json!({"items": items}),
            )
            .await;
        assert_eq!(status, 200, "{added}");
    }
    respond(
        &landfall,
        json!({"model": "m", "conversation": long_id, "input": "next"}),
    )
    .await;
    assert_eq!(
        last_sent(&upstream),
        [
            "user: m76",
            "assistant: m77",
            "user: m78",
            "assistant: m79",
            "user: next"
        ]
    );

    let (status, error) = landfall
        .post(
            &format!("/v1/conversations/{id}/summarize"),
            "",
            json!({"model": "nope"}),
        )
        .await;
    assert_eq!(status, 404, "{error}");
}

/// A server whose knowledge embedder is the upstream's (deterministic: equal texts get equal
/// vectors, different ones unrelated ones), recalling only near-identical memories.
async fn memory_server(upstream: &MockUpstream, dir: &std::path::Path) -> Landfall {
    let extra = format!(
        "[knowledge]\nindex_dir = {:?}\n\
         [knowledge.embedder]\ntype = \"gateway\"\nmodel = \"emb\"\ndimensions = 8\n\
         [models.emb]\ntargets = [{{ provider = \"mock\", model = \"mock-embed\" }}]\n\
         [agents]\nmemory_min_score = 0.9\n",
        dir.join("index")
    );
    server(upstream, &extra).await
}

#[tokio::test(flavor = "multi_thread")]
async fn memories_are_saved_recalled_for_their_user_and_deleted() {
    let upstream = MockUpstream::start(Script::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let landfall = memory_server(&upstream, dir.path()).await;

    let (status, saved) = landfall
        .post(
            "/v1/memories",
            "",
            json!({"user": "alice", "text": "prefers e-mail"}),
        )
        .await;
    assert_eq!(status, 200, "{saved}");
    assert_eq!(saved["object"], "memory");
    assert_eq!(saved["source"], "api");
    let memory_id = saved["id"].as_str().unwrap().to_owned();
    landfall
        .post(
            "/v1/memories",
            "",
            json!({"user": "bob", "text": "prefers e-mail"}),
        )
        .await;

    let (status, found) = landfall
        .post(
            "/v1/memories/search",
            "",
            json!({"user": "alice", "query": "prefers e-mail"}),
        )
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["data"].as_array().unwrap().len(), 1);
    assert!(
        found["data"][0]["score"].as_f64().unwrap() > 0.99,
        "{found}"
    );

    // A response of alice's whose input is like a memory gets it as context (not stored in
    // the conversation); one without `user` does not.
    let response = respond(
        &landfall,
        json!({"model": "m", "user": "alice", "input": "prefers e-mail"}),
    )
    .await;
    assert_eq!(
        last_sent(&upstream),
        [
            "system: What you know about this user from earlier conversations:\n- prefers e-mail",
            "user: prefers e-mail"
        ]
    );
    respond(
        &landfall,
        json!({"model": "m", "input": "hello", "previous_response_id": response["id"]}),
    )
    .await;
    assert_eq!(last_sent(&upstream)[0], "user: prefers e-mail");
    respond(
        &landfall,
        json!({"model": "m", "user": "carol", "input": "prefers e-mail"}),
    )
    .await;
    assert_eq!(last_sent(&upstream), ["user: prefers e-mail"]);

    // The model saves a fact with the memory tool.
    let upstream_calls =
        MockUpstream::start(Script::new().chat([landfall_testkit::Reply::tool_call(
            "call_1",
            "remember",
            &json!({"fact": "owns an X200"}),
        )]))
        .await;
    let dir_calls = tempfile::tempdir().unwrap();
    let landfall_calls = memory_server(&upstream_calls, dir_calls.path()).await;
    let remembered = respond(
        &landfall_calls,
        json!({"model": "m", "user": "alice", "input": "I have an X200", "tools": [{"type": "memory"}]}),
    )
    .await;
    let call = remembered["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["type"] == "mcp_call")
        .unwrap_or_else(|| panic!("{remembered}"));
    assert_eq!(call["name"], "remember");
    assert_eq!(call["output"], "Saved: owns an X200");
    let (_, listed) = landfall_calls.get("/v1/memories?user=alice", "").await;
    assert_eq!(listed["data"][0]["text"], "owns an X200");
    assert_eq!(listed["data"][0]["source"], "model");

    // Clear errors.
    let (status, error) = landfall
        .post(
            "/v1/responses",
            "",
            json!({"model": "m", "input": "x", "tools": [{"type": "memory"}]}),
        )
        .await;
    assert_eq!(status, 400, "{error}");
    assert!(
        error["error"]["message"].as_str().unwrap().contains("user"),
        "{error}"
    );
    let (status, _) = landfall
        .post("/v1/memories", "", json!({"user": "alice", "text": "  "}))
        .await;
    assert_eq!(status, 400);
    let (status, _) = landfall.get("/v1/memories", "").await;
    assert_eq!(status, 400);

    let (status, _) = landfall
        .call(
            Method::DELETE,
            &format!("/v1/memories/{memory_id}"),
            "",
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, missing) = landfall
        .call(
            Method::DELETE,
            &format!("/v1/memories/{memory_id}"),
            "",
            None,
        )
        .await;
    assert_eq!(status, 404, "{missing}");
    let (_, listed) = landfall.get("/v1/memories?user=alice", "").await;
    assert!(listed["data"].as_array().unwrap().is_empty(), "{listed}");

    // Without an embedder, saving says what to configure.
    let plain = server(&upstream, "").await;
    let (status, error) = plain
        .post("/v1/memories", "", json!({"user": "alice", "text": "x"}))
        .await;
    assert_eq!(status, 400, "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("knowledge.embedder"),
        "{error}"
    );
}
