//! Accounting: what every request used and how it went, three ways — Prometheus metrics
//! ([`Metrics`], also the gateway's attempt [`Observer`](landfall_gateway::Observer)), the
//! hash-chained audit log (records written off the request path by a bounded queue), and usage
//! analytics read back from the log ([`usage`]).
//!
//! A request is followed by a [`RequestLog`] that the layers fill in and that is finished once,
//! when the response leaves or its stream ends. This crate knows no HTTP and no SQL: the server
//! says what happened, `landfall-storage` keeps the records.

mod audit;
mod bodies;
mod metrics;
mod record;
mod request;
pub mod usage;

use std::sync::Arc;
use std::time::Duration;

use landfall_config::Config;
use landfall_gateway::BreakerState;
use landfall_storage::{AuditEntry, AuditLog};

pub use metrics::Metrics;
pub use record::{AgentStep, RuleHit};
pub use request::{Failure, RecordKind, RequestLog, RequestStart, TokenUsage};

use crate::audit::AuditQueue;
use crate::bodies::BodyPolicy;

/// How long shutdown waits for queued audit records to be written.
const SHUTDOWN_FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

/// Why accounting could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("audit.bodies.redact: {0}")]
    Redaction(#[from] regex::Error),
}

/// Metrics and the audit log of one server process.
#[derive(Clone, Debug)]
pub struct Accounting {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) log: Arc<dyn AuditLog>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) audit: Option<AuditQueue>,
    pub(crate) bodies: BodyPolicy,
    pub(crate) currency: String,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Shared")
            .field("audit", &self.audit)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Queues an audit record without waiting; a full queue counts it as dropped.
    pub(crate) fn enqueue(&self, entry: AuditEntry) {
        let Some(queue) = &self.audit else { return };
        if !queue.offer(entry) {
            self.metrics.audit_dropped();
        }
    }
}

impl Accounting {
    /// Starts the audit writer (when `audit.enabled`) over `log`. Must run inside a Tokio
    /// runtime.
    ///
    /// # Errors
    /// A redaction pattern that does not compile.
    pub fn start(config: &Config, log: Arc<dyn AuditLog>) -> Result<Self, StartError> {
        let metrics = Arc::new(Metrics::new(
            config.metrics.enabled,
            config.metrics.per_key,
            &config.accounting.currency,
        ));
        let audit = config
            .audit
            .enabled
            .then(|| AuditQueue::start(&config.audit, Arc::clone(&log), Arc::clone(&metrics)));
        Ok(Self {
            shared: Arc::new(Shared {
                log,
                metrics,
                audit,
                bodies: BodyPolicy::new(&config.audit.bodies)?,
                currency: config.accounting.currency.clone(),
            }),
        })
    }

    /// The metrics, to hand to the gateway as its observer.
    #[must_use]
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.shared.metrics)
    }

    /// The audit log, for reading it back.
    #[must_use]
    pub fn log(&self) -> &Arc<dyn AuditLog> {
        &self.shared.log
    }

    /// Starts recording a request.
    #[must_use]
    pub fn begin(&self, start: RequestStart) -> RequestLog {
        RequestLog::begin(Arc::clone(&self.shared), start)
    }

    /// The `/metrics` text, with circuit breakers as given.
    #[must_use]
    pub fn render_metrics(&self, breakers: &[BreakerState]) -> String {
        let depth = self.shared.audit.as_ref().map_or(0, AuditQueue::depth);
        self.shared.metrics.render(breakers, depth)
    }

    /// Writes every audit record queued so far and stops the writer (bounded wait).
    pub async fn shutdown(&self) {
        if let Some(audit) = &self.shared.audit {
            audit.shutdown(SHUTDOWN_FLUSH_TIMEOUT).await;
        }
    }
}
