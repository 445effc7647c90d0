//! Per-target concurrency: at most `max_concurrency` upstream calls at once, a bounded queue of
//! callers waiting for a slot, and a deadline on the wait.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The slots of one target.
pub(crate) struct Slots {
    semaphore: Arc<Semaphore>,
    waiting: AtomicU32,
    queue_size: u32,
    queue_timeout: Duration,
}

/// Why no slot was granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    QueueFull,
    QueueTimeout,
}

impl Slots {
    pub(crate) fn new(max_concurrency: u32, queue_size: u32, queue_timeout: Duration) -> Self {
        Self {
            semaphore: Arc::new(Semaphore::new(max_concurrency as usize)),
            waiting: AtomicU32::new(0),
            queue_size,
            queue_timeout,
        }
    }

    /// A slot, immediately or after queueing; the slot is freed when the permit drops.
    pub(crate) async fn acquire(&self) -> Result<OwnedSemaphorePermit, Refusal> {
        if let Ok(permit) = Arc::clone(&self.semaphore).try_acquire_owned() {
            return Ok(permit);
        }
        // Join the queue only if there is room; the increment is undone on every exit path.
        let joined = self
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |waiting| {
                (waiting < self.queue_size).then_some(waiting + 1)
            });
        if joined.is_err() {
            return Err(Refusal::QueueFull);
        }
        let _leave = LeaveQueue(&self.waiting);
        match tokio::time::timeout(
            self.queue_timeout,
            Arc::clone(&self.semaphore).acquire_owned(),
        )
        .await
        {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed; treat it like a timeout all the same.
            Ok(Err(_)) | Err(_) => Err(Refusal::QueueTimeout),
        }
    }

    pub(crate) fn queue_timeout(&self) -> Duration {
        self.queue_timeout
    }
}

struct LeaveQueue<'a>(&'a AtomicU32);

impl Drop for LeaveQueue<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn queue_is_bounded_and_timed() {
        let slots = Arc::new(Slots::new(1, 1, Duration::from_millis(100)));
        let held = slots.acquire().await;
        assert!(held.is_ok());
        let waiter = tokio::spawn({
            let slots = Arc::clone(&slots);
            async move { slots.acquire().await.map(drop) }
        });
        tokio::task::yield_now().await;
        assert_eq!(slots.acquire().await.err(), Some(Refusal::QueueFull));
        assert_eq!(
            waiter.await.ok().and_then(Result::err),
            Some(Refusal::QueueTimeout)
        );
        drop(held);
        assert!(slots.acquire().await.is_ok());
    }

    #[tokio::test]
    async fn a_freed_slot_goes_to_the_queue() {
        let slots = Arc::new(Slots::new(1, 4, Duration::from_secs(5)));
        let held = slots.acquire().await.ok();
        let waiter = tokio::spawn({
            let slots = Arc::clone(&slots);
            async move { slots.acquire().await.is_ok() }
        });
        tokio::task::yield_now().await;
        drop(held);
        assert!(waiter.await.unwrap_or(false));
    }
}
