//! The audit record of a request as written: everything the entry's columns (time, kind,
//! request id, tenant, key, route, model, status) do not already hold. Serialized straight from
//! these borrowed structs into the stored text, with no intermediate JSON tree.

use serde::Serialize;
use serde_json::Value;

/// One step of an agent run (`/v1/responses`): a model turn or a tool call. Never the text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentStep {
    /// `model` or `tool`.
    pub kind: &'static str,
    /// The target of a model turn, the tool of a call.
    pub name: String,
    /// `ok`, or why a tool call failed (`timeout`, `refused`, `invalid_arguments` …).
    pub outcome: &'static str,
    pub elapsed_us: u64,
    /// Model turns only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
}

#[derive(Serialize)]
pub(crate) struct RequestFields<'a> {
    pub method: &'a str,
    pub path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "display")]
    pub client_addr: Option<std::net::SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<&'a str>,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejection: Option<&'static str>,
    pub stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_outcome: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shed_max_tokens: Option<u64>,
    pub usage: UsageFields<'a>,
    pub latency_us: LatencyFields,
    /// Guardrail rules that fired, in rule order.
    pub rules: &'a [RuleHit],
    /// An agent's model turns and tool calls, in order.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub steps: &'a [AgentStep],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_body: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_body: Option<ResponseBody>,
}

/// A guardrail rule that fired on a request: which, what it did, where. Never the text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleHit {
    pub rule: String,
    /// `block`, `mask`, `warn` or `review`.
    pub action: &'static str,
    /// `input`, `output`, `retrieved` or `tool`.
    pub stage: &'static str,
    pub severity: &'static str,
    /// It only reported (a dry-run policy).
    pub dry_run: bool,
    pub matches: usize,
    /// Kinds of personal data, injection pattern ids, a schema violation.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

#[derive(Serialize)]
pub(crate) struct UsageFields<'a> {
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    pub output_tokens: u64,
    pub cost_nanos: u64,
    pub currency: &'a str,
    pub reported: bool,
}

/// Microseconds: exact integers, cheaper to write than fractional milliseconds.
#[derive(Serialize)]
pub(crate) struct LatencyFields {
    pub total: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overhead: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_to_first_token: Option<u64>,
}

#[derive(Serialize)]
pub(crate) struct ResponseBody {
    pub text: String,
    pub truncated: bool,
}

/// Writes a value by its `Display`, without an intermediate `String`.
fn display<S: serde::Serializer>(
    value: &Option<std::net::SocketAddr>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => serializer.collect_str(value),
        None => serializer.serialize_none(),
    }
}
