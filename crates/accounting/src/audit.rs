//! The audit writer: records go into a bounded queue on the request path (never waiting) and
//! are appended to the store in batches by one background task. A full queue drops the record,
//! counts it, and the writer appends a `records_dropped` entry so the gap is in the log itself.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use landfall_config::AuditConfig;
use landfall_storage::{AuditEntry, AuditLog, RecordJson, now_millis};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::metrics::Metrics;

/// Longest pause between attempts to write a batch the store refused.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(5);
/// Attempts to write a batch after shutdown began, before giving it up (and saying so).
const ATTEMPTS_AT_SHUTDOWN: u32 = 3;
/// How often records past retention are deleted.
const RETENTION_INTERVAL: Duration = Duration::from_secs(3600);

#[derive(Debug)]
pub(crate) struct AuditQueue {
    sender: mpsc::Sender<AuditEntry>,
    stop: watch::Sender<bool>,
    writer: tokio::sync::Mutex<Option<JoinHandle<()>>>,
    retention: Option<JoinHandle<()>>,
}

impl AuditQueue {
    pub(crate) fn start(
        config: &AuditConfig,
        log: Arc<dyn AuditLog>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let (sender, receiver) = mpsc::channel(config.queue_capacity);
        let (stop, stopped) = watch::channel(false);
        let writer = Writer {
            log: Arc::clone(&log),
            metrics,
            batch_size: config.batch_size,
            flush_interval: Duration::from_millis(config.flush_interval_ms),
        };
        let writer = tokio::spawn(writer.run(receiver, stopped));
        let retention = (config.retention_days > 0).then(|| {
            let keep = Duration::from_secs(u64::from(config.retention_days) * 86_400);
            tokio::spawn(retain(log, keep))
        });
        Self {
            sender,
            stop,
            writer: tokio::sync::Mutex::new(Some(writer)),
            retention,
        }
    }

    /// Queues `entry` without waiting; `false` when the queue is full or closed.
    pub(crate) fn offer(&self, entry: AuditEntry) -> bool {
        self.sender.try_send(entry).is_ok()
    }

    pub(crate) fn depth(&self) -> usize {
        self.sender.max_capacity() - self.sender.capacity()
    }

    /// Writes everything queued so far, then stops the writer. Records offered afterwards are
    /// refused (and counted as dropped).
    pub(crate) async fn shutdown(&self, timeout: Duration) {
        if let Some(retention) = &self.retention {
            retention.abort();
        }
        let _ = self.stop.send(true);
        let Some(writer) = self.writer.lock().await.take() else {
            return;
        };
        if tokio::time::timeout(timeout, writer).await.is_err() {
            tracing::error!(
                timeout_ms = timeout.as_millis(),
                "audit records still queued at shutdown could not be written in time"
            );
        }
    }
}

struct Writer {
    log: Arc<dyn AuditLog>,
    metrics: Arc<Metrics>,
    batch_size: usize,
    flush_interval: Duration,
}

impl Writer {
    async fn run(
        self,
        mut receiver: mpsc::Receiver<AuditEntry>,
        mut stopped: watch::Receiver<bool>,
    ) {
        let mut stopping = false;
        // One buffer for every batch: a fresh one would be a large allocation per batch.
        let mut batch = Vec::with_capacity(self.batch_size + 1);
        loop {
            batch.clear();
            tokio::select! {
                received = receiver.recv_many(&mut batch, self.batch_size) => {
                    if received == 0 {
                        // Closed and drained.
                        return;
                    }
                }
                changed = stopped.changed(), if !stopping => {
                    if changed.is_err() || *stopped.borrow() {
                        stopping = true;
                        // Refuse new records; what is queued is still received, then `None`.
                        receiver.close();
                    }
                    continue;
                }
            }
            if !stopping {
                self.fill(&mut receiver, &mut batch).await;
            }
            self.note_drops(&mut batch);
            self.write(&batch, stopping || *stopped.borrow()).await;
        }
    }

    /// Waits up to `flush_interval` for a small batch to grow, so a trickle of records does
    /// not cost one transaction each.
    async fn fill(&self, receiver: &mut mpsc::Receiver<AuditEntry>, batch: &mut Vec<AuditEntry>) {
        let deadline = tokio::time::Instant::now() + self.flush_interval;
        while batch.len() < self.batch_size {
            let room = self.batch_size - batch.len();
            tokio::select! {
                received = receiver.recv_many(batch, room) => {
                    if received == 0 {
                        return;
                    }
                }
                () = tokio::time::sleep_until(deadline) => return,
            }
        }
    }

    /// Puts a `records_dropped` entry in front of the batch when records were dropped since
    /// the last one.
    fn note_drops(&self, batch: &mut Vec<AuditEntry>) {
        let dropped = self.metrics.audit_dropped.swap(0, Ordering::Relaxed);
        if dropped == 0 {
            return;
        }
        tracing::warn!(dropped, "audit queue was full: records were dropped");
        let Ok(record) = RecordJson::of(&json!({ "event": "records_dropped", "count": dropped }))
        else {
            return;
        };
        batch.insert(
            0,
            AuditEntry {
                time: now_millis(),
                kind: "system".to_owned(),
                request_id: String::new(),
                tenant_id: None,
                key_id: None,
                route: "audit".to_owned(),
                model: None,
                status: 0,
                record,
            },
        );
    }

    /// Appends the batch, retrying with backoff while the store refuses; once shutting down,
    /// gives up after a few attempts and says how many records were lost.
    async fn write(&self, batch: &[AuditEntry], stopping: bool) {
        let count = batch.len() as u64;
        let mut pause = Duration::from_millis(100);
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.log.append_audit(batch).await {
                Ok(_) => {
                    self.metrics.audit_written(count);
                    return;
                }
                Err(error) => {
                    self.metrics.audit_failed(count);
                    if stopping && attempts >= ATTEMPTS_AT_SHUTDOWN {
                        tracing::error!(%error, lost = count, "audit records could not be written at shutdown");
                        return;
                    }
                    tracing::warn!(%error, records = count, retry_in_ms = pause.as_millis(), "cannot write audit records; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_RETRY_PAUSE);
                }
            }
        }
    }
}

/// Deletes records older than `keep`, hourly.
async fn retain(log: Arc<dyn AuditLog>, keep: Duration) {
    let mut ticks = tokio::time::interval(RETENTION_INTERVAL);
    loop {
        ticks.tick().await;
        let keep_ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
        let before = now_millis().saturating_sub(keep_ms);
        match log.prune_audit(before).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "audit records past retention deleted"),
            Err(error) => tracing::warn!(%error, "cannot delete audit records past retention"),
        }
    }
}
