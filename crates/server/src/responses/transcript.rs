//! What a run shows the client: the response's output items, built step by step from the
//! loop's hooks, and — for a streamed response — the documented server-sent events
//! (`response.output_item.added`, `response.output_text.delta`, … each with its
//! `sequence_number`) as they happen. Tool results pass the tool-stage guardrails here, and
//! answer text the output stage.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use landfall_accounting::{AgentStep, RequestLog};
use landfall_agents::{
    CallItem, Checked, Event, Hooks, Item, StepRecord, ToolError, ToolOutput, ToolSpec,
};
use landfall_guardrails::{Hit, Selection, Stage};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc::UnboundedSender;

use super::approval::Approvals;
use super::file_search::{self, Sources};
use super::new_id;
use crate::ApiError;
use crate::tools::SERVER_LABEL;

/// What kind of Landfall-run tool a name is, for the item it shows as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ToolKind {
    FileSearch,
    /// A built-in or MCP tool: an `mcp_call` item with this server label.
    Server {
        label: String,
    },
}

pub(crate) struct Transcript {
    log: RequestLog,
    guardrails: Option<Selection>,
    kinds: HashMap<String, ToolKind>,
    sources: Option<Sources>,
    /// `file_search_call` items carry their results.
    include_results: bool,
    /// Calls of these tools wait for a person's approval.
    approvals: Option<Approvals>,
    /// Calls the client approved or rejected (by approval request id, which is their call id).
    resumed: HashSet<String>,
    inner: Mutex<State>,
}

#[derive(Default)]
struct State {
    items: Vec<Value>,
    /// The message being streamed: its output index and id.
    open_message: Option<(usize, String)>,
    /// Server tool calls started and not done: call id → output index.
    open_calls: HashMap<String, usize>,
    /// Calls that waited for a person: call id → approval id.
    approval_ids: HashMap<String, String>,
    sequence: u64,
    events: Option<UnboundedSender<Bytes>>,
    /// A live output rule blocked the answer.
    blocked: Option<ApiError>,
    hits: Vec<Hit>,
}

impl Transcript {
    pub(crate) fn new(
        log: RequestLog,
        guardrails: Option<Selection>,
        kinds: HashMap<String, ToolKind>,
        sources: Option<Sources>,
        include_results: bool,
        events: Option<UnboundedSender<Bytes>>,
    ) -> Self {
        Self {
            log,
            guardrails,
            kinds,
            sources,
            include_results,
            approvals: None,
            resumed: HashSet::new(),
            inner: Mutex::new(State {
                events,
                ..State::default()
            }),
        }
    }

    pub(crate) fn with_approvals(mut self, approvals: Option<Approvals>) -> Self {
        self.approvals = approvals;
        self
    }

    pub(crate) fn with_resumed(mut self, resumed: HashSet<String>) -> Self {
        self.resumed = resumed;
        self
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends one event (streamed responses only).
    pub(crate) fn emit(&self, kind: &str, fields: Value) {
        self.state().emit(kind, fields);
    }

    /// The output items, the output-stage hits, and the block that stopped the answer.
    pub(crate) fn finish(&self) -> (Vec<Value>, Vec<Hit>, Option<ApiError>) {
        let mut state = self.state();
        (
            std::mem::take(&mut state.items),
            std::mem::take(&mut state.hits),
            state.blocked.take(),
        )
    }

    fn message_done(&self, text: &str) {
        let mut text = text.to_owned();
        if let Some(selection) = &self.guardrails {
            let checked = crate::guard::check_texts(
                selection,
                Stage::Output,
                std::iter::once(&mut text),
                &self.log,
            );
            match checked {
                Ok(hits) => self.state().hits.extend(hits),
                Err(error) => {
                    let mut state = self.state();
                    state.blocked.get_or_insert(error);
                    return;
                }
            }
        }
        let annotations = match &self.sources {
            Some(sources) => file_search::annotations(
                &text,
                &sources.lock().unwrap_or_else(PoisonError::into_inner),
            ),
            None => Vec::new(),
        };
        let mut state = self.state();
        let (index, id) = match state.open_message.take() {
            Some(open) => open,
            None => {
                let id = new_id("msg");
                let index = state.items.len();
                state.items.push(Value::Null);
                state.emit(
                    "response.output_item.added",
                    json!({"output_index": index, "item": message_item(&id, "in_progress", "", &[])}),
                );
                state.emit(
                    "response.content_part.added",
                    json!({
                        "item_id": id, "output_index": index, "content_index": 0,
                        "part": text_part("", &[]),
                    }),
                );
                state.emit(
                    "response.output_text.delta",
                    json!({
                        "item_id": id, "output_index": index, "content_index": 0,
                        "delta": text, "logprobs": [],
                    }),
                );
                (index, id)
            }
        };
        for (position, annotation) in annotations.iter().enumerate() {
            state.emit(
                "response.output_text.annotation.added",
                json!({
                    "item_id": id, "output_index": index, "content_index": 0,
                    "annotation_index": position, "annotation": annotation,
                }),
            );
        }
        state.emit(
            "response.output_text.done",
            json!({"item_id": id, "output_index": index, "content_index": 0, "text": text, "logprobs": []}),
        );
        state.emit(
            "response.content_part.done",
            json!({
                "item_id": id, "output_index": index, "content_index": 0,
                "part": text_part(&text, &annotations),
            }),
        );
        let item = message_item(&id, "completed", &text, &annotations);
        state.emit(
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        );
        state.items[index] = item;
    }

    fn text_delta(&self, delta: &str) {
        let mut state = self.state();
        let (index, id) = match &state.open_message {
            Some((index, id)) => (*index, id.clone()),
            None => {
                let id = new_id("msg");
                let index = state.items.len();
                state.items.push(Value::Null);
                state.open_message = Some((index, id.clone()));
                state.emit(
                    "response.output_item.added",
                    json!({"output_index": index, "item": message_item(&id, "in_progress", "", &[])}),
                );
                state.emit(
                    "response.content_part.added",
                    json!({
                        "item_id": id, "output_index": index, "content_index": 0,
                        "part": text_part("", &[]),
                    }),
                );
                (index, id)
            }
        };
        state.emit(
            "response.output_text.delta",
            json!({
                "item_id": id, "output_index": index, "content_index": 0,
                "delta": delta, "logprobs": [],
            }),
        );
    }

    fn reasoning_done(&self, text: &str) {
        let mut state = self.state();
        let index = state.items.len();
        let item = json!({
            "type": "reasoning", "id": new_id("rs"),
            "summary": [{"type": "summary_text", "text": text}],
        });
        state.emit(
            "response.output_item.added",
            json!({"output_index": index, "item": item}),
        );
        state.emit(
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        );
        state.items.push(item);
    }

    fn call_started(&self, call: &CallItem) {
        let Some(kind) = self.kinds.get(&call.name) else {
            return;
        };
        let mut state = self.state();
        let index = state.items.len();
        let item = self.server_call_item(kind, call, &new_id(kind.prefix()));
        let id = item["id"].clone();
        state.emit(
            "response.output_item.added",
            json!({"output_index": index, "item": item}),
        );
        match kind {
            ToolKind::FileSearch => {
                for event in [
                    "response.file_search_call.in_progress",
                    "response.file_search_call.searching",
                ] {
                    state.emit(event, json!({"output_index": index, "item_id": id}));
                }
            }
            ToolKind::Server { .. } => {
                state.emit(
                    "response.mcp_call.in_progress",
                    json!({"output_index": index, "item_id": id}),
                );
                state.emit(
                    "response.mcp_call_arguments.done",
                    json!({"output_index": index, "item_id": id, "arguments": call.arguments}),
                );
            }
        }
        state.items.push(item);
        state.open_calls.insert(call.call_id.clone(), index);
    }

    fn call_done(&self, call: &CallItem) {
        let mut state = self.state();
        let Some(kind) = self.kinds.get(&call.name).filter(|_| call.output.is_some()) else {
            // A client's function call: the client runs it.
            let index = state.items.len();
            let id = new_id("fc");
            let item = json!({
                "type": "function_call", "id": id, "call_id": call.call_id,
                "name": call.name, "arguments": call.arguments, "status": "completed",
            });
            state.emit(
                "response.output_item.added",
                json!({"output_index": index, "item": {
                    "type": "function_call", "id": id, "call_id": call.call_id,
                    "name": call.name, "arguments": "", "status": "in_progress",
                }}),
            );
            state.emit(
                "response.function_call_arguments.delta",
                json!({"output_index": index, "item_id": id, "delta": call.arguments}),
            );
            state.emit("response.function_call_arguments.done", json!({
                "output_index": index, "item_id": id, "name": call.name, "arguments": call.arguments,
            }));
            state.emit(
                "response.output_item.done",
                json!({"output_index": index, "item": item}),
            );
            state.items.push(item);
            return;
        };
        let Some(index) = state.open_calls.remove(&call.call_id) else {
            return;
        };
        let id = state.items[index]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let mut item = self.server_call_item(kind, call, &id);
        if let Some(approval) = state.approval_ids.get(&call.call_id) {
            item["approval_request_id"] = Value::from(approval.as_str());
        } else if self.resumed.contains(&call.call_id) {
            item["approval_request_id"] = Value::from(call.call_id.as_str());
        }
        let failed = matches!(call.output, Some(Err(_)));
        let event = match (kind, failed) {
            (ToolKind::FileSearch, _) => "response.file_search_call.completed",
            (ToolKind::Server { .. }, false) => "response.mcp_call.completed",
            (ToolKind::Server { .. }, true) => "response.mcp_call.failed",
        };
        state.emit(event, json!({"output_index": index, "item_id": id}));
        state.emit(
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        );
        state.items[index] = item;
    }

    /// A call the client must approve: an `mcp_approval_request` item, whose id the client's
    /// `mcp_approval_response` names.
    fn approval_requested(&self, call: &CallItem) {
        let label = match self.kinds.get(&call.name) {
            Some(ToolKind::Server { label }) => label.clone(),
            _ => SERVER_LABEL.to_owned(),
        };
        let mut state = self.state();
        let index = state.items.len();
        let item = json!({
            "type": "mcp_approval_request", "id": new_id("mcpr"), "server_label": label,
            "name": call.name, "arguments": call.arguments,
        });
        for event in ["response.output_item.added", "response.output_item.done"] {
            state.emit(event, json!({"output_index": index, "item": item}));
        }
        state.items.push(item);
    }

    /// A server tool call's item: in progress until the call has an output.
    fn server_call_item(&self, kind: &ToolKind, call: &CallItem, id: &str) -> Value {
        let (output, error) = match &call.output {
            None => (None, None),
            Some(Ok(output)) => (Some(output), None),
            Some(Err(error)) => (None, Some(error.to_string())),
        };
        let status = match (&call.output, error.is_some()) {
            (None, _) => "in_progress",
            (Some(_), true) => "failed",
            (Some(_), false) => "completed",
        };
        match kind {
            ToolKind::FileSearch => {
                let data = output.and_then(|output| output.data.as_ref());
                let queries = data
                    .and_then(|data| data.get("queries").cloned())
                    .or_else(|| {
                        serde_json::from_str::<Value>(&call.arguments)
                            .ok()
                            .and_then(|arguments| arguments.get("query").cloned())
                            .map(|query| json!([query]))
                    })
                    .unwrap_or(json!([]));
                let results = data
                    .filter(|_| self.include_results)
                    .and_then(|data| data.get("results").cloned());
                let status = if status == "in_progress" {
                    "searching"
                } else {
                    status
                };
                json!({
                    "type": "file_search_call", "id": id, "status": status,
                    "queries": queries, "results": results,
                })
            }
            ToolKind::Server { label } => json!({
                "type": "mcp_call", "id": id, "server_label": label, "name": call.name,
                "arguments": call.arguments,
                "output": output.map(|output| output.text.clone()),
                "error": error, "status": status,
            }),
        }
    }
}

impl ToolKind {
    fn prefix(&self) -> &'static str {
        match self {
            Self::FileSearch => "fs",
            Self::Server { .. } => "mcp",
        }
    }
}

impl State {
    fn emit(&mut self, kind: &str, fields: Value) {
        let Some(events) = &self.events else { return };
        let mut event = Map::new();
        event.insert("type".to_owned(), Value::from(kind));
        event.insert("sequence_number".to_owned(), Value::from(self.sequence));
        if let Value::Object(fields) = fields {
            event.extend(fields);
        }
        self.sequence += 1;
        let mut bytes = Vec::with_capacity(256);
        bytes.extend_from_slice(b"event: ");
        bytes.extend_from_slice(kind.as_bytes());
        bytes.extend_from_slice(b"\ndata: ");
        if serde_json::to_writer(&mut bytes, &event).is_err() {
            return;
        }
        bytes.extend_from_slice(b"\n\n");
        // A closed channel means the client left; the run ends when its task is aborted.
        let _ = events.send(Bytes::from(bytes));
    }
}

fn text_part(text: &str, annotations: &[Value]) -> Value {
    json!({"type": "output_text", "text": text, "annotations": annotations, "logprobs": []})
}

fn message_item(id: &str, status: &str, text: &str, annotations: &[Value]) -> Value {
    let content = if status == "in_progress" {
        json!([])
    } else {
        json!([text_part(text, annotations)])
    };
    json!({
        "type": "message", "id": id, "status": status, "role": "assistant", "content": content,
    })
}

#[async_trait]
impl Hooks for Transcript {
    fn event(&self, event: Event<'_>) {
        match event {
            Event::TextDelta(delta) => self.text_delta(delta),
            Event::ItemDone(Item::Message { text }) => self.message_done(text),
            Event::ItemDone(Item::Reasoning { text }) => self.reasoning_done(text),
            Event::ItemDone(Item::ToolCall(call)) => self.call_done(call),
            Event::ItemDone(Item::ApprovalRequest(call)) => self.approval_requested(call),
            Event::CallStarted(call) => self.call_started(call),
        }
    }

    fn step(&self, record: &StepRecord) {
        self.log.agent_step(AgentStep {
            kind: record.kind.as_str(),
            name: record.name.clone(),
            outcome: record.outcome,
            elapsed_us: u64::try_from(record.elapsed.as_micros()).unwrap_or(u64::MAX),
            input_tokens: record.usage.as_ref().map(|usage| usage.prompt_tokens),
            output_tokens: record.usage.as_ref().map(|usage| usage.completion_tokens),
        });
    }

    async fn before_call(
        &self,
        spec: &ToolSpec,
        call_id: &str,
        arguments: &Value,
        deadline: Instant,
    ) -> Result<(), ToolError> {
        let Some(approvals) = &self.approvals else {
            return Ok(());
        };
        let Some(entry) = approvals.entry(&spec.name) else {
            return Ok(());
        };
        approvals
            .wait(&spec.name, entry, arguments, deadline, |approval| {
                self.state()
                    .approval_ids
                    .insert(call_id.to_owned(), approval.to_owned());
            })
            .await
    }

    async fn check_output(&self, _spec: &ToolSpec, mut output: ToolOutput) -> Checked {
        let Some(selection) = &self.guardrails else {
            return Checked::Pass(output);
        };
        match crate::guard::check_texts(
            selection,
            Stage::Tool,
            std::iter::once(&mut output.text),
            &self.log,
        ) {
            Ok(_) => Checked::Pass(output),
            Err(ApiError::Blocked { message, .. }) => Checked::Block(ToolError::Refused {
                message: format!("the tool's result was withheld by a guardrail: {message}"),
            }),
            Err(error) => Checked::Block(ToolError::failed(format!("{error:?}"))),
        }
    }
}
