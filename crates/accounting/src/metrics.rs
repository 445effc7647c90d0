//! Prometheus metrics, named after OpenTelemetry's GenAI semantic conventions where they have a
//! name (`gen_ai_*`) and `landfall_*` otherwise. Rendered in the OpenMetrics text format.

use std::sync::atomic::{AtomicU64, Ordering};

use landfall_gateway::{Attempt, BreakerState, NextStep, Observer};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Seconds: 5 ms to ~80 s.
const SECONDS_BUCKETS: [f64; 15] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0,
];
/// Gateway overhead and time per output token: 50 µs to ~2.5 s.
const FINE_SECONDS_BUCKETS: [f64; 14] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 2.5,
];
/// Tokens per request: OpenTelemetry's advised boundaries.
const TOKEN_BUCKETS: [f64; 14] = [
    1.0,
    4.0,
    16.0,
    64.0,
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    pub route: &'static str,
    pub model: String,
    pub target: String,
    pub status_class: &'static str,
    pub tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RouteLabels {
    pub route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DurationLabels {
    gen_ai_operation_name: &'static str,
    gen_ai_request_model: String,
    status_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    gen_ai_operation_name: &'static str,
    gen_ai_request_model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenUsageLabels {
    gen_ai_operation_name: &'static str,
    gen_ai_request_model: String,
    gen_ai_token_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    gen_ai_operation_name: &'static str,
    gen_ai_request_model: String,
    gen_ai_provider_name: String,
    target: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    tenant: String,
    key: String,
    model: String,
    target: String,
    r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CostLabels {
    tenant: String,
    key: String,
    model: String,
    target: String,
    currency: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    model: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    rule: String,
    action: &'static str,
    stage: &'static str,
    dry_run: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    kind: &'static str,
    name: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectionLabels {
    reason: &'static str,
    tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    model: String,
    target: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    model: String,
    target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FallbackLabels {
    model: String,
    from_target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn histograms<L: Clone + std::hash::Hash + Eq>(buckets: fn() -> Histogram) -> HistogramFamily<L> {
    Family::new_with_constructor(buckets)
}

fn seconds() -> Histogram {
    Histogram::new(SECONDS_BUCKETS)
}

fn fine_seconds() -> Histogram {
    Histogram::new(FINE_SECONDS_BUCKETS)
}

fn tokens() -> Histogram {
    Histogram::new(TOKEN_BUCKETS)
}

/// A finished request, as metrics see it.
#[derive(Debug)]
pub(crate) struct Finished<'a> {
    pub route: &'static str,
    pub operation: Option<&'static str>,
    pub model: &'a str,
    pub target: &'a str,
    pub status: u16,
    pub tenant: &'a str,
    pub key: &'a str,
    pub total_seconds: f64,
    pub overhead_seconds: Option<f64>,
    pub first_token_seconds: Option<f64>,
    pub per_output_token_seconds: Option<f64>,
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    pub output_tokens: u64,
    pub cost_nanos: u64,
    /// Tokens come from the upstream (not a cache hit, not a refusal).
    pub upstream_usage: bool,
    pub cache: Option<&'static str>,
    pub rejection: Option<&'static str>,
    pub rules: &'a [crate::RuleHit],
    pub steps: &'a [crate::AgentStep],
}

/// Every metric Landfall exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `metrics.enabled`: when off, nothing is counted (the audit drop count excepted).
    enabled: bool,
    per_key: bool,
    currency: String,
    requests: Family<RequestLabels, Counter>,
    in_flight: Family<RouteLabels, Gauge>,
    request_duration: HistogramFamily<DurationLabels>,
    time_to_first_token: HistogramFamily<OperationLabels>,
    time_per_output_token: HistogramFamily<OperationLabels>,
    overhead: HistogramFamily<OperationLabels>,
    upstream_duration: HistogramFamily<UpstreamLabels>,
    token_usage: HistogramFamily<TokenUsageLabels>,
    tokens: Family<TokenLabels, Counter>,
    cost: Family<CostLabels, Counter>,
    cache: Family<CacheLabels, Counter>,
    rejections: Family<RejectionLabels, Counter>,
    rule_hits: Family<RuleLabels, Counter>,
    agent_steps: Family<StepLabels, Counter>,
    attempts: Family<AttemptLabels, Counter>,
    retries: Family<TargetLabels, Counter>,
    fallbacks: Family<FallbackLabels, Counter>,
    breakers: Family<TargetLabels, Gauge>,
    audit_records: Family<OutcomeLabels, Counter>,
    audit_queue_depth: Gauge,
    /// Records the audit writer could not take (queue full); shared with the writer, which
    /// writes the gap into the log.
    pub(crate) audit_dropped: AtomicU64,
}

impl Metrics {
    /// Registers every metric. `per_key` adds the key id to token and cost counters; when not
    /// `enabled`, requests and attempts are not counted at all.
    #[must_use]
    pub fn new(enabled: bool, per_key: bool, currency: &str) -> Self {
        let mut metrics = Self {
            registry: Registry::default(),
            enabled,
            per_key,
            currency: currency.to_owned(),
            requests: Family::default(),
            in_flight: Family::default(),
            request_duration: histograms(seconds),
            time_to_first_token: histograms(seconds),
            time_per_output_token: histograms(fine_seconds),
            overhead: histograms(fine_seconds),
            upstream_duration: histograms(seconds),
            token_usage: histograms(tokens),
            tokens: Family::default(),
            cost: Family::default(),
            cache: Family::default(),
            rejections: Family::default(),
            rule_hits: Family::default(),
            agent_steps: Family::default(),
            attempts: Family::default(),
            retries: Family::default(),
            fallbacks: Family::default(),
            breakers: Family::default(),
            audit_records: Family::default(),
            audit_queue_depth: Gauge::default(),
            audit_dropped: AtomicU64::new(0),
        };
        metrics.register();
        metrics
    }

    fn register(&mut self) {
        let registry = &mut self.registry;
        registry.register(
            "landfall_requests",
            "API requests by route, model alias, serving target, status class and tenant",
            self.requests.clone(),
        );
        registry.register(
            "landfall_requests_in_flight",
            "API requests being served (streams until they end)",
            self.in_flight.clone(),
        );
        registry.register_with_unit(
            "gen_ai_server_request_duration",
            "Whole request duration as the client sees it (streams until their end)",
            Unit::Seconds,
            self.request_duration.clone(),
        );
        registry.register_with_unit(
            "gen_ai_server_time_to_first_token",
            "Time from the request to the first output of a stream",
            Unit::Seconds,
            self.time_to_first_token.clone(),
        );
        registry.register_with_unit(
            "gen_ai_server_time_per_output_token",
            "Time per output token after the first, for streams",
            Unit::Seconds,
            self.time_per_output_token.clone(),
        );
        registry.register_with_unit(
            "landfall_gateway_overhead",
            "Time Landfall spent on a served request besides upstream calls, until the response started",
            Unit::Seconds,
            self.overhead.clone(),
        );
        registry.register_with_unit(
            "gen_ai_client_operation_duration",
            "Duration of one upstream attempt (streams: until their first output)",
            Unit::Seconds,
            self.upstream_duration.clone(),
        );
        registry.register(
            "gen_ai_client_token_usage",
            "Tokens per request reported by the upstream, by type",
            self.token_usage.clone(),
        );
        registry.register(
            "landfall_tokens",
            "Tokens used, by tenant, key, model alias, target and type (cached_input is part of input)",
            self.tokens.clone(),
        );
        registry.register(
            "landfall_cost_nanos",
            "Cost in billionths of the currency unit, by tenant, key, model alias and target",
            self.cost.clone(),
        );
        registry.register(
            "landfall_cache_requests",
            "Response cache lookups by result",
            self.cache.clone(),
        );
        registry.register(
            "landfall_rejections",
            "Requests refused by governance, by reason",
            self.rejections.clone(),
        );
        registry.register(
            "landfall_guardrail_hits",
            "Guardrail rules that fired, by rule, action, stage and whether they only reported",
            self.rule_hits.clone(),
        );
        registry.register(
            "landfall_agent_steps",
            "Agent steps (/v1/responses): model turns by target and tool calls by tool, by outcome",
            self.agent_steps.clone(),
        );
        registry.register(
            "landfall_upstream_attempts",
            "Upstream calls by outcome (ok or the failure's class)",
            self.attempts.clone(),
        );
        registry.register(
            "landfall_retries",
            "Retries of the same target after a transient failure",
            self.retries.clone(),
        );
        registry.register(
            "landfall_fallbacks",
            "Moves to the next target after a failure",
            self.fallbacks.clone(),
        );
        registry.register(
            "landfall_circuit_breaker_open",
            "1 while a target's circuit breaker is open, else 0",
            self.breakers.clone(),
        );
        registry.register(
            "landfall_audit_records",
            "Audit records by outcome: written, dropped (queue full) or failed (store error, retried)",
            self.audit_records.clone(),
        );
        registry.register(
            "landfall_audit_queue_depth",
            "Audit records waiting to be written",
            self.audit_queue_depth.clone(),
        );
    }

    /// The OpenMetrics text of every metric, with breaker states and queue depth as of now.
    #[must_use]
    pub fn render(&self, breakers: &[BreakerState], audit_queue_depth: usize) -> String {
        for state in breakers {
            let labels = TargetLabels {
                model: state.model.clone(),
                target: state.target.clone(),
            };
            self.breakers
                .get_or_create(&labels)
                .set(i64::from(state.open));
        }
        self.audit_queue_depth
            .set(i64::try_from(audit_queue_depth).unwrap_or(i64::MAX));
        let mut text = String::with_capacity(64 * 1024);
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(%error, "cannot render metrics");
        }
        text
    }

    pub(crate) fn request_started(&self, route: &'static str) {
        if !self.enabled {
            return;
        }
        self.in_flight.get_or_create(&RouteLabels { route }).inc();
    }

    pub(crate) fn request_finished(&self, finished: &Finished<'_>) {
        if !self.enabled {
            return;
        }
        let status_class = status_class(finished.status);
        self.in_flight
            .get_or_create(&RouteLabels {
                route: finished.route,
            })
            .dec();
        self.requests
            .get_or_create(&RequestLabels {
                route: finished.route,
                model: finished.model.to_owned(),
                target: finished.target.to_owned(),
                status_class,
                tenant: finished.tenant.to_owned(),
            })
            .inc();
        for hit in finished.rules {
            self.rule_hits
                .get_or_create(&RuleLabels {
                    rule: hit.rule.clone(),
                    action: hit.action,
                    stage: hit.stage,
                    dry_run: if hit.dry_run { "true" } else { "false" },
                })
                .inc();
        }
        for step in finished.steps {
            self.agent_steps
                .get_or_create(&StepLabels {
                    kind: step.kind,
                    name: step.name.clone(),
                    outcome: step.outcome,
                })
                .inc();
        }
        if let Some(reason) = finished.rejection {
            self.rejections
                .get_or_create(&RejectionLabels {
                    reason,
                    tenant: finished.tenant.to_owned(),
                })
                .inc();
        }
        let Some(operation) = finished.operation else {
            return;
        };
        let model = || finished.model.to_owned();
        self.request_duration
            .get_or_create(&DurationLabels {
                gen_ai_operation_name: operation,
                gen_ai_request_model: model(),
                status_class,
            })
            .observe(finished.total_seconds);
        let operation_labels = OperationLabels {
            gen_ai_operation_name: operation,
            gen_ai_request_model: model(),
        };
        for (family, value) in [
            (&self.time_to_first_token, finished.first_token_seconds),
            (
                &self.time_per_output_token,
                finished.per_output_token_seconds,
            ),
            (&self.overhead, finished.overhead_seconds),
        ] {
            if let Some(value) = value {
                family.get_or_create(&operation_labels).observe(value);
            }
        }
        if let Some(result) = finished.cache {
            self.cache
                .get_or_create(&CacheLabels {
                    model: model(),
                    result,
                })
                .inc();
        }
        if finished.upstream_usage {
            self.count_tokens(operation, finished);
        }
    }

    fn count_tokens(&self, operation: &'static str, finished: &Finished<'_>) {
        // One label set per family, its type changed between lookups: no copies of the names.
        let mut usage_labels = TokenUsageLabels {
            gen_ai_operation_name: operation,
            gen_ai_request_model: finished.model.to_owned(),
            gen_ai_token_type: "input",
        };
        for (token_type, count) in [
            ("input", finished.input_tokens),
            ("output", finished.output_tokens),
        ] {
            usage_labels.gen_ai_token_type = token_type;
            self.token_usage
                .get_or_create(&usage_labels)
                .observe(count as f64);
        }
        let key = if self.per_key { finished.key } else { "" };
        let mut token_labels = TokenLabels {
            tenant: finished.tenant.to_owned(),
            key: key.to_owned(),
            model: usage_labels.gen_ai_request_model,
            target: finished.target.to_owned(),
            r#type: "input",
        };
        for (token_type, count) in [
            ("input", finished.input_tokens),
            ("cached_input", finished.cached_input_tokens),
            ("output", finished.output_tokens),
        ] {
            token_labels.r#type = token_type;
            self.tokens.get_or_create(&token_labels).inc_by(count);
        }
        self.cost
            .get_or_create(&CostLabels {
                tenant: token_labels.tenant,
                key: token_labels.key,
                model: token_labels.model,
                target: token_labels.target,
                currency: self.currency.clone(),
            })
            .inc_by(finished.cost_nanos);
    }

    pub(crate) fn audit_written(&self, count: u64) {
        self.audit_outcome("written", count);
    }

    pub(crate) fn audit_failed(&self, count: u64) {
        self.audit_outcome("failed", count);
    }

    pub(crate) fn audit_dropped(&self) {
        self.audit_outcome("dropped", 1);
        self.audit_dropped.fetch_add(1, Ordering::Relaxed);
    }

    fn audit_outcome(&self, outcome: &'static str, count: u64) {
        self.audit_records
            .get_or_create(&OutcomeLabels { outcome })
            .inc_by(count);
    }
}

impl Observer for Metrics {
    fn attempt(&self, attempt: &Attempt<'_>) {
        if !self.enabled {
            return;
        }
        let outcome = attempt.failure.map_or("ok", |class| class.name());
        self.upstream_duration
            .get_or_create(&UpstreamLabels {
                gen_ai_operation_name: attempt.operation.name(),
                gen_ai_request_model: attempt.model.to_owned(),
                gen_ai_provider_name: attempt.provider.to_owned(),
                target: attempt.target.to_owned(),
                outcome: if attempt.failure.is_some() {
                    "error"
                } else {
                    "ok"
                },
            })
            .observe(attempt.elapsed.as_secs_f64());
        self.attempts
            .get_or_create(&AttemptLabels {
                model: attempt.model.to_owned(),
                target: attempt.target.to_owned(),
                outcome,
            })
            .inc();
        match attempt.next {
            NextStep::Retry => {
                self.retries
                    .get_or_create(&TargetLabels {
                        model: attempt.model.to_owned(),
                        target: attempt.target.to_owned(),
                    })
                    .inc();
            }
            NextStep::Fallback => {
                self.fallbacks
                    .get_or_create(&FallbackLabels {
                        model: attempt.model.to_owned(),
                        from_target: attempt.target.to_owned(),
                    })
                    .inc();
            }
            NextStep::Served | NextStep::GiveUp => {}
        }
    }
}

/// `2xx`, `4xx`, `5xx` …
pub(crate) fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}
