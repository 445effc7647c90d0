//! The agent loop's model: every turn goes through shedding, the caller's limits and budgets,
//! the gateway (routing, retries, fallback) and settlement with its exact usage.

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use futures::StreamExt;
use landfall_accounting::RequestLog;
use landfall_agents::{AgentError, Model, ModelTurn, OnText};
use landfall_gateway::{Gateway, GatewayError};
use landfall_governance::{Principal, Shed, Usage};
use landfall_types::{
    ChatMessage, ChatRequest, FunctionCall, MessageContent, Role, ToolCall, Usage as TokenCounts,
};

use crate::{ApiError, AppState};

pub(crate) struct GovernedModel {
    pub(crate) state: AppState,
    pub(crate) principal: Principal,
    pub(crate) log: RequestLog,
    pub(crate) gateway: Arc<Gateway>,
    totals: Mutex<Totals>,
}

#[derive(Default)]
struct Totals {
    /// What every turn settled, added up.
    usage: Usage,
    /// Whether every turn's usage was reported by its upstream.
    reported: bool,
    turns: u32,
    /// The error that ended the run, kept with its status for the client.
    failure: Option<ApiError>,
}

/// Why a turn failed, for the loop (the client gets the [`ApiError`] kept beside it).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TurnFailed(String);

impl GovernedModel {
    pub(crate) fn new(state: AppState, principal: Principal, log: RequestLog) -> Self {
        Self {
            gateway: state.gateway(),
            state,
            principal,
            log,
            totals: Mutex::new(Totals {
                reported: true,
                ..Totals::default()
            }),
        }
    }

    fn totals(&self) -> std::sync::MutexGuard<'_, Totals> {
        self.totals.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The settled usage of every turn, and whether the upstreams reported all of it.
    pub(crate) fn usage(&self) -> (Usage, bool) {
        let totals = self.totals();
        (totals.usage, totals.reported && totals.turns > 0)
    }

    /// The error of the failed turn.
    pub(crate) fn take_failure(&self) -> Option<ApiError> {
        self.totals().failure.take()
    }

    async fn turn(
        &self,
        mut request: ChatRequest,
        deltas: Option<&OnText<'_>>,
    ) -> Result<ModelTurn, ApiError> {
        let governance = self.state.governance();
        if let Some(Shed::Capped(bound)) = governance.shed(&mut request)? {
            self.log.shed_capped(bound);
        }
        let demand =
            governance.chat_demand(&request, self.gateway.reservation_price(&request.model));
        let estimate = demand.prompt_tokens;
        let admission = governance.admit(&self.principal, &demand).await?;
        let (message, counts, served) = match deltas {
            Some(deltas) => {
                request.stream = Some(true);
                let served = match self.gateway.chat_stream(&request).await {
                    Ok(served) => served,
                    Err(error) => {
                        admission.settle("failed", Usage::failed()).await;
                        return Err(error.into());
                    }
                };
                self.log
                    .served(&served.target, served.attempts, served.upstream);
                let mut turn = StreamedTurn::default();
                let mut stream = served.value;
                while let Some(chunk) = stream.next().await {
                    match chunk {
                        Ok(chunk) => turn.add(&chunk, deltas),
                        Err(error) => {
                            let usage = Usage {
                                input_tokens: estimate,
                                ..Usage::default()
                            };
                            admission.settle(&served.target, usage).await;
                            return Err(GatewayError::Upstream {
                                model: request.model.clone(),
                                target: served.target.clone(),
                                attempts: served.attempts,
                                error,
                            }
                            .into());
                        }
                    }
                }
                let (message, counts) = turn.finish();
                (message, counts, (served.target, served.price))
            }
            None => {
                let served = match self.gateway.chat(&request).await {
                    Ok(served) => served,
                    Err(error) => {
                        admission.settle("failed", Usage::failed()).await;
                        return Err(error.into());
                    }
                };
                self.log
                    .served(&served.target, served.attempts, served.upstream);
                let mut response = served.value;
                let message = if response.choices.is_empty() {
                    ChatMessage::text(Role::Assistant, "")
                } else {
                    response.choices.swap_remove(0).message
                };
                (message, response.usage, (served.target, served.price))
            }
        };
        let (target, price) = served;
        let usage = counts.as_ref().map_or_else(
            || Usage {
                input_tokens: estimate,
                ..Usage::default()
            },
            |counts| Usage::priced(counts, price),
        );
        admission.settle(&target, usage).await;
        {
            let mut totals = self.totals();
            totals.turns += 1;
            totals.reported &= counts.is_some();
            totals.usage.input_tokens += usage.input_tokens;
            totals.usage.cached_input_tokens += usage.cached_input_tokens;
            totals.usage.output_tokens += usage.output_tokens;
            totals.usage.cost_nanos += usage.cost_nanos;
        }
        Ok(ModelTurn {
            message,
            usage: counts.unwrap_or_else(|| TokenCounts {
                prompt_tokens: usage.input_tokens,
                completion_tokens: 0,
                total_tokens: usage.input_tokens,
                extra: landfall_types::Extra::new(),
            }),
            target,
        })
    }
}

#[async_trait]
impl Model for GovernedModel {
    async fn complete(
        &self,
        request: ChatRequest,
        deltas: Option<&OnText<'_>>,
    ) -> Result<ModelTurn, AgentError> {
        match self.turn(request, deltas).await {
            Ok(turn) => Ok(turn),
            Err(error) => {
                let message = format!("{error:?}");
                self.totals().failure = Some(error);
                Err(AgentError::model(TurnFailed(message)))
            }
        }
    }
}

/// A streamed answer put back together: its text (reported as it arrives), its tool calls
/// by index, and the usage of its last chunk.
#[derive(Default)]
struct StreamedTurn {
    text: String,
    calls: Vec<ToolCall>,
    usage: Option<TokenCounts>,
}

impl StreamedTurn {
    fn add(&mut self, chunk: &landfall_types::ChatChunk, deltas: &OnText<'_>) {
        if let Some(usage) = &chunk.usage {
            self.usage = Some(usage.clone());
        }
        let Some(choice) = chunk.choices.iter().find(|choice| choice.index == 0) else {
            return;
        };
        if let Some(text) = choice.delta.content.as_deref()
            && !text.is_empty()
        {
            self.text.push_str(text);
            deltas(text);
        }
        for delta in choice.delta.tool_calls.iter().flatten() {
            let index = usize::try_from(delta.index).unwrap_or(usize::MAX);
            if index >= self.calls.len() {
                if index > self.calls.len() + 64 {
                    continue;
                }
                self.calls.resize_with(index + 1, || ToolCall {
                    id: String::new(),
                    kind: "function".to_owned(),
                    function: FunctionCall {
                        name: String::new(),
                        arguments: String::new(),
                    },
                });
            }
            let call = &mut self.calls[index];
            if let Some(id) = &delta.id {
                call.id.clone_from(id);
            }
            if let Some(function) = &delta.function {
                if let Some(name) = &function.name {
                    call.function.name.push_str(name);
                }
                if let Some(arguments) = &function.arguments {
                    call.function.arguments.push_str(arguments);
                }
            }
        }
    }

    fn finish(self) -> (ChatMessage, Option<TokenCounts>) {
        let calls: Vec<ToolCall> = self
            .calls
            .into_iter()
            .enumerate()
            .filter(|(_, call)| !call.function.name.is_empty())
            .map(|(index, mut call)| {
                if call.id.is_empty() {
                    call.id = format!("call_{index}");
                }
                call
            })
            .collect();
        let message = ChatMessage {
            content: (!self.text.is_empty()).then_some(MessageContent::Text(self.text)),
            tool_calls: (!calls.is_empty()).then_some(calls),
            ..ChatMessage::text(Role::Assistant, "")
        };
        (message, self.usage)
    }
}
