//! The change feed (`GET /events`) and the recent expiries (status page).

use super::*;

/// What happened to a service, for watchers (`GET /events`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    /// `registered`, `heartbeat`, `removed` or `expired`.
    pub kind: &'static str,
    /// The service as the API shows it at that moment.
    pub service: Service,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// Changes a slow watcher may fall behind by before it misses some.
const CHANGES_KEPT: usize = 1024;
/// How many recent expiries are remembered for the status page.
const RECENT_EXPIRIES: usize = 50;

impl Registry {
    /// Watches registry changes from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Change> {
        self.inner
            .changes
            .get_or_init(|| tokio::sync::broadcast::channel(CHANGES_KEPT).0)
            .subscribe()
    }

    /// Whether anybody watches changes (building one costs a service's view).
    pub(super) fn watched(&self) -> bool {
        self.inner
            .changes
            .get()
            .is_some_and(|tx| tx.receiver_count() > 0)
    }

    /// The most recent expiries, oldest first.
    pub fn recent_expiries(&self) -> Vec<Change> {
        lock(&self.inner.expiries).iter().cloned().collect()
    }

    pub(super) fn notify(&self, kind: &'static str, service: Service, at_ms: u64) {
        let change = Change {
            kind,
            service,
            at_ms,
        };
        if kind == "expired" {
            let mut recent = lock(&self.inner.expiries);
            if recent.len() == RECENT_EXPIRIES {
                recent.pop_front();
            }
            recent.push_back(change.clone());
        }
        if let Some(tx) = self.inner.changes.get() {
            let _ = tx.send(change);
        }
    }
}
