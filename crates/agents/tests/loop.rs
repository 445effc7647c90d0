//! The agent loop driven by a scripted model: each turn's answer is fixed in advance, and the
//! requests the loop sent are kept for the assertions.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use landfall_agents::{
    AgentError, CallItem, Checked, Hooks, Item, Limits, Model, ModelTurn, OnText, Protocol,
    Resumed, RunRequest, StepKind, StepRecord, StopReason, Tool, ToolContext, ToolError,
    ToolOutput, ToolSpec, Toolbox, run,
};
use landfall_types::{
    ChatMessage, ChatRequest, Extra, FunctionCall, FunctionDefinition, Role, Stop, ToolCall, Usage,
};
use serde_json::{Value, json};

/// A model that answers with the next scripted message and records what it was asked.
struct Script {
    turns: Mutex<VecDeque<ChatMessage>>,
    seen: Mutex<Vec<ChatRequest>>,
}

impl Script {
    fn new(turns: impl IntoIterator<Item = ChatMessage>) -> Self {
        Self {
            turns: Mutex::new(turns.into_iter().collect()),
            seen: Mutex::new(Vec::new()),
        }
    }

    fn seen(&self) -> Vec<ChatRequest> {
        self.seen.lock().unwrap().clone()
    }
}

#[async_trait]
impl Model for Script {
    async fn complete(
        &self,
        request: ChatRequest,
        deltas: Option<&OnText<'_>>,
    ) -> Result<ModelTurn, AgentError> {
        self.seen.lock().unwrap().push(request);
        let message = self.turns.lock().unwrap().pop_front().ok_or_else(|| {
            AgentError::model(std::io::Error::other("the script has no more turns"))
        })?;
        if let Some(deltas) = deltas {
            for word in message.text_content().split_inclusive(' ') {
                deltas(word);
            }
        }
        Ok(ModelTurn {
            message,
            usage: Usage {
                prompt_tokens: 10,
                completion_tokens: 5,
                total_tokens: 15,
                extra: Extra::new(),
            },
            target: "scripted".to_owned(),
        })
    }
}

fn calls(calls: &[(&str, &str, &str)]) -> ChatMessage {
    ChatMessage {
        content: None,
        tool_calls: Some(
            calls
                .iter()
                .map(|(id, name, arguments)| ToolCall {
                    id: (*id).to_owned(),
                    kind: "function".to_owned(),
                    function: FunctionCall {
                        name: (*name).to_owned(),
                        arguments: (*arguments).to_owned(),
                    },
                })
                .collect(),
        ),
        ..ChatMessage::text(Role::Assistant, "")
    }
}

fn answer(text: &str) -> ChatMessage {
    ChatMessage::text(Role::Assistant, text)
}

/// Adds two numbers; sleeps first when asked to.
struct Add {
    spec: ToolSpec,
}

impl Add {
    fn tool() -> Arc<dyn Tool> {
        Arc::new(Self {
            spec: ToolSpec {
                name: "add".to_owned(),
                description: "Adds a and b.".to_owned(),
                parameters: json!({
                    "type": "object",
                    "properties": {
                        "a": {"type": "number"},
                        "b": {"type": "number"},
                        "sleep_ms": {"type": "integer"}
                    },
                    "required": ["a", "b"]
                }),
                sensitive: false,
            },
        })
    }
}

#[async_trait]
impl Tool for Add {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(
        &self,
        arguments: Value,
        _context: &ToolContext,
    ) -> Result<ToolOutput, ToolError> {
        if let Some(sleep) = arguments["sleep_ms"].as_u64() {
            tokio::time::sleep(Duration::from_millis(sleep)).await;
        }
        let sum = arguments["a"].as_f64().unwrap_or(0.0) + arguments["b"].as_f64().unwrap_or(0.0);
        Ok(ToolOutput::text(sum.to_string()))
    }
}

fn toolbox() -> Toolbox {
    let mut toolbox = Toolbox::new();
    toolbox.add(Add::tool()).unwrap();
    toolbox
}

fn request(protocol: Protocol) -> RunRequest {
    RunRequest {
        chat: ChatRequest {
            model: "m".to_owned(),
            messages: vec![ChatMessage::text(Role::User, "what is 2 + 3?")],
            stream: None,
            stream_options: None,
            max_tokens: None,
            max_completion_tokens: None,
            temperature: None,
            top_p: None,
            stop: None,
            tools: None,
            tool_choice: None,
            extra: Extra::new(),
        },
        protocol,
        limits: Limits::default(),
        stream: false,
        tenant_id: "t".to_owned(),
        key_id: "k".to_owned(),
        request_id: "r".to_owned(),
        client_approval: std::collections::HashSet::new(),
        resumed: Vec::new(),
    }
}

#[derive(Default)]
struct Recorder {
    steps: Mutex<Vec<StepRecord>>,
    refuse: bool,
    block_output: bool,
}

#[async_trait]
impl Hooks for Recorder {
    fn step(&self, record: &StepRecord) {
        self.steps.lock().unwrap().push(record.clone());
    }

    async fn before_call(
        &self,
        spec: &ToolSpec,
        _: &str,
        _: &Value,
        _: Instant,
    ) -> Result<(), ToolError> {
        if self.refuse {
            return Err(ToolError::Refused {
                message: format!("{} needs approval", spec.name),
            });
        }
        Ok(())
    }

    async fn check_output(&self, _spec: &ToolSpec, output: ToolOutput) -> Checked {
        if self.block_output {
            Checked::Block(ToolError::Refused {
                message: "blocked by policy".to_owned(),
            })
        } else {
            Checked::Pass(output)
        }
    }
}

fn outputs(items: &[Item]) -> Vec<Result<String, &'static str>> {
    items
        .iter()
        .filter_map(|item| match item {
            Item::ToolCall(call) => call.output.as_ref().map(|output| match output {
                Ok(output) => Ok(output.text.clone()),
                Err(error) => Err(error.kind()),
            }),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn native_call_then_answer() {
    let model = Script::new([
        calls(&[("c1", "add", r#"{"a": 2, "b": 3}"#)]),
        answer("2 + 3 = 5"),
    ]);
    let hooks = Recorder::default();
    let run = run(&model, &toolbox(), request(Protocol::Native), &hooks)
        .await
        .unwrap();
    assert_eq!(run.stopped, StopReason::Answered);
    assert_eq!(outputs(&run.items), vec![Ok("5".to_owned())]);
    assert_eq!(
        run.items.last(),
        Some(&Item::Message {
            text: "2 + 3 = 5".to_owned()
        })
    );
    assert_eq!(run.usage.total_tokens, 30);
    let kinds: Vec<StepKind> = hooks.steps.lock().unwrap().iter().map(|s| s.kind).collect();
    assert_eq!(kinds, [StepKind::Model, StepKind::Tool, StepKind::Model]);
    // The second turn saw the tool result, answering the call by id.
    let seen = model.seen();
    let tool_message = seen[1].messages.last().unwrap();
    assert_eq!(tool_message.role, Role::Tool);
    assert_eq!(tool_message.tool_call_id.as_deref(), Some("c1"));
    assert_eq!(tool_message.text_content(), "5");
    assert!(seen[0].tools.as_ref().unwrap()[0].function.name == "add");
    // The conversation to continue from: user, call, result, answer.
    let roles: Vec<Role> = run.messages.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [Role::User, Role::Assistant, Role::Tool, Role::Assistant]
    );
}

#[tokio::test]
async fn tool_errors_become_observations() {
    let model = Script::new([
        calls(&[
            ("c1", "nope", "{}"),
            ("c2", "add", r#"{"a": "two"}"#),
            ("c3", "add", "not json"),
        ]),
        answer("sorry"),
    ]);
    let run = run(
        &model,
        &toolbox(),
        request(Protocol::Native),
        &Recorder::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        outputs(&run.items),
        vec![
            Err("unknown_tool"),
            Err("invalid_arguments"),
            Err("invalid_arguments")
        ]
    );
    let seen = model.seen();
    let observations: Vec<String> = seen[1].messages[2..]
        .iter()
        .map(ChatMessage::text_content)
        .collect();
    assert_eq!(observations.len(), 3);
    assert!(
        observations.iter().all(|text| text.starts_with("error: ")),
        "{observations:?}"
    );
    assert_eq!(run.stopped, StopReason::Answered);
}

#[tokio::test(start_paused = true)]
async fn a_slow_tool_times_out() {
    let model = Script::new([
        calls(&[("c1", "add", r#"{"a": 1, "b": 1, "sleep_ms": 60000}"#)]),
        answer("it took too long"),
    ]);
    let mut request = request(Protocol::Native);
    request.limits.tool_timeout = Duration::from_secs(1);
    let run = run(&model, &toolbox(), request, &Recorder::default())
        .await
        .unwrap();
    assert_eq!(outputs(&run.items), vec![Err("timeout")]);
    assert_eq!(run.stopped, StopReason::Answered);
}

#[tokio::test]
async fn the_step_limit_ends_a_run_and_the_last_turn_has_no_tools() {
    let model = Script::new([
        calls(&[("c1", "add", r#"{"a": 1, "b": 1}"#)]),
        calls(&[("c2", "add", r#"{"a": 2, "b": 2}"#)]),
        calls(&[("c3", "add", r#"{"a": 3, "b": 3}"#)]),
    ]);
    let mut request = request(Protocol::Native);
    request.limits.max_steps = 3;
    let run = run(&model, &toolbox(), request, &Recorder::default())
        .await
        .unwrap();
    assert_eq!(run.stopped, StopReason::StepLimit);
    let seen = model.seen();
    assert_eq!(seen.len(), 3);
    assert!(seen[1].tools.is_some());
    assert!(
        seen[2].tools.is_none(),
        "the last turn must not offer tools"
    );
}

#[tokio::test]
async fn max_tool_calls_refuses_the_rest() {
    let model = Script::new([
        calls(&[
            ("c1", "add", r#"{"a": 1, "b": 1}"#),
            ("c2", "add", r#"{"a": 2, "b": 2}"#),
        ]),
        answer("done"),
    ]);
    let mut request = request(Protocol::Native);
    request.limits.max_tool_calls = 1;
    let run = run(&model, &toolbox(), request, &Recorder::default())
        .await
        .unwrap();
    assert_eq!(
        outputs(&run.items),
        vec![Ok("2".to_owned()), Err("refused")]
    );
    assert!(
        model.seen()[1].tools.is_none(),
        "no tools once the limit is reached"
    );
}

#[tokio::test]
async fn hooks_refuse_calls_and_block_outputs() {
    for (hooks, kind) in [
        (
            Recorder {
                refuse: true,
                ..Recorder::default()
            },
            "refused",
        ),
        (
            Recorder {
                block_output: true,
                ..Recorder::default()
            },
            "refused",
        ),
    ] {
        let model = Script::new([calls(&[("c1", "add", r#"{"a": 1, "b": 1}"#)]), answer("ok")]);
        let run = run(&model, &toolbox(), request(Protocol::Native), &hooks)
            .await
            .unwrap();
        assert_eq!(outputs(&run.items), vec![Err(kind)]);
        let observation = model.seen()[1].messages.last().unwrap().text_content();
        assert!(!observation.contains('2'), "{observation}");
    }
}

#[tokio::test]
async fn client_function_calls_end_the_run() {
    let model = Script::new([calls(&[
        ("c1", "add", r#"{"a": 1, "b": 1}"#),
        ("c2", "lookup_order", r#"{"id": "42"}"#),
    ])]);
    let mut request = request(Protocol::Native);
    request.chat.tools = Some(vec![landfall_types::Tool {
        kind: "function".to_owned(),
        function: FunctionDefinition {
            name: "lookup_order".to_owned(),
            description: None,
            parameters: Some(json!({"type": "object"})),
            strict: None,
            extra: Extra::new(),
        },
        extra: Extra::new(),
    }]);
    let run = run(&model, &toolbox(), request.clone(), &Recorder::default())
        .await
        .unwrap();
    assert_eq!(run.stopped, StopReason::ClientTools);
    let Some(Item::ToolCall(call)) = run.items.last() else {
        panic!("{:?}", run.items);
    };
    assert_eq!(
        (call.name.as_str(), call.output.is_none()),
        ("lookup_order", true)
    );
    assert_eq!(outputs(&run.items), vec![Ok("2".to_owned())]);

    // A client tool may not shadow one of Landfall's.
    request.chat.tools.as_mut().unwrap()[0].function.name = "add".to_owned();
    let error = run_err(request).await;
    assert!(matches!(error, AgentError::Invalid { .. }), "{error:?}");
}

#[tokio::test]
async fn calls_the_client_approves_end_the_run_and_resume_in_the_next() {
    // One turn: a call that runs at once, then one that needs the client's approval.
    let model = Script::new([calls(&[
        ("c1", "add", r#"{"a": 1, "b": 1}"#),
        ("c2", "add", r#"{"a": 2, "b": 2}"#),
    ])]);
    let mut first = request(Protocol::Native);
    first.client_approval.insert("add".to_owned());
    let asked = run(&model, &toolbox(), first, &Recorder::default())
        .await
        .unwrap();
    assert_eq!(asked.stopped, StopReason::ClientTools);
    let pending: Vec<&CallItem> = asked
        .items
        .iter()
        .filter_map(|item| match item {
            Item::ApprovalRequest(call) => Some(call),
            _ => None,
        })
        .collect();
    assert_eq!(pending.len(), 2, "{:?}", asked.items);
    assert!(pending.iter().all(|call| call.output.is_none()));
    assert_eq!(outputs(&asked.items), Vec::<Result<String, _>>::new());
    // Nothing ran, and the conversation holds no call without its result.
    assert_eq!(
        asked.messages.iter().map(|m| m.role).collect::<Vec<_>>(),
        [Role::User]
    );

    // The client approves one and rejects the other; both come back to the model.
    let model = Script::new([answer("1 + 1 = 2; the other was not allowed")]);
    let mut next = request(Protocol::Native);
    next.chat.messages = asked.messages.clone();
    next.client_approval.insert("add".to_owned());
    next.resumed = vec![
        Resumed {
            call: pending[0].clone(),
            approved: Ok(()),
        },
        Resumed {
            call: pending[1].clone(),
            approved: Err(Some("too big".to_owned())),
        },
    ];
    let hooks = Recorder::default();
    let resumed = run(&model, &toolbox(), next, &hooks).await.unwrap();
    assert_eq!(resumed.stopped, StopReason::Answered);
    assert_eq!(
        outputs(&resumed.items),
        vec![Ok("2".to_owned()), Err("refused")]
    );
    let seen = model.seen();
    let roles: Vec<Role> = seen[0].messages.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [
            Role::User,
            Role::Assistant,
            Role::Tool,
            Role::Assistant,
            Role::Tool
        ]
    );
    assert_eq!(seen[0].messages[1].tool_calls.as_ref().unwrap()[0].id, "c1");
    assert_eq!(seen[0].messages[2].tool_call_id.as_deref(), Some("c1"));
    assert!(
        seen[0].messages[4]
            .text_content()
            .contains("did not approve the call: too big")
    );
    // Only the approved call ran.
    let tools = hooks
        .steps
        .lock()
        .unwrap()
        .iter()
        .filter(|step| step.kind == StepKind::Tool)
        .count();
    assert_eq!(tools, 1);
}

#[tokio::test]
async fn a_pending_call_after_a_run_one_leaves_the_run_ones_result() {
    let model = Script::new([calls(&[
        ("c1", "add", r#"{"a": 1, "b": 1}"#),
        ("c2", "lookup", r#"{}"#),
    ])]);
    let mut toolbox = toolbox();
    toolbox
        .add(Arc::new(Add {
            spec: ToolSpec {
                name: "lookup".to_owned(),
                ..Add::tool().spec().clone()
            },
        }))
        .unwrap();
    let mut request = request(Protocol::Native);
    request.client_approval.insert("lookup".to_owned());
    let run = run(&model, &toolbox, request, &Recorder::default())
        .await
        .unwrap();
    assert_eq!(run.stopped, StopReason::ClientTools);
    assert_eq!(outputs(&run.items), vec![Ok("2".to_owned())]);
    assert!(matches!(run.items.last(), Some(Item::ApprovalRequest(call)) if call.name == "lookup"));
    // The turn keeps the call that ran, with its result; the pending one is gone.
    let assistant = &run.messages[1];
    let ids: Vec<&str> = assistant
        .tool_calls
        .iter()
        .flatten()
        .map(|call| call.id.as_str())
        .collect();
    assert_eq!(ids, ["c1"]);
    assert_eq!(run.messages[2].tool_call_id.as_deref(), Some("c1"));
    assert_eq!(run.messages.len(), 3);
}

async fn run_err(request: RunRequest) -> AgentError {
    let model = Script::new([]);
    run(&model, &toolbox(), request, &Recorder::default())
        .await
        .unwrap_err()
}

#[tokio::test]
async fn a_failing_model_fails_the_run() {
    let error = run_err(request(Protocol::Native)).await;
    assert!(matches!(error, AgentError::Model { .. }), "{error:?}");
}

#[tokio::test]
async fn react_protocol() {
    let model = Script::new([
        answer("Thought: I should add.\nAction: add\nAction Input: {\"a\": 2, \"b\": 3}"),
        answer("Thought: I know it now.\nFinal Answer: 5"),
    ]);
    let run = run(
        &model,
        &toolbox(),
        request(Protocol::React),
        &Recorder::default(),
    )
    .await
    .unwrap();
    assert_eq!(run.stopped, StopReason::Answered);
    assert_eq!(outputs(&run.items), vec![Ok("5".to_owned())]);
    assert_eq!(
        run.items.last(),
        Some(&Item::Message {
            text: "5".to_owned()
        })
    );
    assert!(
        run.items
            .iter()
            .any(|item| matches!(item, Item::Reasoning { .. }))
    );
    let seen = model.seen();
    assert!(seen[0].tools.is_none());
    assert_eq!(seen[0].messages[0].role, Role::System);
    assert!(seen[0].messages[0].text_content().contains("add"));
    assert!(
        matches!(&seen[0].stop, Some(Stop::Many(stops)) if stops.iter().any(|s| s.contains("Observation")))
    );
    assert_eq!(
        seen[1].messages.last().unwrap().text_content(),
        "Observation: 5"
    );
    // The protocol prompt is not part of the conversation kept.
    assert_eq!(run.messages[0].role, Role::User);
}

#[tokio::test]
async fn streamed_text_arrives_as_deltas() {
    #[derive(Default)]
    struct Deltas(Mutex<String>);
    impl Hooks for Deltas {
        fn event(&self, event: landfall_agents::Event<'_>) {
            if let landfall_agents::Event::TextDelta(delta) = event {
                self.0.lock().unwrap().push_str(delta);
            }
        }
    }
    let model = Script::new([answer("five, as it happens")]);
    let hooks = Deltas::default();
    let mut request = request(Protocol::Native);
    request.stream = true;
    run(&model, &toolbox(), request, &hooks).await.unwrap();
    assert_eq!(*hooks.0.lock().unwrap(), "five, as it happens");
}
