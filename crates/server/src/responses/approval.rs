//! Tool calls that wait for a person: a call to a tool whose entry has `require_approval`
//! is recorded as a pending approval and polled until a reviewer approves or rejects it
//! through `/admin/v1/approvals`, or the response's deadline passes. The record is in the
//! shared store, so the reviewer's request may reach any replica.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use landfall_agents::ToolError;
use landfall_storage::{ApprovalRecord, ResponseStore};
use serde_json::Value;

pub(crate) const PENDING: &str = "pending";
pub(crate) const APPROVED: &str = "approved";
pub(crate) const REJECTED: &str = "rejected";
pub(crate) const EXPIRED: &str = "expired";

/// How often a waiting call reads its approval.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

pub(crate) struct Approvals {
    pub(crate) store: Arc<dyn ResponseStore>,
    /// Tool name → its `[tools.NAME]` entry, for the tools that wait.
    pub(crate) entries: HashMap<String, String>,
    pub(crate) tenant_id: String,
    pub(crate) key_id: String,
    pub(crate) request_id: String,
}

/// Marks the approval expired when the wait is dropped undecided (the deadline passed or
/// the client went away), so reviewers do not approve a call nobody waits for.
struct ExpireOnDrop {
    store: Arc<dyn ResponseStore>,
    id: String,
    armed: bool,
}

impl Drop for ExpireOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (store, id) = (self.store.clone(), std::mem::take(&mut self.id));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let now = landfall_storage::now_millis();
                if let Err(error) = store.decide_approval(&id, EXPIRED, None, now).await {
                    tracing::warn!(approval = %id, %error, "could not expire an approval");
                }
            });
        }
    }
}

/// `apr_` + creation time + randomness, so ids list in the order calls were held.
fn new_id() -> String {
    let millis = u64::try_from(landfall_storage::now_millis()).unwrap_or(0);
    let random: u64 = rand::random();
    format!("apr_{millis:012x}{random:016x}")
}

impl Approvals {
    /// The entry of `tool` when its calls wait for approval.
    pub(crate) fn entry(&self, tool: &str) -> Option<&str> {
        self.entries.get(tool).map(String::as_str)
    }

    /// Records the call as pending, tells `created` its id, and waits for the decision
    /// until `deadline`, when the approval expires.
    ///
    /// # Errors
    /// [`ToolError::Refused`] when a reviewer rejected it (with their reason) or nobody
    /// decided before the deadline; [`ToolError::Failed`] when the store cannot record or
    /// read it.
    pub(crate) async fn wait(
        &self,
        tool: &str,
        entry: &str,
        arguments: &Value,
        deadline: Instant,
        created: impl FnOnce(&str),
    ) -> Result<(), ToolError> {
        let id = new_id();
        let record = ApprovalRecord {
            id: id.clone(),
            tenant_id: self.tenant_id.clone(),
            key_id: self.key_id.clone(),
            request_id: self.request_id.clone(),
            tool: tool.to_owned(),
            entry: entry.to_owned(),
            arguments: arguments.clone(),
            status: PENDING.to_owned(),
            reason: None,
            created_at: landfall_storage::now_millis(),
            decided_at: None,
        };
        self.store.create_approval(&record).await.map_err(|error| {
            ToolError::failed(format!("the approval was not recorded: {error}"))
        })?;
        tracing::info!(approval = %id, tool, "tool call waits for approval");
        created(&id);
        let mut guard = ExpireOnDrop {
            store: self.store.clone(),
            id: id.clone(),
            armed: true,
        };
        loop {
            let now = Instant::now();
            if now >= deadline {
                guard.armed = false;
                return self.expire(&id).await;
            }
            tokio::time::sleep(POLL_INTERVAL.min(deadline - now)).await;
            let Some(current) = self.store.get_approval(&id).await.map_err(|error| {
                ToolError::failed(format!("the approval was not read: {error}"))
            })?
            else {
                guard.armed = false;
                return Err(ToolError::failed("the approval record disappeared"));
            };
            match current.status.as_str() {
                PENDING => continue,
                APPROVED => {
                    guard.armed = false;
                    return Ok(());
                }
                status => {
                    guard.armed = false;
                    let reason = current
                        .reason
                        .map(|reason| format!(": {reason}"))
                        .unwrap_or_default();
                    return Err(ToolError::Refused {
                        message: format!("the call was {status} by a reviewer{reason}"),
                    });
                }
            }
        }
    }

    /// Marks `id` expired, unless a reviewer approved it at the last moment.
    async fn expire(&self, id: &str) -> Result<(), ToolError> {
        let now = landfall_storage::now_millis();
        let expired = self.store.decide_approval(id, EXPIRED, None, now).await;
        if matches!(expired, Ok(false))
            && let Ok(Some(current)) = self.store.get_approval(id).await
            && current.status == APPROVED
        {
            return Ok(());
        }
        Err(ToolError::Refused {
            message: "the call was not approved before the response's deadline".to_owned(),
        })
    }
}
