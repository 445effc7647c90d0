//! `/v1/responses` over the agent loop, driven by a scripted upstream that emits tool calls:
//! client function tools and `previous_response_id`, `file_search` with citations, the ReAct
//! protocol, streaming events, guardrails on tool results, stored responses, bad requests.

use landfall_testkit::{MockUpstream, Reply, Script};
use serde_json::{Value, json};

use crate::harness::{Landfall, provider, start};
use crate::knowledge::{ADMIN_KEY, MANUAL_MD};

/// A server with alias `m` (native tool calls) and `r` (ReAct) on `upstream`, and knowledge
/// bases embedded by the upstream; `extra` is added to the configuration.
async fn server(upstream: &MockUpstream, dir: &std::path::Path, extra: &str) -> Landfall {
    let config = format!(
        "[auth]\nadmin_key = \"{ADMIN_KEY}\"\nallow_anonymous = true\n\
         [knowledge]\nindex_dir = {:?}\n\
         [knowledge.embedder]\ntype = \"gateway\"\nmodel = \"emb\"\ndimensions = 8\n\
         {}\
         [models.m]\ntargets = [{{ provider = \"mock\", model = \"mock-model\" }}]\n\
         [models.r]\ntool_protocol = \"react\"\ntargets = [{{ provider = \"mock\", model = \"mock-model\" }}]\n\
         [models.emb]\ntargets = [{{ provider = \"mock\", model = \"mock-embed\" }}]\n{extra}",
        dir.join("index"),
        provider("mock", &upstream.base_url(), ""),
    );
    start(&config).await
}

fn lookup_tool() -> Value {
    json!({
        "type": "function",
        "name": "lookup_order",
        "description": "Finds an order",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
    })
}

/// The chat requests the upstream received.
fn chats(upstream: &MockUpstream) -> Vec<Value> {
    upstream
        .requests()
        .into_iter()
        .filter(|request| request.path == "/v1/chat/completions")
        .map(|request| request.body)
        .collect()
}

fn output_text(response: &Value) -> String {
    response["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|item| item["type"] == "message")
        .flat_map(|item| item["content"].as_array().unwrap().iter())
        .filter_map(|part| part["text"].as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn function_calls_return_to_the_client_and_the_conversation_continues() {
    let upstream = MockUpstream::start(Script::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let landfall = server(&upstream, dir.path(), "").await;

    let (status, first) = landfall
        .post(
            "/v1/responses",
            "",
            json!({"model": "m", "input": "where is order 42", "instructions": "be brief",
                   "tools": [lookup_tool()], "metadata": {"case": "7"}}),
        )
        .await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["object"], "response");
    assert_eq!(first["status"], "completed");
    assert_eq!(first["metadata"]["case"], "7");
    let call = &first["output"][0];
    assert_eq!(call["type"], "function_call", "{first}");
    assert_eq!(call["name"], "lookup_order");
    assert_eq!(call["call_id"], "call_mock_1");
    let arguments: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments["query"], "where is order 42");
    assert!(
        first["usage"]["input_tokens"].as_u64().unwrap() > 0,
        "{first}"
    );
    let id = first["id"].as_str().unwrap();
    assert!(id.starts_with("resp_"), "{id}");

    let (status, second) = landfall
        .post(
            "/v1/responses",
            "",
            json!({"model": "m", "previous_response_id": id, "tools": [lookup_tool()],
                   "input": [{"type": "function_call_output", "call_id": "call_mock_1",
                              "output": "shipped on Monday"}]}),
        )
        .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(output_text(&second), "tool said: shipped on Monday");
    assert_eq!(second["previous_response_id"], id);
    let sent = chats(&upstream);
    let messages = sent[1]["messages"].as_array().unwrap();
    let roles: Vec<&str> = messages
        .iter()
        .map(|message| message["role"].as_str().unwrap())
        .collect();
    // The first response's instructions are not carried over; its conversation is.
    assert_eq!(roles, ["user", "assistant", "tool"], "{messages:?}");
    assert_eq!(messages[1]["tool_calls"][0]["id"], "call_mock_1");
    assert_eq!(sent[0]["messages"][0]["content"], "be brief");

    let second_id = second["id"].as_str().unwrap();
    let (status, stored) = landfall
        .get(&format!("/v1/responses/{second_id}"), "")
        .await;
    assert_eq!(status, 200);
    assert_eq!(stored, second);
    let (status, deleted) = landfall
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/responses/{second_id}"),
            "",
            None,
        )
        .await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["deleted"], true);
    let (status, missing) = landfall
        .get(&format!("/v1/responses/{second_id}"), "")
        .await;
    assert_eq!(status, 404, "{missing}");
    assert_eq!(missing["error"]["code"], "response_not_found");

    // `store: false` answers without keeping anything.
    let (_, unstored) = landfall
        .post(
            "/v1/responses",
            "",
            json!({"model": "m", "input": "hello", "store": false}),
        )
        .await;
    assert_eq!(unstored["store"], false);
    assert_eq!(output_text(&unstored), "echo: hello");
    let (status, _) = landfall
        .get(
            &format!("/v1/responses/{}", unstored["id"].as_str().unwrap()),
            "",
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn file_search_runs_in_the_loop_and_the_answer_cites_its_sources() {
    let upstream = MockUpstream::start(Script::new().chat([
        Reply::tool_call("call_s1", "file_search", &json!({"query": "impeller seal"})),
        Reply::Text("Replace the impeller seal every 2000 hours [1].".to_owned()),
    ]))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let landfall = server(&upstream, dir.path(), "").await;
    let (file_id, store_id) = landfall.store_of("", "pump.md", MANUAL_MD.as_bytes()).await;

    let (status, response) = landfall
        .post(
            "/v1/responses",
            "",
            json!({"model": "m", "input": "how often is the seal replaced?",
                   "tools": [{"type": "file_search", "vector_store_ids": [store_id], "max_num_results": 3}],
                   "include": ["file_search_call.results"]}),
        )
        .await;
    assert_eq!(status, 200, "{response}");
    let search = &response["output"][0];
    assert_eq!(search["type"], "file_search_call", "{response}");
    assert_eq!(search["status"], "completed");
    assert_eq!(search["queries"], json!(["impeller seal"]));
    let results = search["results"].as_array().unwrap();
    assert!(!results.is_empty(), "{search}");
    assert_eq!(results[0]["filename"], "pump.md");
    let message = &response["output"][1];
    assert_eq!(message["type"], "message");
    let part = &message["content"][0];
    assert_eq!(part["annotations"][0]["type"], "file_citation", "{part}");
    assert_eq!(part["annotations"][0]["file_id"], file_id.as_str());
    assert_eq!(part["annotations"][0]["filename"], "pump.md");
    // The model read numbered sources as the tool's result.
    let sent = chats(&upstream);
    let tool_message = sent[1]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|message| message["role"] == "tool")
        .unwrap()
        .clone();
    let observation = tool_message["content"].as_str().unwrap();
    assert!(observation.starts_with("[1] pump.md"), "{observation}");
    assert_eq!(sent[0]["tools"][0]["function"]["name"], "file_search");

    // Every step is audited with the request.
    let mut steps = Value::Null;
    let mut audit = Value::Null;
    for _ in 0..200 {
        audit = landfall
            .get("/admin/v1/audit?kind=request&limit=100", ADMIN_KEY)
            .await
            .1;
        if let Some(record) = audit["data"].as_array().unwrap().iter().find(|record| {
            record["route"] == "/v1/responses" && record["record"]["steps"].is_array()
        }) {
            steps = record["record"]["steps"].clone();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(steps.is_array(), "{audit}");
    let kinds: Vec<(&str, &str)> = steps
        .as_array()
        .unwrap()
        .iter()
        .map(|step| {
            (
                step["kind"].as_str().unwrap(),
                step["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("model", "mock/mock-model"),
            ("tool", "file_search"),
            ("model", "mock/mock-model")
        ]
    );
    let text = landfall
        .client
        .get(landfall.url("/metrics"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(
            "landfall_agent_steps_total{kind=\"tool\",name=\"file_search\",outcome=\"ok\"} 1"
        ),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tool_errors_go_back_to_the_model_and_react_targets_get_the_text_protocol() {
    let upstream = MockUpstream::start(Script::new().chat([
        // Native: arguments that break the schema become an observation.
        Reply::tool_call("call_bad", "file_search", &json!({"q": 1})),
        Reply::Text("I could not search.".to_owned()),
        // ReAct: a thought, an action, then the final answer.
        Reply::Text(
            "Thought: look it up\nAction: file_search\nAction Input: {\"query\": \"anchor bolts\"}"
                .to_owned(),
        ),
        Reply::Text("Final Answer: 40 Nm [1]".to_owned()),
    ]))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let landfall = server(&upstream, dir.path(), "").await;
    let (_, store_id) = landfall.store_of("", "pump.md", MANUAL_MD.as_bytes()).await;
    let tools = json!([{"type": "file_search", "vector_store_ids": [store_id]}]);

    let (status, native) = landfall
        .post(
            "/v1/responses",
            "",
            json!({"model": "m", "input": "seal?", "tools": tools}),
        )
        .await;
    assert_eq!(status, 200, "{native}");
    assert_eq!(native["output"][0]["status"], "failed", "{native}");
    assert_eq!(output_text(&native), "I could not search.");
    let sent = chats(&upstream);
    let observation = sent[1]["messages"].as_array().unwrap().last().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        observation.starts_with("error: invalid arguments"),
        "{observation}"
    );

    let (status, react) = landfall
        .post(
            "/v1/responses",
            "",
            json!({"model": "r", "input": "bolt torque?", "tools": tools}),
        )
        .await;
    assert_eq!(status, 200, "{react}");
    let kinds: Vec<&str> = react["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["reasoning", "file_search_call", "message"],
        "{react}"
    );
    assert_eq!(react["output"][0]["summary"][0]["text"], "look it up");
    assert_eq!(output_text(&react), "40 Nm [1]");
    assert_eq!(
        react["output"][2]["content"][0]["annotations"][0]["filename"],
        "pump.md"
    );
    let sent = chats(&upstream);
    let react_turn = &sent[2];
    assert!(react_turn.get("tools").is_none(), "{react_turn}");
    assert!(
        react_turn["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("Action Input"),
        "{react_turn}"
    );
    assert!(
        sent[3]["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|message| message["content"]
                .as_str()
                .is_some_and(|text| text.starts_with("Observation: [1] pump.md"))),
        "{:?}",
        sent[3]
    );
}

/// The SSE events of a body: (event name, data).
fn sse_events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|event| !event.trim().is_empty())
        .map(|event| {
            let mut name = String::new();
            let mut data = Value::Null;
            for line in event.lines() {
                if let Some(value) = line.strip_prefix("event: ") {
                    name = value.to_owned();
                } else if let Some(value) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(value).unwrap();
                }
            }
            (name, data)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_streamed_response_sends_the_documented_events_in_order() {
    let upstream = MockUpstream::start(Script::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let landfall = server(&upstream, dir.path(), "").await;
    let body = landfall
        .client
        .post(landfall.url("/v1/responses"))
        .json(&json!({"model": "m", "input": "stream these four words", "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        body.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let events = sse_events(&body.text().await.unwrap());
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    let mut distinct = names.clone();
    distinct.dedup();
    assert_eq!(
        distinct,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ],
        "{names:?}"
    );
    for (position, (name, data)) in events.iter().enumerate() {
        assert_eq!(data["type"], name.as_str());
        assert_eq!(data["sequence_number"], position);
    }
    let text: String = events
        .iter()
        .filter(|(name, _)| name == "response.output_text.delta")
        .map(|(_, data)| data["delta"].as_str().unwrap())
        .collect();
    assert_eq!(text, "echo: stream these four words");
    let completed = &events.last().unwrap().1["response"];
    assert_eq!(completed["status"], "completed");
    assert_eq!(output_text(completed), text);
    assert!(completed["usage"]["output_tokens"].as_u64().unwrap() > 0);
    // The upstream was asked for a stream.
    assert_eq!(chats(&upstream)[0]["stream"], true);

    // A client function call streams as its own item.
    let body = landfall
        .client
        .post(landfall.url("/v1/responses"))
        .json(&json!({"model": "m", "input": "find 42", "stream": true, "tools": [lookup_tool()]}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = sse_events(&body);
    let done = events
        .iter()
        .find(|(name, _)| name == "response.function_call_arguments.done")
        .unwrap();
    assert_eq!(done.1["name"], "lookup_order");
    assert_eq!(events.last().unwrap().0, "response.completed");
}

#[tokio::test(flavor = "multi_thread")]
async fn guardrails_check_tool_results_and_answers() {
    let upstream = MockUpstream::start(Script::new().chat([
        Reply::tool_call("call_s1", "file_search", &json!({"query": "anchor bolts"})),
        Reply::Text("Sorry, no answer.".to_owned()),
    ]))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let rules = "[[guardrails.rules]]\nid = \"no-torque\"\nstages = [\"tool\"]\naction = \"block\"\n\
                 match = { words = [\"anchor bolts\"] }\n\
                 [[guardrails.rules]]\nid = \"no-echo\"\nstages = [\"output\"]\naction = \"block\"\n\
                 message = \"no echoes\"\nmatch = { words = [\"echo:\"] }\n\
                 [[guardrails.policies]]\nid = \"all\"\nrules = [\"no-torque\", \"no-echo\"]\neveryone = true\n";
    let landfall = server(&upstream, dir.path(), rules).await;
    let (_, store_id) = landfall.store_of("", "pump.md", MANUAL_MD.as_bytes()).await;

    let (status, response) = landfall
        .post(
            "/v1/responses",
            "",
            json!({"model": "m", "input": "bolt torque?",
                   "tools": [{"type": "file_search", "vector_store_ids": [store_id]}]}),
        )
        .await;
    assert_eq!(status, 200, "{response}");
    let sent = chats(&upstream);
    assert_eq!(
        response["output"][0]["status"], "failed",
        "{response} {sent:?}"
    );
    let observation = sent[1]["messages"].as_array().unwrap().last().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        observation.contains("withheld by a guardrail"),
        "{observation}"
    );
    assert!(!observation.contains("40 Nm"), "{observation}");

    // The answer is checked whole: a blocked answer is an error, streamed or not.
    let (status, blocked) = landfall
        .post("/v1/responses", "", json!({"model": "m", "input": "hi"}))
        .await;
    assert_eq!(status, 400, "{blocked}");
    assert_eq!(blocked["error"]["message"], "no echoes");
    let body = landfall
        .client
        .post(landfall.url("/v1/responses"))
        .json(&json!({"model": "m", "input": "hi", "stream": true}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = sse_events(&body);
    assert!(
        !events
            .iter()
            .any(|(name, _)| name == "response.output_text.delta"),
        "{body}"
    );
    assert_eq!(events.last().unwrap().0, "response.failed", "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_clear_errors_and_responses_stay_in_their_tenant() {
    let upstream = MockUpstream::start(Script::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let landfall = server(&upstream, dir.path(), "").await;
    let cases = [
        (json!({"input": "x"}), 400, "model"),
        (json!({"model": "nope", "input": "x"}), 404, ""),
        (json!({"model": "m"}), 400, "input"),
        (
            json!({"model": "m", "input": "x", "previous_response_id": "resp_nope"}),
            400,
            "previous_response_id",
        ),
        (
            json!({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]}),
            400,
            "input",
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}]}),
            400,
            "tools",
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "function"}]}),
            400,
            "tools",
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "file_search", "vector_store_ids": ["vs_nope"]}]}),
            404,
            "",
        ),
        (
            json!({"model": "m", "input": "x", "tool_choice": "sometimes"}),
            400,
            "tool_choice",
        ),
        (
            json!({"model": "m", "input": "x", "temprature": 1}),
            422,
            "temprature",
        ),
        (
            json!({"model": "m", "input": "x", "stream_options": {}}),
            400,
            "stream_options",
        ),
        (
            json!({"model": "m", "input": "x", "tools": [lookup_tool(), {"type": "file_search", "vector_store_ids": []}]}),
            400,
            "tools",
        ),
    ];
    for (body, status, param) in cases {
        let (got, error) = landfall.post("/v1/responses", "", body.clone()).await;
        assert_eq!(got, status, "{body}: {error}");
        assert!(error["error"]["message"].is_string(), "{body}: {error}");
        if !param.is_empty() {
            assert_eq!(error["error"]["param"], param, "{body}: {error}");
        }
    }

    // Another tenant's key finds nothing.
    let (status, _) = landfall
        .post(
            "/admin/v1/tenants",
            ADMIN_KEY,
            json!({"id": "other", "name": "Other"}),
        )
        .await;
    assert_eq!(status, 201);
    let (_, key) = landfall
        .post(
            "/admin/v1/keys",
            ADMIN_KEY,
            json!({"tenant_id": "other", "name": "k"}),
        )
        .await;
    let secret = key["secret"].as_str().unwrap();
    let (_, mine) = landfall
        .post("/v1/responses", "", json!({"model": "m", "input": "hello"}))
        .await;
    let path = format!("/v1/responses/{}", mine["id"].as_str().unwrap());
    assert_eq!(landfall.get(&path, secret).await.0, 404);
    let (status, _) = landfall
        .call(reqwest::Method::DELETE, &path, secret, None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = landfall
        .post(
            "/v1/responses",
            secret,
            json!({"model": "m", "input": "x", "previous_response_id": mine["id"]}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(landfall.get(&path, "").await.0, 200);
}
