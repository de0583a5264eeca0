//! Retention: events older than `store.retention_days` are deleted once at start and then
//! every day, by a Pingora background service (so it stops with the server). Contacts are kept
//! (see [`Store::delete_older_than`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::{background_service, BackgroundService, GenBackgroundService};

use super::time::{now_ms, DAY_MS};
use crate::store::{Store, StoreError};

/// How often retention runs after the first time.
pub const INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// The oldest time kept when keeping `days` days at `now_ms`; `None` for 0 (keep forever).
pub fn cutoff(days: u32, now_ms: i64) -> Option<i64> {
    (days > 0).then(|| now_ms - i64::from(days) * DAY_MS)
}

/// Deletes what is older than `days` days; returns how many events went.
pub async fn run_once(store: Arc<dyn Store>, days: u32, now_ms: i64) -> Result<u64, StoreError> {
    let Some(cutoff) = cutoff(days, now_ms) else {
        return Ok(0);
    };
    tokio::task::spawn_blocking(move || store.delete_older_than(cutoff))
        .await
        .unwrap_or_else(|e| {
            Err(StoreError::Unavailable(format!(
                "retention task failed: {e}"
            )))
        })
}

/// The background task. Build it with [`retention_service`].
pub struct Retention {
    store: Arc<dyn Store>,
    days: u32,
}

impl Retention {
    pub fn new(store: Arc<dyn Store>, days: u32) -> Self {
        Retention { store, days }
    }
}

#[async_trait]
impl BackgroundService for Retention {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        if self.days == 0 {
            tracing::info!("store.retention_days is 0: events are kept forever");
            return;
        }
        loop {
            match run_once(self.store.clone(), self.days, now_ms()).await {
                Ok(n) => tracing::info!(
                    deleted = n,
                    days = self.days,
                    "retention: deleted events older than the retention period"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "retention: deleting old events failed; retrying tomorrow")
                }
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(INTERVAL) => {}
            }
        }
    }
}

/// A service for `Server::add_service`: deletes events older than `days` days (none when 0)
/// at start and then daily.
pub fn retention_service(store: Arc<dyn Store>, days: u32) -> GenBackgroundService<Retention> {
    background_service("smproxy retention", Retention::new(store, days))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Event, EventKind, SqliteStore};

    #[test]
    fn cutoff_days() {
        assert_eq!(cutoff(0, 10 * DAY_MS), None);
        assert_eq!(cutoff(3, 10 * DAY_MS), Some(7 * DAY_MS));
    }

    #[tokio::test]
    async fn deletes_only_old_events() {
        let store = Arc::new(SqliteStore::open_in_memory().unwrap());
        let now = 400 * DAY_MS;
        let page = |ts| Event::new(EventKind::Pageview, ts, "s", "https://a.example/", "/");
        let (old, new) = (page(now - 396 * DAY_MS), page(now - DAY_MS));
        store.insert_batch(&[old, new]).unwrap();
        assert_eq!(run_once(store.clone(), 0, now).await.unwrap(), 0);
        assert_eq!(run_once(store.clone(), 395, now).await.unwrap(), 1);
        assert_eq!(store.count_events(None).unwrap(), 1);
    }
}
