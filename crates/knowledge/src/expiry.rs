//! Expiry as OpenAI defines it. A file may expire a number of seconds after it was created
//! (`expires_after: {anchor: "created_at", seconds}`); the sweeper then deletes it everywhere.
//! A vector store may expire a number of days after it was last active (`expires_after:
//! {anchor: "last_active_at", days}`); it is then `expired`, and searches refuse it until its
//! `expires_after` is changed. Searching a store makes it active.

use std::sync::Arc;
use std::time::Duration;

use landfall_storage::{KnowledgeStore, VectorStoreRecord, now_millis};
use serde_json::Value;

use crate::KnowledgeError;
use crate::sync::Indexes;

/// OpenAI's bounds of a file's `expires_after.seconds`: one hour to thirty days.
const FILE_SECONDS: std::ops::RangeInclusive<u64> = 3_600..=2_592_000;
/// OpenAI's bounds of a vector store's `expires_after.days`.
const STORE_DAYS: std::ops::RangeInclusive<u64> = 1..=365;
const DAY_MS: i64 = 86_400_000;
/// How often expired files are looked for.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// Expired files deleted per look; the rest wait for the next one.
const SWEEP_BATCH: u32 = 100;
/// A store's `last_active_at` is written again by a search only once this much has passed,
/// so searches do not each write to the metadata store.
pub(crate) const TOUCH_INTERVAL_MS: i64 = 3_600_000;

/// When a file created at `created_at` expires, for `expires_after.seconds`.
///
/// # Errors
/// [`KnowledgeError::Invalid`] for seconds outside one hour to thirty days.
pub(crate) fn file_expires_at(
    created_at: i64,
    seconds: Option<u64>,
) -> Result<Option<i64>, KnowledgeError> {
    let Some(seconds) = seconds else {
        return Ok(None);
    };
    if !FILE_SECONDS.contains(&seconds) {
        return Err(KnowledgeError::invalid(
            "expires_after[seconds]",
            "expires_after[seconds] must be between 3600 (one hour) and 2592000 (30 days)",
        ));
    }
    Ok(Some(
        created_at + i64::try_from(seconds).unwrap_or(i64::MAX) * 1000,
    ))
}

/// The days of a store's `expires_after`, checked.
///
/// # Errors
/// [`KnowledgeError::Invalid`] unless it is `{"anchor": "last_active_at", "days": 1..=365}`.
pub(crate) fn store_days(expires_after: &Value) -> Result<u64, KnowledgeError> {
    let invalid = || {
        KnowledgeError::invalid(
            "expires_after",
            "expires_after must be {\"anchor\": \"last_active_at\", \"days\": N} with N from 1 to 365",
        )
    };
    let object = expires_after.as_object().ok_or_else(invalid)?;
    if object.keys().any(|key| key != "anchor" && key != "days")
        || object.get("anchor").and_then(Value::as_str) != Some("last_active_at")
    {
        return Err(invalid());
    }
    object
        .get("days")
        .and_then(Value::as_u64)
        .filter(|days| STORE_DAYS.contains(days))
        .ok_or_else(invalid)
}

/// When a store last active at `last_active_at` expires under `expires_after`.
pub(crate) fn store_expires_at(expires_after: Option<&Value>, last_active_at: i64) -> Option<i64> {
    let days = store_days(expires_after?).ok()?;
    Some(last_active_at + i64::try_from(days).unwrap_or(i64::MAX / DAY_MS) * DAY_MS)
}

/// Whether something that expires at `expires_at` has expired at `now`.
#[must_use]
pub fn is_expired(expires_at: Option<i64>, now: i64) -> bool {
    expires_at.is_some_and(|at| at <= now)
}

/// Refuses an expired store.
pub(crate) fn check_store(record: &VectorStoreRecord, now: i64) -> Result<(), KnowledgeError> {
    if is_expired(record.expires_at, now) {
        return Err(KnowledgeError::invalid(
            "vector_store_id",
            format!(
                "vector store `{}` has expired; change its expires_after to use it again",
                record.id
            ),
        ));
    }
    Ok(())
}

/// Deletes the files expired at `now` (their chunks leave every index); returns how many.
pub(crate) async fn sweep(
    store: &dyn KnowledgeStore,
    indexes: &Indexes,
    now: i64,
) -> Result<usize, KnowledgeError> {
    let mut deleted = 0;
    loop {
        let expired = store.expired_files(now, SWEEP_BATCH).await?;
        for file in &expired {
            if store
                .delete_file(&file.tenant_id, &file.id)
                .await?
                .is_some()
            {
                tracing::info!(tenant = %file.tenant_id, file = %file.id, "expired file deleted");
                deleted += 1;
            }
        }
        if expired.len() < SWEEP_BATCH as usize {
            break;
        }
    }
    if deleted > 0 {
        indexes.catch_up(store, None).await?;
    }
    Ok(deleted)
}

/// Sweeps expired files every [`SWEEP_INTERVAL`] until aborted.
pub(crate) fn spawn_sweeper(
    store: Arc<dyn KnowledgeStore>,
    indexes: Arc<Indexes>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(SWEEP_INTERVAL).await;
            if let Err(error) = sweep(store.as_ref(), &indexes, now_millis()).await {
                tracing::warn!(%error, "cannot delete expired files; retrying in a minute");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn file_expiry_is_counted_from_creation_within_openais_bounds() {
        assert_eq!(file_expires_at(1_000, None).unwrap(), None);
        assert_eq!(
            file_expires_at(1_000, Some(3_600)).unwrap(),
            Some(3_601_000)
        );
        for seconds in [0, 3_599, 2_592_001] {
            assert!(file_expires_at(0, Some(seconds)).is_err(), "{seconds}");
        }
    }

    #[test]
    fn store_expiry_counts_days_from_last_activity() {
        let week = json!({"anchor": "last_active_at", "days": 7});
        assert_eq!(store_days(&week).unwrap(), 7);
        assert_eq!(store_expires_at(Some(&week), 5), Some(5 + 7 * DAY_MS));
        assert_eq!(store_expires_at(None, 5), None);
        for bad in [
            json!({"anchor": "created_at", "days": 7}),
            json!({"anchor": "last_active_at", "days": 0}),
            json!({"anchor": "last_active_at", "days": 366}),
            json!({"anchor": "last_active_at", "days": 7, "hours": 1}),
            json!({"anchor": "last_active_at"}),
            json!(7),
        ] {
            assert!(store_days(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn expired_stores_are_refused() {
        let record = VectorStoreRecord {
            id: "vs_1".to_owned(),
            tenant_id: "t".to_owned(),
            name: String::new(),
            metadata: serde_json::Map::new(),
            settings: Value::Null,
            created_at: 0,
            last_active_at: 0,
            expires_at: Some(100),
        };
        assert!(check_store(&record, 99).is_ok());
        let error = check_store(&record, 100).unwrap_err().to_string();
        assert!(
            error.contains("vs_1") && error.contains("expired"),
            "{error}"
        );
        assert!(!is_expired(None, i64::MAX));
    }
}
