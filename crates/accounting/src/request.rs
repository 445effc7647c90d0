//! One request's record, filled in as the request goes through the layers and finished once:
//! when the response is sent, or, for a stream, when the stream ends or is dropped.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use landfall_gateway::Operation;
use landfall_storage::{AuditEntry, RecordJson};
use serde_json::{Value, json};

use crate::Shared;
use crate::metrics::Finished;
use crate::record::{AgentStep, LatencyFields, RequestFields, ResponseBody, RuleHit, UsageFields};

/// nginx's status for a request whose client went away before the response: no response was
/// sent, so no real status applies.
const CLIENT_CLOSED_REQUEST: u16 = 499;

/// What kind of action a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// A `/v1/…` API request.
    Request,
    /// An `/admin/v1/…` call.
    Admin,
}

impl RecordKind {
    fn name(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Admin => "admin",
        }
    }
}

/// What is known when a request arrives.
#[derive(Debug, Clone)]
pub struct RequestStart {
    pub kind: RecordKind,
    /// Accepted from `x-request-id` or generated.
    pub request_id: String,
    pub method: String,
    /// The route's pattern, e.g. `/v1/chat/completions`.
    pub route: &'static str,
    /// The path as requested (admin records keep ids that are part of it).
    pub path: String,
    pub client_addr: Option<SocketAddr>,
    pub user_agent: Option<String>,
}

/// Tokens and cost of a request, as settled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenUsage {
    pub input_tokens: u64,
    /// Part of `input_tokens`.
    pub cached_input_tokens: u64,
    pub output_tokens: u64,
    pub cost_nanos: u64,
    /// Whether the upstream reported these counts (else they are an estimate).
    pub reported: bool,
}

/// Why a request failed, as the HTTP layer classified it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// OpenAI-style error code or type, e.g. `rate_limit_exceeded`.
    pub code: &'static str,
    /// Set when governance refused the request: `rate_limit`, `budget`, `shed`, `saturated`,
    /// `unauthorized`, `forbidden`.
    pub rejection: Option<&'static str>,
}

#[derive(Debug, Default)]
struct Details {
    tenant_id: Option<String>,
    key_id: Option<String>,
    operation: Option<Operation>,
    model: Option<String>,
    target: Option<String>,
    attempts: u32,
    upstream: Option<Duration>,
    response_started: Option<Duration>,
    first_output: Option<Duration>,
    stream: bool,
    stream_outcome: Option<&'static str>,
    cache: Option<&'static str>,
    shed_max_tokens: Option<u64>,
    usage: TokenUsage,
    status: Option<u16>,
    failure: Option<Failure>,
    request_body: Option<Value>,
    response_body: Option<String>,
    response_truncated: bool,
    rules: Vec<RuleHit>,
    steps: Vec<AgentStep>,
    finished: bool,
}

/// A request being recorded. Cheap to clone; every clone writes the same record.
#[derive(Clone)]
pub struct RequestLog {
    inner: Arc<Record>,
}

impl std::fmt::Debug for RequestLog {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RequestLog")
            .field("request_id", &self.inner.start.request_id)
            .finish_non_exhaustive()
    }
}

struct Record {
    shared: Arc<Shared>,
    start: RequestStart,
    started: Instant,
    time_ms: i64,
    details: Mutex<Details>,
}

impl RequestLog {
    pub(crate) fn begin(shared: Arc<Shared>, start: RequestStart) -> Self {
        if start.kind == RecordKind::Request {
            shared.metrics.request_started(start.route);
        }
        let time_ms = landfall_storage::now_millis();
        Self {
            inner: Arc::new(Record {
                shared,
                start,
                started: Instant::now(),
                time_ms,
                details: Mutex::new(Details::default()),
            }),
        }
    }

    fn details(&self) -> MutexGuard<'_, Details> {
        // A panic while holding this lock cannot leave the record inconsistent in a way that
        // matters more than losing it, so a poisoned lock is used as is.
        self.inner
            .details
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    #[must_use]
    pub fn request_id(&self) -> &str {
        &self.inner.start.request_id
    }

    /// Who is calling.
    pub fn principal(&self, tenant_id: &str, key_id: &str) {
        let mut details = self.details();
        details.tenant_id = Some(tenant_id.to_owned());
        details.key_id = Some(key_id.to_owned());
    }

    /// The caller is the operator, with the admin key.
    pub fn principal_admin(&self) {
        self.details().key_id = Some("admin".to_owned());
    }

    /// What is asked for: the operation and the model alias.
    pub fn model(&self, operation: Operation, model: &str, stream: bool) {
        let mut details = self.details();
        details.operation = Some(operation);
        details.model = Some(model.to_owned());
        details.stream = stream;
    }

    /// The target that served, after how many upstream calls and how long in them. For a
    /// stream this is when its first output is ready.
    pub fn served(&self, target: &str, attempts: u32, upstream: Duration) {
        let elapsed = self.inner.started.elapsed();
        let mut details = self.details();
        details.target = Some(target.to_owned());
        details.attempts = attempts;
        details.upstream = Some(upstream);
        details.response_started = Some(elapsed);
        if details.stream {
            details.first_output = Some(elapsed);
        }
    }

    /// A stream that begins with events of its own (an agent run's `response.created`) is
    /// leaving before any upstream answered: its record now waits for
    /// [`stream_ended`](Self::stream_ended).
    pub fn stream_started(&self) {
        let elapsed = self.inner.started.elapsed();
        let mut details = self.details();
        if details.stream {
            details.response_started.get_or_insert(elapsed);
            details.first_output.get_or_insert(elapsed);
        }
    }

    /// The response cache answered (`hit`) or was asked and did not (`miss`).
    pub fn cache(&self, hit: bool) {
        let mut details = self.details();
        details.cache = Some(if hit { "hit" } else { "miss" });
        if hit {
            details.target = Some("cache".to_owned());
            details.response_started = Some(self.inner.started.elapsed());
        }
    }

    /// Load shedding capped `max_tokens` to `bound`.
    pub fn shed_capped(&self, bound: u64) {
        self.details().shed_max_tokens = Some(bound);
    }

    /// The settled usage of a whole (non-stream) response.
    pub fn usage(&self, usage: TokenUsage) {
        self.details().usage = usage;
    }

    /// Guardrail rules that fired (added to those already recorded; a rule that fired at
    /// several stages is recorded per stage).
    pub fn rule_hits(&self, hits: impl IntoIterator<Item = RuleHit>) {
        let mut details = self.details();
        for hit in hits {
            match details
                .rules
                .iter_mut()
                .find(|known| known.rule == hit.rule && known.stage == hit.stage)
            {
                Some(known) => *known = hit,
                None => details.rules.push(hit),
            }
        }
    }

    /// One step of an agent run, in order.
    pub fn agent_step(&self, step: AgentStep) {
        self.details().steps.push(step);
    }

    /// Whether this tenant's bodies are kept.
    #[must_use]
    pub fn keeps_bodies(&self) -> bool {
        let details = self.details();
        details
            .tenant_id
            .as_deref()
            .is_some_and(|tenant| self.inner.shared.bodies.keeps(tenant))
    }

    /// Keeps the request body (call only when [`keeps_bodies`](Self::keeps_bodies)).
    pub fn request_body(&self, body: &impl serde::Serialize) {
        let Ok(text) = serde_json::to_string(body) else {
            return;
        };
        let (kept, truncated) = self.inner.shared.bodies.keep(&text);
        let value = serde_json::from_str(&kept).unwrap_or(Value::String(kept));
        let mut details = self.details();
        details.request_body = Some(if truncated {
            json!({ "truncated": true, "text": value })
        } else {
            value
        });
    }

    /// Adds to the response body (call only when [`keeps_bodies`](Self::keeps_bodies)):
    /// the whole JSON of a response, or a stream's text as it goes.
    pub fn response_text(&self, text: &str) {
        let max_bytes = self.inner.shared.bodies.max_bytes();
        let mut details = self.details();
        let body = details.response_body.get_or_insert_with(String::new);
        let room = max_bytes.saturating_sub(body.len());
        let kept = crate::bodies::prefix(text, room);
        body.push_str(kept);
        if kept.len() < text.len() {
            details.response_truncated = true;
        }
    }

    /// The response is leaving with `status`. A successful stream's record is finished by
    /// [`stream_ended`](Self::stream_ended); every other record is finished now.
    pub fn respond(&self, status: u16, failure: Option<Failure>) {
        let finish = {
            let mut details = self.details();
            details.status = Some(status);
            details.failure = failure;
            let waiting_for_stream = details.stream
                && details.first_output.is_some()
                && details.stream_outcome.is_none()
                && (200..300).contains(&status);
            !waiting_for_stream && !details.finished
        };
        if finish {
            self.finish();
        }
    }

    /// A stream ended (`completed`, `broken`, `abandoned`) with its settled usage.
    pub fn stream_ended(&self, usage: TokenUsage, outcome: &'static str) {
        let finish = {
            let mut details = self.details();
            details.usage = usage;
            details.stream_outcome = Some(outcome);
            details.status.is_some() && !details.finished
        };
        if finish {
            self.finish();
        }
    }

    fn finish(&self) {
        let mut details = self.details();
        self.inner.complete(&mut details);
    }
}

impl Record {
    /// Counts, logs and queues the record, once.
    fn complete(&self, details: &mut Details) {
        if details.finished {
            return;
        }
        details.finished = true;
        let elapsed = self.started.elapsed();
        let status = details.status.unwrap_or(CLIENT_CLOSED_REQUEST);
        access_log(&self.start, details, status, elapsed);
        if self.start.kind == RecordKind::Request {
            self.shared
                .metrics
                .request_finished(&finished(&self.start, details, status, elapsed));
        }
        if self.shared.audit.is_some() {
            match self.entry(details, status, elapsed) {
                Some(entry) => self.shared.enqueue(entry),
                None => self.shared.metrics.audit_failed(1),
            }
        }
    }

    /// The audit entry, or `None` (counted as a failed record) if it cannot be serialized.
    fn entry(&self, details: &mut Details, status: u16, elapsed: Duration) -> Option<AuditEntry> {
        let start = &self.start;
        let micros = |duration: Duration| u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        let usage = &details.usage;
        let response_body = details.response_body.as_deref().map(|body| {
            let (text, cut) = self.shared.bodies.keep(body);
            ResponseBody {
                text,
                truncated: cut || details.response_truncated,
            }
        });
        let fields = RequestFields {
            method: &start.method,
            path: &start.path,
            client_addr: start.client_addr,
            user_agent: start.user_agent.as_deref(),
            operation: details.operation.map(Operation::name),
            target: details.target.as_deref(),
            attempts: details.attempts,
            error: details.failure.map(|failure| failure.code),
            rejection: details.failure.and_then(|failure| failure.rejection),
            stream: details.stream,
            stream_outcome: details.stream_outcome,
            cache: details.cache,
            shed_max_tokens: details.shed_max_tokens,
            usage: UsageFields {
                input_tokens: usage.input_tokens,
                cached_input_tokens: usage.cached_input_tokens,
                output_tokens: usage.output_tokens,
                cost_nanos: usage.cost_nanos,
                currency: &self.shared.currency,
                reported: usage.reported,
            },
            latency_us: LatencyFields {
                total: micros(elapsed),
                upstream: details.upstream.map(micros),
                overhead: overhead(details).map(micros),
                time_to_first_token: details.first_output.map(micros),
            },
            rules: &details.rules,
            steps: &details.steps,
            request_body: details.request_body.as_ref(),
            response_body,
        };
        let record = match RecordJson::of(&fields) {
            Ok(record) => record,
            Err(error) => {
                tracing::error!(%error, request_id = %start.request_id, "cannot serialize an audit record");
                return None;
            }
        };
        // The record is finished: its strings move into the entry instead of being copied.
        Some(AuditEntry {
            time: self.time_ms,
            kind: start.kind.name().to_owned(),
            request_id: start.request_id.clone(),
            tenant_id: details.tenant_id.take(),
            key_id: details.key_id.take(),
            route: match start.kind {
                RecordKind::Request => start.route.to_owned(),
                RecordKind::Admin => format!("{} {}", start.method, start.route),
            },
            model: details.model.take(),
            status,
            record,
        })
    }
}

impl Drop for Record {
    /// A request the client abandoned before its response left (the handler's future was
    /// dropped) is still counted, logged and audited, with status 499.
    fn drop(&mut self) {
        let mut details = std::mem::take(
            self.details
                .get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        self.complete(&mut details);
    }
}

/// One structured line per request (JSON with `--log-format json`), target `landfall::access`.
fn access_log(start: &RequestStart, details: &Details, status: u16, elapsed: Duration) {
    tracing::info!(
        target: "landfall::access",
        request_id = %start.request_id,
        kind = start.kind.name(),
        method = %start.method,
        path = %start.path,
        status,
        tenant = details.tenant_id.as_deref().unwrap_or(""),
        key = details.key_id.as_deref().unwrap_or(""),
        model = details.model.as_deref().unwrap_or(""),
        target = details.target.as_deref().unwrap_or(""),
        attempts = details.attempts,
        input_tokens = details.usage.input_tokens,
        output_tokens = details.usage.output_tokens,
        cache = details.cache.unwrap_or(""),
        error = details.failure.map_or("", |failure| failure.code),
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
}

/// The gateway's own time on a served request: until the response started, minus upstream.
fn overhead(details: &Details) -> Option<Duration> {
    let started = details.response_started?;
    Some(started.saturating_sub(details.upstream.unwrap_or_default()))
}

fn finished<'a>(
    start: &RequestStart,
    details: &'a Details,
    status: u16,
    elapsed: Duration,
) -> Finished<'a> {
    let usage = &details.usage;
    let per_output_token = details.first_output.and_then(|first| {
        let later_tokens = usage.output_tokens.checked_sub(1).filter(|n| *n > 0)?;
        let after_first = elapsed.checked_sub(first)?;
        Some(after_first.as_secs_f64() / later_tokens as f64)
    });
    Finished {
        route: start.route,
        operation: details.operation.map(Operation::name),
        model: details.model.as_deref().unwrap_or(""),
        target: details.target.as_deref().unwrap_or(""),
        status,
        tenant: details.tenant_id.as_deref().unwrap_or(""),
        key: details.key_id.as_deref().unwrap_or(""),
        total_seconds: elapsed.as_secs_f64(),
        overhead_seconds: overhead(details).map(|overhead| overhead.as_secs_f64()),
        first_token_seconds: details.first_output.map(|first| first.as_secs_f64()),
        per_output_token_seconds: per_output_token,
        input_tokens: usage.input_tokens,
        cached_input_tokens: usage.cached_input_tokens,
        output_tokens: usage.output_tokens,
        cost_nanos: usage.cost_nanos,
        upstream_usage: details.upstream.is_some() && details.cache != Some("hit"),
        cache: details.cache,
        rejection: details.failure.and_then(|failure| failure.rejection),
        rules: &details.rules,
        steps: &details.steps,
    }
}
