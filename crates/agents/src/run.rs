//! The agent loop: model turn, tool calls, observations, until the model answers or a limit
//! is reached.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use landfall_types::{
    ChatMessage, ChatRequest, Extra, FunctionDefinition, Role, Stop, Tool, Usage,
};
use serde_json::Value;

use crate::error::{AgentError, ToolError};
use crate::react::{self, ReactStep};
use crate::tool::{ToolContext, ToolOutput, ToolSpec, Toolbox};

/// How long past the deadline a [`Hooks::before_call`] that does not give up is waited for.
const APPROVAL_GRACE: Duration = Duration::from_secs(2);

/// How the model is asked to call tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// The target's own tool calls (`tools` in the request, `tool_calls` in the answer).
    #[default]
    Native,
    /// The ReAct text protocol, for targets without native tool calls.
    React,
}

/// Bounds of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Model turns. The last turn is offered no tools, so the model has to answer.
    pub max_steps: u32,
    /// Tool calls Landfall runs (client function calls do not count); past it, tools are no
    /// longer offered and further calls are refused.
    pub max_tool_calls: u32,
    /// Each tool call's timeout.
    pub tool_timeout: Duration,
    /// The whole run's deadline, measured from its start.
    pub deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_steps: 8,
            max_tool_calls: 16,
            tool_timeout: Duration::from_secs(30),
            deadline: Duration::from_secs(300),
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// The model, the conversation so far and sampling settings. Its `tools` are the client's
    /// function tools: a call to one ends the run so the client can run it.
    pub chat: ChatRequest,
    pub protocol: Protocol,
    pub limits: Limits,
    /// Whether to ask the model for a stream (text arrives as [`Event::TextDelta`]).
    pub stream: bool,
    pub tenant_id: String,
    pub key_id: String,
    pub request_id: String,
    /// Landfall tools whose calls the client approves: a call to one is not run but ends the
    /// run as an [`Item::ApprovalRequest`], to be [`Resumed`] by a later request.
    pub client_approval: HashSet<String>,
    /// Calls an earlier run asked the client to approve, with the client's answer; they run
    /// (or are refused) before the first model turn.
    pub resumed: Vec<Resumed>,
}

/// A call that waited for the client's approval, and the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Resumed {
    /// The call as the model made it (no output).
    pub call: CallItem,
    /// `Err(reason)` when the client did not approve it.
    pub approved: Result<(), Option<String>>,
}

/// One model turn's result.
#[derive(Debug, Clone)]
pub struct ModelTurn {
    /// The assistant message: text, tool calls, or both.
    pub message: ChatMessage,
    pub usage: Usage,
    /// Which target answered, for the step record.
    pub target: String,
}

/// Receives streamed answer text. (An alias, so that `async_trait` keeps the `&str`
/// lifetime higher-ranked.)
pub type OnText<'a> = dyn Fn(&str) + Send + Sync + 'a;

/// A model the loop can ask for one turn.
#[async_trait]
pub trait Model: Send + Sync {
    /// Answers `request`; when `deltas` is given, streams and reports text as it arrives.
    ///
    /// # Errors
    /// [`AgentError::Model`] wrapping the caller's error; it ends the run.
    async fn complete(
        &self,
        request: ChatRequest,
        deltas: Option<&OnText<'_>>,
    ) -> Result<ModelTurn, AgentError>;
}

/// An item of the run's output, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// Text from the model (the answer, or what it said before calling tools).
    Message { text: String },
    /// A ReAct `Thought:`.
    Reasoning { text: String },
    /// A tool call and, for tools Landfall ran, its result.
    ToolCall(CallItem),
    /// A call to a tool in [`RunRequest::client_approval`], not run: the client answers it.
    ApprovalRequest(CallItem),
}

#[derive(Debug, Clone, PartialEq)]
pub struct CallItem {
    pub call_id: String,
    pub name: String,
    /// The argument text as the model wrote it.
    pub arguments: String,
    /// `None` for a client's function call, which the client runs.
    pub output: Option<Result<ToolOutput, ToolError>>,
}

/// Why the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The model answered.
    Answered,
    /// The model called client function tools, or tools the client must approve; the
    /// results or answers come in the next request.
    ClientTools,
    /// The step limit was reached with the model still calling tools.
    StepLimit,
    /// The deadline passed.
    Deadline,
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct Run {
    pub items: Vec<Item>,
    /// Summed over every model turn.
    pub usage: Usage,
    pub steps: Vec<StepRecord>,
    pub stopped: StopReason,
    /// The target of the last model turn.
    pub target: String,
    /// The conversation as it stands after the run (the request's messages, every turn and
    /// tool result, the answer), to continue from in a later request.
    pub messages: Vec<ChatMessage>,
}

/// One audited step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRecord {
    pub kind: StepKind,
    /// The target for a model turn, the tool for a call.
    pub name: String,
    /// `ok`, or the [`ToolError::kind`] of a failed call.
    pub outcome: &'static str,
    pub elapsed: Duration,
    /// Model turns only.
    pub usage: Option<Usage>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    Model,
    Tool,
}

impl StepKind {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Model => "model",
            Self::Tool => "tool",
        }
    }
}

/// Something the client can watch as it happens.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// Answer text as it arrives (streamed native turns; a ReAct answer arrives whole as an
    /// [`Event::ItemDone`]).
    TextDelta(&'a str),
    /// A model turn finished its text: the message item is complete.
    ItemDone(&'a Item),
    /// A tool call is about to run.
    CallStarted(&'a CallItem),
}

/// Result of a hook's check of a tool's output.
#[derive(Debug, Clone, PartialEq)]
pub enum Checked {
    Pass(ToolOutput),
    /// Replace the output with this error (a guardrail blocked it).
    Block(ToolError),
}

/// The caller's part in a run. Every method has a do-nothing default.
#[async_trait]
pub trait Hooks: Send + Sync {
    fn event(&self, _event: Event<'_>) {}

    /// Called after every step.
    fn step(&self, _record: &StepRecord) {}

    /// Called before a call to `spec`, with validated arguments; an error refuses the call
    /// (a sensitive tool not approved). May wait, e.g. for a person's approval, but must
    /// give up by `deadline`, the run's.
    async fn before_call(
        &self,
        _spec: &ToolSpec,
        _call_id: &str,
        _arguments: &Value,
        _deadline: Instant,
    ) -> Result<(), ToolError> {
        Ok(())
    }

    /// Checks a tool's output before the model reads it.
    async fn check_output(&self, _spec: &ToolSpec, output: ToolOutput) -> Checked {
        Checked::Pass(output)
    }
}

/// Hooks that do nothing.
pub struct NoHooks;

impl Hooks for NoHooks {}

/// Runs the loop.
///
/// # Errors
/// [`AgentError::Model`] when a model turn fails; [`AgentError::Invalid`] when a client
/// function tool has the name of one of Landfall's tools.
pub async fn run(
    model: &dyn Model,
    toolbox: &Toolbox,
    request: RunRequest,
    hooks: &dyn Hooks,
) -> Result<Run, AgentError> {
    let started = Instant::now();
    let deadline = started + request.limits.deadline;
    let client_tools = request.chat.tools.clone().unwrap_or_default();
    if let Some(clash) = client_tools
        .iter()
        .find(|tool| toolbox.get(&tool.function.name).is_some())
    {
        return Err(AgentError::Invalid {
            message: format!(
                "function tool `{}` has the name of a Landfall tool; rename it",
                clash.function.name
            ),
        });
    }
    let mut state = State {
        messages: request.chat.messages.clone(),
        run: Run {
            items: Vec::new(),
            usage: Usage::default(),
            steps: Vec::new(),
            stopped: StopReason::StepLimit,
            target: String::new(),
            messages: Vec::new(),
        },
        tool_calls: 0,
    };
    if request.protocol == Protocol::React {
        let specs: Vec<ToolSpec> = toolbox
            .specs()
            .cloned()
            .chain(client_tools.iter().map(client_spec))
            .collect();
        state.messages.insert(
            0,
            ChatMessage::text(Role::System, react::system_prompt(&specs)),
        );
    }
    let context = ToolContext {
        tenant_id: request.tenant_id.clone(),
        key_id: request.key_id.clone(),
        request_id: request.request_id.clone(),
        deadline,
    };
    for resumed in &request.resumed {
        resume(&mut state, resumed, toolbox, &context, &request, hooks).await;
    }
    for step in 0..request.limits.max_steps.max(1) {
        let last = step + 1 >= request.limits.max_steps;
        let offer_tools = !last && state.tool_calls < request.limits.max_tool_calls;
        let mut chat = request.chat.clone();
        chat.messages = state.messages.clone();
        match request.protocol {
            Protocol::Native => {
                let mut tools: Vec<Tool> = toolbox.specs().map(native_tool).collect();
                tools.extend(client_tools.iter().cloned());
                if offer_tools && !tools.is_empty() {
                    chat.tools = Some(tools);
                } else {
                    chat.tools = None;
                    chat.tool_choice = None;
                }
                if step > 0
                    && matches!(&chat.tool_choice, Some(Value::String(choice)) if choice == "required")
                {
                    // `required` forces the first call, not every one: the model must be
                    // able to answer after it.
                    chat.tool_choice = Some(Value::String("auto".to_owned()));
                }
            }
            Protocol::React => {
                chat.tools = None;
                chat.tool_choice = None;
                let mut stops = chat.stop.as_ref().map(Stop::sequences).unwrap_or_default();
                stops.push(react::STOP.to_owned());
                chat.stop = Some(Stop::Many(stops));
                if !offer_tools {
                    state.messages.push(ChatMessage::text(
                        Role::User,
                        "No more tools are available. Reply now with \"Final Answer:\" and the answer.",
                    ));
                    chat.messages = state.messages.clone();
                }
            }
        }
        let deltas = |delta: &str| hooks.event(Event::TextDelta(delta));
        let stream_text = request.stream && request.protocol == Protocol::Native;
        let turn_started = Instant::now();
        let turn = tokio::time::timeout_at(
            deadline.into(),
            model.complete(chat, stream_text.then_some(&deltas as &OnText<'_>)),
        )
        .await;
        let Ok(turn) = turn else {
            return Ok(state.finish(StopReason::Deadline, request.protocol));
        };
        let turn = turn?;
        add_usage(&mut state.run.usage, &turn.usage);
        let record = StepRecord {
            kind: StepKind::Model,
            name: turn.target.clone(),
            outcome: "ok",
            elapsed: turn_started.elapsed(),
            usage: Some(turn.usage.clone()),
        };
        hooks.step(&record);
        state.run.steps.push(record);
        state.run.target = turn.target;
        let calls = match request.protocol {
            Protocol::Native => native_calls(&mut state, turn.message, hooks),
            Protocol::React => react_calls(&mut state, &turn.message, step, hooks),
        };
        if calls.is_empty() {
            return Ok(state.finish(StopReason::Answered, request.protocol));
        }
        let mut client_calls = false;
        for call in calls {
            if request.client_approval.contains(&call.name) && toolbox.get(&call.name).is_some() {
                client_calls = true;
                forget_call(&mut state.messages, &call.call_id, request.protocol);
                let item = Item::ApprovalRequest(call);
                hooks.event(Event::ItemDone(&item));
                state.run.items.push(item);
                continue;
            }
            if client_tools
                .iter()
                .any(|tool| tool.function.name == call.name)
            {
                client_calls = true;
                let item = Item::ToolCall(CallItem {
                    output: None,
                    ..call
                });
                hooks.event(Event::ItemDone(&item));
                state.run.items.push(item);
                continue;
            }
            hooks.event(Event::CallStarted(&call));
            let output = limited_call(&mut state, toolbox, &call, &context, &request, hooks).await;
            record_call(&mut state, request.protocol, call, output, hooks);
        }
        if client_calls {
            return Ok(state.finish(StopReason::ClientTools, request.protocol));
        }
        if Instant::now() >= deadline {
            return Ok(state.finish(StopReason::Deadline, request.protocol));
        }
    }
    Ok(state.finish(StopReason::StepLimit, request.protocol))
}

/// Runs (or refuses) a call the client answered, as if the model had just made it.
async fn resume(
    state: &mut State,
    resumed: &Resumed,
    toolbox: &Toolbox,
    context: &ToolContext,
    request: &RunRequest,
    hooks: &dyn Hooks,
) {
    let call = &resumed.call;
    // The call left the conversation when it was asked about; it comes back with its result.
    state.messages.push(match request.protocol {
        Protocol::Native => ChatMessage {
            content: None,
            tool_calls: Some(vec![landfall_types::ToolCall {
                id: call.call_id.clone(),
                kind: "function".to_owned(),
                function: landfall_types::FunctionCall {
                    name: call.name.clone(),
                    arguments: call.arguments.clone(),
                },
            }]),
            ..ChatMessage::text(Role::Assistant, "")
        },
        Protocol::React => ChatMessage::text(
            Role::Assistant,
            format!("Action: {}\nAction Input: {}", call.name, call.arguments),
        ),
    });
    hooks.event(Event::CallStarted(call));
    let output = match &resumed.approved {
        Err(reason) => Err(ToolError::Refused {
            message: match reason {
                Some(reason) => format!("the user did not approve the call: {reason}"),
                None => "the user did not approve the call".to_owned(),
            },
        }),
        Ok(()) => limited_call(state, toolbox, call, context, request, hooks).await,
    };
    record_call(state, request.protocol, call.clone(), output, hooks);
}

/// Runs a call unless the response's limit of tool calls is reached.
async fn limited_call(
    state: &mut State,
    toolbox: &Toolbox,
    call: &CallItem,
    context: &ToolContext,
    request: &RunRequest,
    hooks: &dyn Hooks,
) -> Result<ToolOutput, ToolError> {
    if state.tool_calls >= request.limits.max_tool_calls {
        return Err(ToolError::Refused {
            message: "the limit of tool calls for this response was reached".to_owned(),
        });
    }
    state.tool_calls += 1;
    execute(
        toolbox,
        call,
        context,
        &request.limits,
        hooks,
        &mut state.run,
    )
    .await
}

/// Gives a call's result to the model (what it reads next) and to the run's output.
fn record_call(
    state: &mut State,
    protocol: Protocol,
    call: CallItem,
    output: Result<ToolOutput, ToolError>,
    hooks: &dyn Hooks,
) {
    let observation = observation(&output);
    state.messages.push(match protocol {
        Protocol::Native => ChatMessage {
            tool_call_id: Some(call.call_id.clone()),
            ..ChatMessage::text(Role::Tool, observation)
        },
        Protocol::React => ChatMessage::text(Role::User, format!("Observation: {observation}")),
    });
    let item = Item::ToolCall(CallItem {
        output: Some(output),
        ..call
    });
    hooks.event(Event::ItemDone(&item));
    state.run.items.push(item);
}

/// Takes a call waiting for the client's approval out of the conversation, so that the
/// conversation never holds a call without its result (providers refuse that); the call
/// comes back with its result when the client answers.
fn forget_call(messages: &mut Vec<ChatMessage>, call_id: &str, protocol: Protocol) {
    // The turn's message: the latest assistant one (results of its other calls may follow).
    let Some(index) = messages.iter().rposition(|m| m.role == Role::Assistant) else {
        return;
    };
    let message = &mut messages[index];
    if protocol == Protocol::Native
        && let Some(calls) = &mut message.tool_calls
    {
        calls.retain(|call| call.id != call_id);
        if !calls.is_empty() {
            return;
        }
        message.tool_calls = None;
        if !message.text_content().is_empty() {
            return;
        }
    }
    // A ReAct turn is one thought and one call; a native turn with nothing left is empty.
    messages.remove(index);
}

struct State {
    messages: Vec<ChatMessage>,
    run: Run,
    tool_calls: u32,
}

impl State {
    fn finish(mut self, stopped: StopReason, protocol: Protocol) -> Run {
        if protocol == Protocol::React && !self.messages.is_empty() {
            // The protocol prompt is added afresh to every run.
            self.messages.remove(0);
        }
        self.run.stopped = stopped;
        self.run.messages = self.messages;
        self.run
    }
}

/// Records a native turn's text and returns its tool calls.
fn native_calls(state: &mut State, message: ChatMessage, hooks: &dyn Hooks) -> Vec<CallItem> {
    let text = message.text_content();
    if !text.is_empty() {
        let item = Item::Message { text };
        hooks.event(Event::ItemDone(&item));
        state.run.items.push(item);
    }
    let calls: Vec<CallItem> = message
        .tool_calls
        .iter()
        .flatten()
        .map(|call| CallItem {
            call_id: call.id.clone(),
            name: call.function.name.clone(),
            arguments: call.function.arguments.clone(),
            output: None,
        })
        .collect();
    state.messages.push(ChatMessage {
        extra: Extra::new(),
        ..message
    });
    calls
}

/// Parses a ReAct turn, records its thought or answer, and returns the call it asked for.
fn react_calls(
    state: &mut State,
    message: &ChatMessage,
    step: u32,
    hooks: &dyn Hooks,
) -> Vec<CallItem> {
    let text = message.text_content();
    match react::parse(&text) {
        ReactStep::Final { thought, answer } => {
            push_thought(state, thought, hooks);
            state
                .messages
                .push(ChatMessage::text(Role::Assistant, answer.clone()));
            let item = Item::Message { text: answer };
            hooks.event(Event::ItemDone(&item));
            state.run.items.push(item);
            Vec::new()
        }
        ReactStep::Action {
            thought,
            tool,
            input,
        } => {
            push_thought(state, thought, hooks);
            let cut = text
                .find(react::STOP)
                .map_or(text.as_str(), |at| &text[..at]);
            state
                .messages
                .push(ChatMessage::text(Role::Assistant, cut.trim_end()));
            vec![CallItem {
                call_id: format!("call_react_{step}"),
                name: tool,
                arguments: input,
                output: None,
            }]
        }
    }
}

fn push_thought(state: &mut State, thought: Option<String>, hooks: &dyn Hooks) {
    if let Some(text) = thought {
        let item = Item::Reasoning { text };
        hooks.event(Event::ItemDone(&item));
        state.run.items.push(item);
    }
}

/// Validates, approves, runs and checks one call, and records the step.
async fn execute(
    toolbox: &Toolbox,
    call: &CallItem,
    context: &ToolContext,
    limits: &Limits,
    hooks: &dyn Hooks,
    run: &mut Run,
) -> Result<ToolOutput, ToolError> {
    let started = Instant::now();
    let output = execute_inner(toolbox, call, context, limits, hooks).await;
    let record = StepRecord {
        kind: StepKind::Tool,
        name: call.name.clone(),
        outcome: output.as_ref().map_or_else(ToolError::kind, |_| "ok"),
        elapsed: started.elapsed(),
        usage: None,
    };
    hooks.step(&record);
    run.steps.push(record);
    output
}

async fn execute_inner(
    toolbox: &Toolbox,
    call: &CallItem,
    context: &ToolContext,
    limits: &Limits,
    hooks: &dyn Hooks,
) -> Result<ToolOutput, ToolError> {
    let arguments = toolbox.arguments(&call.name, &call.arguments)?;
    let Some(tool) = toolbox.get(&call.name) else {
        return Err(ToolError::Unknown {
            name: call.name.clone(),
        });
    };
    // An approval may wait; the hook gives up at the deadline, and this bounds one that
    // does not.
    tokio::time::timeout_at(
        (context.deadline + APPROVAL_GRACE).into(),
        hooks.before_call(tool.spec(), &call.call_id, &arguments, context.deadline),
    )
    .await
    .map_err(|_| ToolError::Refused {
        message: "the call was not approved before the response's deadline".to_owned(),
    })??;
    let deadline = (Instant::now() + limits.tool_timeout).min(context.deadline);
    let context = ToolContext {
        deadline,
        ..context.clone()
    };
    let output = tokio::time::timeout_at(deadline.into(), tool.call(arguments, &context))
        .await
        .map_err(|_| ToolError::Timeout {
            timeout_ms: u64::try_from(limits.tool_timeout.as_millis()).unwrap_or(u64::MAX),
        })??;
    match hooks.check_output(tool.spec(), output).await {
        Checked::Pass(output) => Ok(output),
        Checked::Block(error) => Err(error),
    }
}

fn native_tool(spec: &ToolSpec) -> Tool {
    Tool {
        kind: "function".to_owned(),
        function: FunctionDefinition {
            name: spec.name.clone(),
            description: Some(spec.description.clone()),
            parameters: Some(spec.parameters.clone()),
            strict: None,
            extra: Extra::new(),
        },
        extra: Extra::new(),
    }
}

fn client_spec(tool: &Tool) -> ToolSpec {
    ToolSpec {
        name: tool.function.name.clone(),
        description: tool.function.description.clone().unwrap_or_default(),
        parameters: tool
            .function
            .parameters
            .clone()
            .unwrap_or_else(|| serde_json::json!({"type": "object"})),
        sensitive: false,
    }
}

fn add_usage(total: &mut Usage, turn: &Usage) {
    total.prompt_tokens += turn.prompt_tokens;
    total.completion_tokens += turn.completion_tokens;
    total.total_tokens += turn.total_tokens;
}

/// The text the model reads for a call's result.
#[must_use]
pub fn observation(output: &Result<ToolOutput, ToolError>) -> String {
    match output {
        Ok(output) => output.text.clone(),
        Err(error) => format!("error: {error}"),
    }
}
