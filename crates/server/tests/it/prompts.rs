//! Prompt templates: admin CRUD with immutable versions and a render preview; `prompt` in
//! `/v1/responses`; a model alias's prompt on chat completions and responses.

use landfall_testkit::{MockUpstream, Script};
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Landfall, provider, start};
use crate::knowledge::ADMIN_KEY;

async fn server(upstream: &MockUpstream) -> Landfall {
    let config = format!(
        "[auth]\nadmin_key = \"{ADMIN_KEY}\"\nallow_anonymous = true\n{}\
         [models.m]\ntargets = [{{ provider = \"mock\", model = \"mock-model\" }}]\n\
         [models.support]\ntargets = [{{ provider = \"mock\", model = \"mock-model\" }}]\n\
         prompt = {{ id = \"support\", variables = {{ company = \"Acme\", product = \"X200\" }} }}\n\
         [models.pinned]\ntargets = [{{ provider = \"mock\", model = \"mock-model\" }}]\n\
         prompt = {{ id = \"support\", version = 1, variables = {{ company = \"Acme\", product = \"X1\" }} }}\n",
        provider("mock", &upstream.base_url(), ""),
    );
    start(&config).await
}

fn support_template(constraint: &str) -> Value {
    json!({
        "description": "Customer service over the product manual",
        "role": "You are the support assistant of {{ company }}.",
        "task": "Answer questions about the {{ product }}.",
        "constraints": [constraint, "{% if escalate %}Offer a ticket.{% endif %}"],
        "output_format": "At most {{ max_sentences }} sentences.",
        "examples": [{"input": "Reset the {{ product }}?", "output": "Hold power for 10 s."}],
        "variables": {
            "type": "object",
            "properties": {
                "company": {"type": "string"},
                "product": {"type": "string"},
                "escalate": {"type": "boolean", "default": false},
                "max_sentences": {"type": "integer", "minimum": 1, "default": 3}
            },
            "required": ["company", "product"],
            "additionalProperties": false
        }
    })
}

async fn admin(
    landfall: &Landfall,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    landfall.call(method, path, ADMIN_KEY, body).await
}

/// The messages of the chat requests the upstream received.
fn sent_messages(upstream: &MockUpstream) -> Vec<Vec<Value>> {
    upstream
        .requests()
        .into_iter()
        .filter(|request| request.path == "/v1/chat/completions")
        .map(|request| request.body["messages"].as_array().unwrap().clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn prompts_are_versioned_validated_and_previewed() {
    let upstream = MockUpstream::start(Script::new()).await;
    let landfall = server(&upstream).await;

    let mut body = support_template("Answer only from the manual.");
    body["id"] = json!("support");
    let (status, created) = admin(
        &landfall,
        Method::POST,
        "/admin/v1/prompts",
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["version"], 1);
    assert_eq!(created["object"], "prompt");
    let (status, conflict) = admin(&landfall, Method::POST, "/admin/v1/prompts", Some(body)).await;
    assert_eq!(status, 409, "{conflict}");

    // A template using a variable it does not declare, or that does not parse, is refused.
    let broken = [
        json!({"id": "bad", "task": "Hi {{ who }}"}),
        json!({"id": "bad", "task": "{% for %}"}),
        json!({"id": "bad", "task": "x", "colour": "red"}),
        json!({"id": "bad id!", "task": "x"}),
        json!({"task": "x"}),
    ];
    for document in broken {
        let (status, error) = admin(
            &landfall,
            Method::POST,
            "/admin/v1/prompts",
            Some(document.clone()),
        )
        .await;
        assert_eq!(status, 400, "{document}: {error}");
        assert!(error["error"]["message"].as_str().is_some(), "{error}");
    }
    let (status, _) = admin(&landfall, Method::GET, "/admin/v1/prompts/bad", None).await;
    assert_eq!(status, 404);

    let (status, second) = admin(
        &landfall,
        Method::POST,
        "/admin/v1/prompts/support",
        Some(support_template("Answer only from the manual; cite pages.")),
    )
    .await;
    assert_eq!(status, 201, "{second}");
    assert_eq!(second["version"], 2);
    let (_, latest) = admin(&landfall, Method::GET, "/admin/v1/prompts/support", None).await;
    assert_eq!(latest["version"], 2);
    let (_, first) = admin(
        &landfall,
        Method::GET,
        "/admin/v1/prompts/support?version=1",
        None,
    )
    .await;
    assert_eq!(first["constraints"][0], "Answer only from the manual.");
    let (status, _) = admin(
        &landfall,
        Method::GET,
        "/admin/v1/prompts/support?version=7",
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (_, versions) = admin(
        &landfall,
        Method::GET,
        "/admin/v1/prompts/support/versions",
        None,
    )
    .await;
    let numbers: Vec<i64> = versions["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, [1, 2]);

    let (status, preview) = admin(
        &landfall,
        Method::POST,
        "/admin/v1/prompts/support/render",
        Some(json!({"variables": {"company": "Acme", "product": "X200", "escalate": true}})),
    )
    .await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["version"], 2);
    assert_eq!(
        preview["instructions"],
        "You are the support assistant of Acme.\n\n## Task\nAnswer questions about the X200.\n\n\
         ## Constraints\n- Answer only from the manual; cite pages.\n- Offer a ticket.\n\n\
         ## Output format\nAt most 3 sentences."
    );
    let roles: Vec<&str> = preview["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["system", "user", "assistant"]);
    assert_eq!(preview["messages"][1]["content"], "Reset the X200?");

    let (status, error) = admin(
        &landfall,
        Method::POST,
        "/admin/v1/prompts/support/render",
        Some(json!({"variables": {"company": "Acme", "product": "X200", "max_sentences": 0}})),
    )
    .await;
    assert_eq!(status, 400, "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_sentences"),
        "{error}"
    );

    let (status, list) = admin(&landfall, Method::GET, "/admin/v1/prompts", None).await;
    assert_eq!(status, 200);
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(list["data"][0]["version"], 2);

    let (status, _) = admin(&landfall, Method::DELETE, "/admin/v1/prompts/support", None).await;
    assert_eq!(status, 200);
    let (status, gone) = admin(
        &landfall,
        Method::GET,
        "/admin/v1/prompts/support?version=1",
        None,
    )
    .await;
    assert_eq!(status, 404, "{gone}");
    assert_eq!(gone["error"]["code"], "prompt_not_found");
    // Prompts are operators' business: client keys cannot reach the admin API.
    let (status, _) = landfall
        .call(Method::GET, "/admin/v1/prompts", "", None)
        .await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn responses_and_aliases_render_their_prompt_before_the_conversation() {
    let upstream = MockUpstream::start(Script::new()).await;
    let landfall = server(&upstream).await;
    let mut body = support_template("Answer only from the manual.");
    body["id"] = json!("support");
    assert_eq!(
        admin(&landfall, Method::POST, "/admin/v1/prompts", Some(body))
            .await
            .0,
        201
    );
    let second = support_template("Version two.");
    assert_eq!(
        admin(
            &landfall,
            Method::POST,
            "/admin/v1/prompts/support",
            Some(second)
        )
        .await
        .0,
        201
    );

    let (status, response) = landfall
        .post(
            "/v1/responses",
            "",
            json!({"model": "m", "input": "does it float?", "instructions": "Be kind.",
                   "prompt": {"id": "support", "version": "1",
                              "variables": {"company": "Acme", "product": {"type": "input_text", "text": "Boat"}}}}),
        )
        .await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(response["prompt"]["id"], "support");
    assert_eq!(response["prompt"]["version"], "1");
    let messages = sent_messages(&upstream).pop().unwrap();
    let roles: Vec<&str> = messages
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        ["system", "user", "assistant", "system", "user"],
        "{messages:?}"
    );
    let system = messages[0]["content"].as_str().unwrap();
    assert!(
        system.starts_with("You are the support assistant of Acme."),
        "{system}"
    );
    assert!(system.contains("Answer only from the manual."), "{system}");
    assert_eq!(messages[1]["content"], "Reset the Boat?");
    assert_eq!(messages[3]["content"], "Be kind.");

    // The prompt is not part of the stored conversation: a follow-up sends it again only if
    // it names it.
    let (_, follow_up) = landfall
        .post(
            "/v1/responses",
            "",
            json!({"model": "m", "input": "and sink?", "previous_response_id": response["id"]}),
        )
        .await;
    assert_eq!(follow_up["status"], "completed", "{follow_up}");
    let messages = sent_messages(&upstream).pop().unwrap();
    let roles: Vec<&str> = messages
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "user"], "{messages:?}");

    // Clear errors: a missing variable, a wrong version, an unknown prompt, an image variable.
    let cases = [
        (
            json!({"id": "support", "variables": {"company": "Acme"}}),
            400,
            "product",
        ),
        (
            json!({"id": "support", "version": "9", "variables": {}}),
            404,
            "version 9",
        ),
        (json!({"id": "support", "version": "two"}), 400, "version"),
        (json!({"id": "nope"}), 404, "nope"),
        (
            json!({"id": "support", "variables": {"company": "A", "product": {"type": "input_image", "image_url": "x"}}}),
            400,
            "input_image",
        ),
        (json!({"name": "support"}), 400, "prompt"),
    ];
    for (prompt, expected_status, needle) in cases {
        let (status, error) = landfall
            .post(
                "/v1/responses",
                "",
                json!({"model": "m", "input": "hi", "prompt": prompt.clone()}),
            )
            .await;
        assert_eq!(status, expected_status, "{prompt}: {error}");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{prompt}: {message}");
    }

    // An alias with a prompt: the latest version, or the one it pins, on chat completions and
    // on responses.
    let reply = landfall
        .chat(json!({"model": "support", "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(reply.status(), 200);
    let messages = sent_messages(&upstream).pop().unwrap();
    assert_eq!(messages.len(), 4, "{messages:?}");
    assert!(
        messages[0]["content"]
            .as_str()
            .unwrap()
            .contains("Version two.")
    );
    assert!(messages[0]["content"].as_str().unwrap().contains("X200"));
    assert_eq!(messages[3]["content"], "hi");

    let (status, pinned) = landfall
        .post(
            "/v1/responses",
            "",
            json!({"model": "pinned", "input": "hi"}),
        )
        .await;
    assert_eq!(status, 200, "{pinned}");
    assert_eq!(pinned["prompt"]["version"], "1");
    let messages = sent_messages(&upstream).pop().unwrap();
    assert!(
        messages[0]["content"]
            .as_str()
            .unwrap()
            .contains("Answer only from the manual.")
    );
    assert!(messages[1]["content"].as_str().unwrap().contains("X1"));

    // A prompt limited to other tenants does not exist for this caller.
    let mut private = support_template("Private.");
    private["id"] = json!("private");
    private["tenants"] = json!(["someone-else"]);
    assert_eq!(
        admin(&landfall, Method::POST, "/admin/v1/prompts", Some(private))
            .await
            .0,
        201
    );
    let (status, _) = landfall
        .post(
            "/v1/responses",
            "",
            json!({"model": "m", "input": "hi",
              "prompt": {"id": "private", "variables": {"company": "A", "product": "B"}}}),
        )
        .await;
    assert_eq!(status, 404);
}
