//! `POST /v1/responses`, `GET` and `DELETE /v1/responses/{id}`: OpenAI's Responses API over
//! the agent loop.
//!
//! A request becomes one run: the input (after the stored conversation of
//! `previous_response_id`) as chat messages, the client's function tools (a call to one ends
//! the run so the client can run it) and Landfall's tools (`file_search`; built-ins), which
//! the loop runs itself. Every model turn is governed and settled on its own
//! ([`model::GovernedModel`]); every step is audited and counted; guardrails check the input,
//! every tool result and the answer. The response — and the conversation it leaves, for the
//! next `previous_response_id` — is stored unless `store` is false.

pub(crate) mod approval;
mod file_search;
pub(crate) mod model;
pub(crate) mod request;
mod transcript;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use landfall_accounting::RequestLog;
use landfall_agents::{
    AgentError, CallItem, Limits, Protocol, Resumed, RunRequest, StopReason, Toolbox,
};
use landfall_config::ToolProtocol;
use landfall_gateway::Operation;
use landfall_governance::Principal;
use landfall_guardrails::Hit;
use landfall_storage::{ResponseRecord, ResponseStore};
use landfall_types::{ChatMessage, ChatRequest, Extra, Role};
use rand::Rng;
use serde_json::{Map, Value, json};

use crate::extract::JsonBody;
use crate::prompts::{self, PromptReference};
use crate::routes::chat::token_usage;
use crate::routes::json_response;
use crate::tools::SERVER_LABEL;
use crate::{ApiError, AppState, guard};
use request::CreateResponse;
use transcript::{ToolKind, Transcript};

/// A new OpenAI-style id: `prefix_` and 32 hex digits.
pub(crate) fn new_id(prefix: &str) -> String {
    format!("{prefix}_{:032x}", rand::rng().random::<u128>())
}

fn invalid(param: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::InvalidValue {
        message: message.into(),
        param,
    }
}

pub(crate) async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(log): Extension<RequestLog>,
    JsonBody(request): JsonBody<CreateResponse>,
) -> Response {
    let stream = request.stream.unwrap_or(false);
    log.model(
        Operation::Chat,
        request.model.as_deref().unwrap_or_default(),
        stream,
    );
    if log.keeps_bodies() {
        log.request_body(&request);
    }
    let job = match prepare(&state, &principal, &log, request).await {
        Ok(job) => job,
        Err(error) => return error.into_response(),
    };
    if stream {
        return streamed(job);
    }
    let transcript = job.transcript(None);
    match job.execute(&job.model(), &transcript).await {
        Ok(response) => {
            let mut reply = json_response(&response);
            guard::header(&mut reply, &job.input_hits);
            reply
        }
        Err(error) => error.into_response(),
    }
}

pub(crate) async fn retrieve(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let record = stored(&state, &principal, &id).await?;
    Ok(json_response(&record.response))
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let Some(store) = state.response_store() else {
        return Err(ApiError::ResponseNotFound { id });
    };
    if !store.delete_response(&principal.tenant.id, &id).await? {
        return Err(ApiError::ResponseNotFound { id });
    }
    Ok(json_response(
        &json!({"id": id, "object": "response", "deleted": true}),
    ))
}

async fn stored(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<ResponseRecord, ApiError> {
    let found = match state.response_store() {
        Some(store) => store.get_response(&principal.tenant.id, id).await?,
        None => None,
    };
    found.ok_or_else(|| ApiError::ResponseNotFound { id: id.to_owned() })
}

/// The call a client's `mcp_approval_response` answers, from the earlier response's
/// `mcp_approval_request`; its id becomes the call's id.
///
/// # Errors
/// No such request is waiting, or this request does not offer the server's tool.
fn resume(
    answer: request::ApprovalAnswer,
    pending: &[Value],
    kinds: &HashMap<String, ToolKind>,
) -> Result<Resumed, ApiError> {
    let asked = pending
        .iter()
        .find(|item| item["id"].as_str() == Some(answer.request_id.as_str()))
        .ok_or_else(|| {
            invalid(
                "input",
                format!(
                    "no approval request `{}` is waiting: answer one of the previous response \
                     or conversation, once",
                    answer.request_id
                ),
            )
        })?;
    let name = asked["name"].as_str().unwrap_or_default();
    let label = asked["server_label"].as_str().unwrap_or_default();
    if kinds.get(name)
        != Some(&ToolKind::Server {
            label: label.to_owned(),
        })
    {
        return Err(invalid(
            "tools",
            format!(
                "approval request `{}` is for `{name}` of MCP server `{label}`: send that mcp \
                 tool again in `tools`",
                answer.request_id
            ),
        ));
    }
    Ok(Resumed {
        call: CallItem {
            call_id: answer.request_id,
            name: name.to_owned(),
            arguments: asked["arguments"].as_str().unwrap_or("{}").to_owned(),
            output: None,
        },
        approved: if answer.approve {
            Ok(())
        } else {
            Err(answer.reason)
        },
    })
}

/// Everything one run needs, owned, so a streamed run can go on in its own task.
struct Job {
    state: AppState,
    principal: Principal,
    log: RequestLog,
    run: RunRequest,
    toolbox: Toolbox,
    kinds: HashMap<String, ToolKind>,
    /// Tool name → `[tools.NAME]` entry, for the calls that wait for approval.
    held: HashMap<String, String>,
    sources: Option<file_search::Sources>,
    include_results: bool,
    guardrails: Option<landfall_guardrails::Selection>,
    input_hits: Vec<Hit>,
    /// Messages at the start of the run that are not part of the conversation (the
    /// request's `instructions`).
    preamble: usize,
    store: Option<Arc<dyn ResponseStore>>,
    /// The response object without its output, status and usage.
    skeleton: Map<String, Value>,
    /// The conversation the run continues, and the input items it adds to it.
    conversation: Option<(String, Vec<Value>)>,
}

async fn prepare(
    state: &AppState,
    principal: &Principal,
    log: &RequestLog,
    request: CreateResponse,
) -> Result<Job, ApiError> {
    let conversation = request
        .conversation
        .as_ref()
        .map(crate::conversations::reference)
        .transpose()?;
    if conversation.is_some() && request.previous_response_id.is_some() {
        return Err(invalid(
            "conversation",
            "send `conversation` or `previous_response_id`, not both",
        ));
    }
    if request.background == Some(true) {
        return Err(invalid(
            "background",
            "background responses are not supported; use `stream` for long runs",
        ));
    }
    if request.stream_options.is_some() && request.stream != Some(true) {
        return Err(invalid(
            "stream_options",
            "`stream_options` is only allowed when `stream` is true",
        ));
    }
    if let Some(truncation) = request.truncation.as_deref()
        && truncation != "disabled"
        && truncation != "auto"
    {
        return Err(invalid(
            "truncation",
            "truncation must be `auto` or `disabled`",
        ));
    }
    for include in &request.include {
        if include != "file_search_call.results" && include != "message.output_text.logprobs" {
            return Err(invalid(
                "include",
                format!("`{include}` cannot be included; supported: file_search_call.results"),
            ));
        }
    }
    let model = request
        .model
        .clone()
        .filter(|model| !model.is_empty())
        .ok_or_else(|| invalid("model", "`model` is required"))?;
    if !state.gateway().has_model(&model) {
        return Err(ApiError::ModelNotFound { model });
    }
    state.governance().authorize_model(principal, &model)?;
    let guardrails = guard::select(state, principal, &model);

    let (input, answers) = request::take_approval_answers(request.input)?;
    let mut input = request::input_messages(input)?;
    let input_hits = match &guardrails {
        Some(selection) => guard::check_messages(selection, &mut input, log)?,
        None => Vec::new(),
    };
    let store = state.response_store();
    let prompt = match request.prompt.clone() {
        Some(value) => Some(
            serde_json::from_value::<PromptReference>(value).map_err(|error| {
                invalid(
                    "prompt",
                    format!("`prompt` must be {{id, version, variables}}: {error}"),
                )
            })?,
        ),
        None => prompts::of_alias(state, &model),
    };
    let mut messages = Vec::new();
    let mut prompt_echo = Value::Null;
    if let Some(reference) = &prompt {
        let resolved =
            prompts::resolve(state, Some(&principal.tenant.id), reference, "prompt").await?;
        messages.extend(resolved.rendered.messages());
        prompt_echo = json!({
            "id": reference.id,
            "version": resolved.version.to_string(),
            "variables": reference.variables,
        });
    }
    if let Some(instructions) = request
        .instructions
        .as_deref()
        .filter(|text| !text.is_empty())
    {
        messages.push(ChatMessage::text(Role::System, instructions));
    }
    let end_user = request
        .safety_identifier
        .clone()
        .or_else(|| request.user.clone())
        .filter(|user| !user.is_empty());
    if let Some(user) = &end_user {
        let query = input
            .iter()
            .rev()
            .find(|message| message.role == Role::User)
            .map(ChatMessage::text_content)
            .unwrap_or_default();
        let caller = crate::knowledge::caller(principal, log);
        // Memories help; a failed recall (the embedder down, say) does not fail the response.
        match crate::memories::recall(state, &caller, user, &query).await {
            Ok(Some(recalled)) => messages.push(ChatMessage::text(Role::System, recalled)),
            Ok(None) => {}
            Err(error) => tracing::warn!(error = %error.detail().message, "memory recall failed"),
        }
    }
    let preamble = messages.len();
    // Calls an earlier response asked the client to approve, not yet answered.
    let mut pending = Vec::new();
    if let Some(previous) = &request.previous_response_id {
        let record = match &store {
            Some(store) => store.get_response(&principal.tenant.id, previous).await?,
            None => None,
        }
        .ok_or_else(|| {
            invalid(
                "previous_response_id",
                format!("previous response `{previous}` not found"),
            )
        })?;
        let history: Vec<ChatMessage> =
            serde_json::from_value(record.conversation).map_err(|error| {
                ApiError::Storage(Box::new(landfall_storage::StoreError::Corrupt {
                    entity: "response",
                    id: previous.clone(),
                    message: error.to_string(),
                }))
            })?;
        messages.extend(crate::conversations::window(state, history, 0));
        pending.extend(
            record.response["output"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|item| item["type"] == "mcp_approval_request")
                .cloned(),
        );
    }
    if let Some(id) = &conversation {
        let newest = crate::conversations::window_items(state);
        let mut history =
            crate::conversations::history(state, &principal.tenant.id, id, newest).await?;
        pending.append(&mut history.pending_approvals);
        messages.extend(history.windowed(state));
    }
    if input.is_empty() && answers.is_empty() && messages.len() == preamble {
        return Err(invalid("input", "`input` must not be empty"));
    }
    let input_items = if conversation.is_some() {
        request::message_items(&input)
    } else {
        Vec::new()
    };
    messages.extend(input);

    // Tools: the client's functions, and the ones Landfall runs.
    let mut client_tools = Vec::new();
    let mut toolbox = Toolbox::new();
    let mut kinds = HashMap::new();
    let mut held = HashMap::new();
    let mut client_approval = HashSet::new();
    let mut sources = None;
    for tool in &request.tools {
        match tool.get("type").and_then(Value::as_str) {
            Some("function") => client_tools.push(request::function_tool(tool)?),
            Some("file_search") => {
                if kinds.contains_key(file_search::NAME) {
                    return Err(invalid("tools", "only one file_search tool is allowed"));
                }
                let search = file_search::FileSearch::build(
                    state,
                    principal,
                    log,
                    guardrails.as_ref(),
                    tool,
                )
                .await?;
                sources = Some(search.sources.clone());
                toolbox
                    .add(Arc::new(search))
                    .map_err(|message| invalid("tools", message))?;
                kinds.insert(file_search::NAME.to_owned(), ToolKind::FileSearch);
            }
            Some("landfall") => {
                let name = tool.get("name").and_then(Value::as_str).ok_or_else(|| {
                    invalid(
                        "tools",
                        "a `landfall` tool needs the `name` of a [tools] entry",
                    )
                })?;
                let routes = state.routes();
                let entry = routes
                    .tools
                    .get(name)
                    .filter(|entry| {
                        entry.allows_tenant(&principal.tenant.id) && principal.may_use_tool(name)
                    })
                    .ok_or_else(|| {
                        invalid(
                            "tools",
                            format!("there is no tool `{name}` available to this key"),
                        )
                    })?;
                let built =
                    entry
                        .all_tools()
                        .await
                        .map_err(|message| ApiError::ToolServerUnavailable {
                            name: name.to_owned(),
                            message,
                        })?;
                let hold = entry.require_approval.then_some(name);
                add_server_tools(
                    &mut toolbox,
                    &mut kinds,
                    &mut held,
                    built,
                    SERVER_LABEL,
                    hold,
                )?;
            }
            Some("memory") => {
                let user = end_user.clone().ok_or_else(|| {
                    invalid(
                        "tools",
                        "the memory tool saves facts about the end user: send `user`",
                    )
                })?;
                let caller = crate::knowledge::caller(principal, log);
                let remember = crate::memories::Remember::new(state.clone(), caller, user);
                add_server_tools(
                    &mut toolbox,
                    &mut kinds,
                    &mut held,
                    vec![Arc::new(remember)],
                    "memory",
                    None,
                )?;
            }
            Some("mcp") => {
                let allow_private = &state.routes().config.agents.mcp_allow_private;
                let (server, approval) = request::mcp_server(tool, allow_private)?;
                let label = server.label().to_owned();
                if !principal.may_use_tool(&label) {
                    return Err(invalid(
                        "tools",
                        format!("this key may not use the MCP server `{label}`"),
                    ));
                }
                let built =
                    server
                        .tools()
                        .await
                        .map_err(|message| ApiError::ToolServerUnavailable {
                            name: label.clone(),
                            message,
                        })?;
                client_approval.extend(
                    built
                        .iter()
                        .map(|tool| tool.spec().name.clone())
                        .filter(|name| approval.needed(name)),
                );
                add_server_tools(&mut toolbox, &mut kinds, &mut held, built, &label, None)?;
            }
            Some(other) => {
                return Err(invalid(
                    "tools",
                    format!("tools of type `{other}` are not supported"),
                ));
            }
            None => return Err(invalid("tools", "every tool needs a `type`")),
        }
    }
    if let Some(tool) = held.keys().next()
        && state.response_store().is_none()
    {
        return Err(ApiError::from(landfall_storage::StoreError::Unavailable(
            format!(
                "tool `{tool}` waits for approval, and this server has no store to hold approvals"
            ),
        )));
    }
    if let Some(clash) = client_tools
        .iter()
        .find(|tool| toolbox.get(&tool.function.name).is_some())
    {
        return Err(invalid(
            "tools",
            format!(
                "function tool `{}` has the name of a Landfall tool; rename it",
                clash.function.name
            ),
        ));
    }

    let resumed = answers
        .into_iter()
        .map(|answer| resume(answer, &pending, &kinds))
        .collect::<Result<Vec<_>, _>>()?;

    let mut extra = Extra::new();
    if let Some(text) = &request.text
        && let Some(format) = request::response_format(text)?
    {
        extra.insert("response_format".to_owned(), format);
    }
    if let Some(parallel) = request.parallel_tool_calls
        && !(client_tools.is_empty() && toolbox.is_empty())
    {
        extra.insert("parallel_tool_calls".to_owned(), Value::Bool(parallel));
    }
    if let Some(user) = request.safety_identifier.as_ref().or(request.user.as_ref()) {
        extra.insert("user".to_owned(), Value::from(user.as_str()));
    }
    let tool_choice = request
        .tool_choice
        .as_ref()
        .map(request::tool_choice)
        .transpose()?;
    let routes = state.routes();
    let agents = &routes.config.agents;
    let protocol = match routes.config.models.get(&model).map(|m| m.tool_protocol) {
        Some(ToolProtocol::React) => Protocol::React,
        _ => Protocol::Native,
    };
    let limits = Limits {
        max_steps: agents.max_steps,
        max_tool_calls: request
            .max_tool_calls
            .map_or(agents.max_tool_calls, |max| max.min(agents.max_tool_calls)),
        tool_timeout: Duration::from_millis(agents.tool_timeout_ms),
        deadline: Duration::from_millis(agents.deadline_ms),
    };
    let id = new_id("resp");
    let store_requested = request.store.unwrap_or(true);
    let skeleton = json!({
        "id": id,
        "object": "response",
        "created_at": landfall_storage::now_millis().div_euclid(1000),
        "error": null,
        "incomplete_details": null,
        "instructions": request.instructions,
        "max_output_tokens": request.max_output_tokens,
        "max_tool_calls": request.max_tool_calls,
        "model": model,
        "parallel_tool_calls": request.parallel_tool_calls.unwrap_or(true),
        "previous_response_id": request.previous_response_id,
        "prompt": prompt_echo,
        "conversation": conversation.as_ref().map(|id| json!({"id": id})),
        "reasoning": request.reasoning.unwrap_or(json!({"effort": null, "summary": null})),
        "store": store_requested && store.is_some(),
        "temperature": request.temperature.unwrap_or(1.0),
        "text": request.text.unwrap_or(json!({"format": {"type": "text"}})),
        "tool_choice": request.tool_choice.unwrap_or(json!("auto")),
        "tools": request.tools,
        "top_p": request.top_p.unwrap_or(1.0),
        "truncation": request.truncation.unwrap_or_else(|| "disabled".to_owned()),
        "user": request.user,
        "metadata": request.metadata.unwrap_or_default(),
    });
    let Value::Object(skeleton) = skeleton else {
        return Err(invalid(
            "input",
            "unreachable: the response skeleton is an object",
        ));
    };
    let stream = request.stream == Some(true);
    let chat = ChatRequest {
        model,
        messages,
        stream: None,
        stream_options: None,
        max_tokens: request.max_output_tokens,
        max_completion_tokens: None,
        temperature: request.temperature,
        top_p: request.top_p,
        stop: None,
        tools: (!client_tools.is_empty()).then_some(client_tools),
        tool_choice,
        extra,
    };
    let transcript_streams_text = !guardrails
        .as_ref()
        .is_some_and(|selection| selection.applies(landfall_guardrails::Stage::Output));
    Ok(Job {
        run: RunRequest {
            chat,
            protocol,
            limits,
            stream: stream && transcript_streams_text,
            tenant_id: principal.tenant.id.clone(),
            key_id: principal.key_id().to_owned(),
            request_id: log.request_id().to_owned(),
            client_approval,
            resumed,
        },
        state: state.clone(),
        principal: principal.clone(),
        log: log.clone(),
        toolbox,
        kinds,
        held,
        sources,
        include_results: request
            .include
            .iter()
            .any(|include| include == "file_search_call.results"),
        guardrails,
        input_hits,
        preamble,
        store: store.filter(|_| store_requested),
        skeleton,
        conversation: conversation.map(|id| (id, input_items)),
    })
}

impl Job {
    fn transcript(&self, events: Option<tokio::sync::mpsc::UnboundedSender<Bytes>>) -> Transcript {
        Transcript::new(
            self.log.clone(),
            self.guardrails.clone(),
            self.kinds.clone(),
            self.sources.clone(),
            self.include_results,
            events,
        )
        .with_approvals(self.approvals())
        .with_resumed(
            self.run
                .resumed
                .iter()
                .map(|resumed| resumed.call.call_id.clone())
                .collect(),
        )
    }

    /// The approval wait of the tools that need one; `None` when none do.
    fn approvals(&self) -> Option<approval::Approvals> {
        if self.held.is_empty() {
            return None;
        }
        Some(approval::Approvals {
            store: self.state.response_store()?,
            entries: self.held.clone(),
            tenant_id: self.principal.tenant.id.clone(),
            key_id: self.principal.key_id().to_owned(),
            request_id: self.log.request_id().to_owned(),
        })
    }

    /// The response object in progress, before any output.
    fn in_progress(&self) -> Value {
        let mut response = self.skeleton.clone();
        response.insert("status".to_owned(), json!("in_progress"));
        response.insert("output".to_owned(), json!([]));
        response.insert("usage".to_owned(), Value::Null);
        Value::Object(response)
    }

    fn model(&self) -> model::GovernedModel {
        model::GovernedModel::new(self.state.clone(), self.principal.clone(), self.log.clone())
    }

    /// Runs the loop, records its usage, stores the response, and returns it.
    async fn execute(
        &self,
        model: &model::GovernedModel,
        transcript: &Transcript,
    ) -> Result<Value, ApiError> {
        let outcome =
            landfall_agents::run(model, &self.toolbox, self.run.clone(), transcript).await;
        let (usage, reported) = model.usage();
        self.log.usage(token_usage(&usage, reported));
        let run = match outcome {
            Ok(run) => run,
            Err(AgentError::Model { message, .. }) => {
                return Err(model
                    .take_failure()
                    .unwrap_or(ApiError::AgentFailed { message }));
            }
            Err(AgentError::Invalid { message }) => return Err(invalid("tools", message)),
            Err(AgentError::Deadline { deadline_ms }) => {
                return Err(ApiError::AgentFailed {
                    message: format!("the response took longer than {deadline_ms} ms"),
                });
            }
        };
        let (output, output_hits, blocked) = transcript.finish();
        if let Some(error) = blocked {
            return Err(error);
        }
        let mut response = self.skeleton.clone();
        let (status, incomplete) = match run.stopped {
            StopReason::Answered | StopReason::ClientTools => ("completed", Value::Null),
            StopReason::StepLimit => ("incomplete", json!({"reason": "max_steps"})),
            StopReason::Deadline => ("incomplete", json!({"reason": "deadline"})),
        };
        response.insert("status".to_owned(), json!(status));
        response.insert("incomplete_details".to_owned(), incomplete);
        response.insert("output".to_owned(), Value::Array(output));
        response.insert(
            "usage".to_owned(),
            json!({
                "input_tokens": usage.input_tokens,
                "input_tokens_details": {"cached_tokens": usage.cached_input_tokens},
                "output_tokens": usage.output_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": usage.input_tokens + usage.output_tokens,
            }),
        );
        let mut hits = self.input_hits.clone();
        hits.extend(output_hits);
        if !hits.is_empty() {
            response.insert(
                "landfall_guardrails".to_owned(),
                serde_json::to_value(&hits).unwrap_or(Value::Null),
            );
        }
        let response = Value::Object(response);
        if let Some((id, input)) = &self.conversation {
            let mut items = input.clone();
            items.extend(response["output"].as_array().into_iter().flatten().cloned());
            crate::conversations::append(&self.state, &self.principal.tenant.id, id, items).await?;
        }
        if self.log.keeps_bodies()
            && let Ok(text) = serde_json::to_string(&response)
        {
            self.log.response_text(&text);
        }
        if let Some(store) = &self.store {
            let conversation: Vec<&ChatMessage> = run.messages.iter().skip(self.preamble).collect();
            let record = ResponseRecord {
                id: self.skeleton["id"].as_str().unwrap_or_default().to_owned(),
                tenant_id: self.principal.tenant.id.clone(),
                key_id: self.principal.key_id().to_owned(),
                model: self.run.chat.model.clone(),
                previous_response_id: self.skeleton["previous_response_id"]
                    .as_str()
                    .map(str::to_owned),
                response: response.clone(),
                conversation: serde_json::to_value(conversation).unwrap_or(Value::Null),
                created_at: landfall_storage::now_millis(),
            };
            store.save_response(&record).await?;
        }
        Ok(response)
    }
}

/// A streamed response: `response.created` and `response.in_progress` at once, the run's
/// events as they happen, then `response.completed` (or `incomplete`), or `error` and
/// `response.failed`. The run is its own task, aborted when the client goes away.
fn streamed(job: Job) -> Response {
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    let transcript = job.transcript(Some(sender));
    let model = Arc::new(job.model());
    job.log.stream_started();
    let log = job.log.clone();
    let run_model = model.clone();
    let task = tokio::spawn(async move {
        let created = job.in_progress();
        transcript.emit("response.created", json!({"response": created}));
        transcript.emit("response.in_progress", json!({"response": created}));
        let outcome = match job.execute(&run_model, &transcript).await {
            Ok(response) => {
                let kind = if response["status"] == "completed" {
                    "response.completed"
                } else {
                    "response.incomplete"
                };
                transcript.emit(kind, json!({"response": response}));
                "completed"
            }
            Err(error) => {
                let detail = error.detail();
                transcript.emit(
                    "error",
                    json!({"code": detail.code, "message": detail.message, "param": detail.param}),
                );
                let mut failed = job.in_progress();
                failed["status"] = json!("failed");
                failed["error"] = json!({
                    "code": detail.code.unwrap_or(detail.kind),
                    "message": detail.message,
                });
                transcript.emit("response.failed", json!({"response": failed}));
                "broken"
            }
        };
        let (usage, reported) = run_model.usage();
        job.log.stream_ended(token_usage(&usage, reported), outcome);
    });
    let guard = RunGuard {
        task: task.abort_handle(),
        model,
        log,
    };
    let events = futures::stream::unfold((receiver, guard), |(mut receiver, guard)| async move {
        let bytes = receiver.recv().await?;
        Some((Ok::<_, std::convert::Infallible>(bytes), (receiver, guard)))
    });
    crate::sse::event_stream(Body::from_stream(events))
}

/// Held by a streamed response's body: when the client goes away before the run ends, the
/// run is stopped and its record finished as abandoned, with what its turns settled.
struct RunGuard {
    task: tokio::task::AbortHandle,
    model: Arc<model::GovernedModel>,
    log: RequestLog,
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        if !self.task.is_finished() {
            self.task.abort();
            let (usage, reported) = self.model.usage();
            self.log
                .stream_ended(token_usage(&usage, reported), "abandoned");
        }
    }
}

/// Adds the tools of a `[tools]` entry or an MCP server to the run, each shown as an
/// `mcp_call` item under `label`; `hold` is the entry whose calls wait for approval.
fn add_server_tools(
    toolbox: &mut Toolbox,
    kinds: &mut HashMap<String, ToolKind>,
    held: &mut HashMap<String, String>,
    tools: Vec<Arc<dyn landfall_agents::Tool>>,
    label: &str,
    hold: Option<&str>,
) -> Result<(), ApiError> {
    for tool in tools {
        let name = tool.spec().name.clone();
        if kinds.contains_key(&name) {
            return Err(invalid("tools", format!("tool `{name}` is listed twice")));
        }
        toolbox
            .add(tool)
            .map_err(|message| invalid("tools", message))?;
        if let Some(entry) = hold {
            held.insert(name.clone(), entry.to_owned());
        }
        kinds.insert(
            name,
            ToolKind::Server {
                label: label.to_owned(),
            },
        );
    }
    Ok(())
}
