//! Sections for seeing what happened: Prometheus metrics (`metrics`), the audit log (`audit`)
//! and OpenTelemetry traces (`telemetry`).

use std::net::SocketAddr;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `/metrics` at all.
    pub enabled: bool,
    /// Who may read `/metrics` on the main listener.
    pub access: MetricsAccess,
    /// Serve `/metrics` on this address instead of the main listener (open, no key: bind it
    /// to an address only the scraper reaches).
    pub listen: Option<SocketAddr>,
    /// Label token and cost counters with the API key id as well as the tenant. Turn off when
    /// there are many thousands of keys.
    pub per_key: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            access: MetricsAccess::Open,
            listen: None,
            per_key: true,
        }
    }
}

/// Who may read `/metrics` on the main listener.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricsAccess {
    /// Anyone who reaches the port.
    #[default]
    Open,
    /// Requests bearing `auth.admin_key`.
    AdminKey,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Record every API request and admin action.
    pub enabled: bool,
    /// Records waiting to be written. When full, records are dropped, counted in
    /// `landfall_audit_records_total{outcome="dropped"}`, and the gap is itself written to the log.
    pub queue_capacity: usize,
    /// Most records written in one transaction.
    pub batch_size: usize,
    /// Longest a record waits in the queue before its batch is written.
    pub flush_interval_ms: u64,
    /// Delete records older than this many days (checked hourly); 0 keeps them forever.
    pub retention_days: u32,
    /// Which request and response bodies to keep.
    pub bodies: AuditBodies,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            queue_capacity: 65_536,
            batch_size: 1_024,
            flush_interval_ms: 200,
            retention_days: 90,
            bodies: AuditBodies::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditBodies {
    /// Tenants whose request and response bodies are kept; `"*"` means every tenant.
    pub tenants: Vec<String>,
    /// Longest body kept, in bytes; longer ones are cut (and marked as cut).
    pub max_bytes: usize,
    /// Regular expressions whose matches are replaced by `[REDACTED]` before a body is kept,
    /// after the built-in ones (e-mail addresses, phone, ID and card numbers, API keys).
    pub redact: Vec<String>,
}

impl Default for AuditBodies {
    fn default() -> Self {
        Self {
            tenants: Vec::new(),
            max_bytes: 65_536,
            redact: Vec::new(),
        }
    }
}

impl AuditBodies {
    /// Whether `tenant_id`'s bodies are kept.
    #[must_use]
    pub fn keeps(&self, tenant_id: &str) -> bool {
        self.tenants
            .iter()
            .any(|tenant| tenant == "*" || tenant == tenant_id)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// OTLP/HTTP endpoint to export traces to, e.g. `http://127.0.0.1:4318`; unset exports
    /// nothing. `/v1/traces` is appended.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans.
    pub service_name: String,
    /// Share of requests traced, 0.0 to 1.0 (a sampled parent is always followed).
    pub sample_ratio: f64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: "landfall".to_owned(),
            sample_ratio: 1.0,
        }
    }
}
