//! Durable metadata: tenants, API keys and the usage ledger, behind the [`MetadataStore`]
//! trait, the hash-chained audit log behind [`AuditLog`], knowledge bases, and the guardrails'
//! review queue and rule versions behind [`GuardrailStore`], and stored agent responses
//! behind [`ResponseStore`], prompt template versions behind [`PromptStore`], and conversations and long-term
//! memories behind [`MemoryStore`], in SQLite (embedded, the
//! default) or PostgreSQL (shared by replicas).
//!
//! Only this crate knows SQL. It stores and returns records as given; deciding what a record
//! means (is a key expired? over budget? what goes in an audit record?) belongs to
//! `landfall-governance` and the server.

mod audit;
mod codec;
mod error;
mod guardrails;
mod knowledge;
mod knowledge_sql;
mod memory;
mod model;
mod postgres;
mod postgres_audit;
mod prompts;
mod responses;
mod sqlite;
mod sqlite_audit;

use async_trait::async_trait;

pub use audit::{
    AuditEntry, AuditFilter, AuditLog, AuditOrder, AuditQuery, AuditRecord, ChainState, Problem,
    RawAuditRow, RecordJson, StatusFilter, VerifyReport, verify_audit,
};
pub use error::StoreError;
pub use guardrails::{GuardrailStore, ReviewDecision, ReviewRecord, RuleSetVersion};
pub use knowledge::{
    BatchRecord, Change, ChangeOp, FileCounts, FileRecord, IngestError, IngestStatus,
    KnowledgeStore, NewChunk, StoreFileQuery, StoreFileRecord, StoredChunk, VectorStoreRecord,
};
pub use memory::{ConversationRecord, ItemQuery, ItemRecord, MemoryRecord, MemoryStore};
pub use model::{
    ApiKey, Budget, BudgetLimit, BudgetPeriod, Limits, PageRequest, Scopes, Tenant, UnixMillis,
    UsageRecord, UsageScope, UsageTotals, now_millis,
};
pub use postgres::PostgresStore;
pub use prompts::{PromptRecord, PromptStore};
pub use responses::{ApprovalRecord, ResponseRecord, ResponseStore};
pub use sqlite::SqliteStore;

/// Tenants, keys and usage.
///
/// Guarantees, for every implementation:
/// - a write that returned `Ok` is durable (it survives a crash of the process);
/// - `create_*` fails with [`StoreError::Conflict`] when the id exists, and `create_key` with
///   [`StoreError::NotFound`] when its tenant does not;
/// - `update_*` replaces the whole record by id and returns `false` when there is none;
/// - `record_usage` adds every row's counters to the ledger row with the same
///   (tenant, key, model, target, hour), all rows in one transaction;
/// - lists are ordered by id ascending.
#[async_trait]
pub trait MetadataStore: Send + Sync {
    async fn create_tenant(&self, tenant: &Tenant) -> Result<(), StoreError>;
    async fn get_tenant(&self, id: &str) -> Result<Option<Tenant>, StoreError>;
    async fn list_tenants(&self, page: &PageRequest) -> Result<Vec<Tenant>, StoreError>;
    async fn update_tenant(&self, tenant: &Tenant) -> Result<bool, StoreError>;

    async fn create_key(&self, key: &ApiKey) -> Result<(), StoreError>;
    async fn get_key(&self, id: &str) -> Result<Option<ApiKey>, StoreError>;
    /// Keys of one tenant, or of all tenants.
    async fn list_keys(
        &self,
        tenant_id: Option<&str>,
        page: &PageRequest,
    ) -> Result<Vec<ApiKey>, StoreError>;
    async fn update_key(&self, key: &ApiKey) -> Result<bool, StoreError>;

    async fn record_usage(&self, rows: &[UsageRecord]) -> Result<(), StoreError>;
    /// Sums of the ledger rows of `scope` with `hour >= since`.
    async fn usage_totals(
        &self,
        scope: UsageScope<'_>,
        since: UnixMillis,
    ) -> Result<UsageTotals, StoreError>;

    /// Checks that the store answers.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Everything one backend keeps: metadata, the audit log and knowledge bases. An
/// `Arc<dyn Store>` upcasts to `Arc<dyn MetadataStore>`, `Arc<dyn AuditLog>` or
/// `Arc<dyn KnowledgeStore>` for code that needs only one of them.
pub trait Store:
    MetadataStore
    + AuditLog
    + KnowledgeStore
    + GuardrailStore
    + ResponseStore
    + PromptStore
    + MemoryStore
{
}

impl<T> Store for T where
    T: MetadataStore
        + AuditLog
        + KnowledgeStore
        + GuardrailStore
        + ResponseStore
        + PromptStore
        + MemoryStore
        + ?Sized
{
}
