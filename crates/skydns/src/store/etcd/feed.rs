//! Keeping an instance's index current: one watch on `<prefix>/`.
//!
//! The load read every record at revision R; the watch goes on from R+1,
//! so nothing written in between is missed. When the watch breaks (etcd
//! unreachable, the revision compacted, the watch cancelled), the feed
//! marks etcd unreachable (writes then fail at once, `/ready` says so, the
//! index keeps answering), backs off, re-reads every record at a new
//! revision R', reports the difference from what it held, and watches from
//! R'+1. Every change is thus applied once: either from the watch, or from
//! the re-read's difference.

use std::{collections::HashMap, sync::atomic::Ordering, time::Duration};

use etcd_client::{EventType, WatchOptions};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{EtcdStore, Held, KeyKind, StoredService};
use crate::{metrics::Metrics, readiness::Readiness};

/// First wait after a broken watch; doubled up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A change made in etcd by another instance or tool (or found by a re-read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEvent {
    /// A record was written: register it, or replace what the uuid held.
    Put(Box<StoredService>),
    /// A record went.
    Gone {
        /// Its uuid.
        uuid: String,
        /// True when its lease ran out; false when an instance removed it.
        expired: bool,
        /// True for the one instance that is to fire its callbacks.
        fire: bool,
    },
}

/// Why following the watch stopped.
enum Stop {
    Cancelled,
    Broken(String),
}

impl EtcdStore {
    /// Follows etcd until `token` is cancelled, sending every change to
    /// `changes` (the registry applies them). Owned by the server.
    pub async fn follow(
        self: std::sync::Arc<Self>,
        changes: mpsc::Sender<FeedEvent>,
        readiness: Readiness,
        metrics: std::sync::Arc<Metrics>,
        token: CancellationToken,
    ) {
        metrics.store_connected.set(1);
        let mut backoff = MIN_BACKOFF;
        loop {
            let why = match self.watch(&changes, &token).await {
                Stop::Cancelled => return,
                Stop::Broken(why) => why,
            };
            if self.reachable.swap(false, Ordering::AcqRel) {
                metrics.store_connected.set(0);
                readiness.set_store_unreachable(true);
                tracing::error!(
                    etcd = %self.endpoints,
                    revision = self.revision.load(Ordering::Acquire),
                    reason = %why,
                    "etcd unreachable: DNS answers from the index as it was; API writes get 503"
                );
            }
            // Until a re-read succeeds: wait, retry.
            loop {
                tokio::select! {
                    () = token.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                match self.resync(&changes).await {
                    Ok(changed) => {
                        self.reachable.store(true, Ordering::Release);
                        metrics.store_connected.set(1);
                        readiness.set_store_unreachable(false);
                        tracing::warn!(
                            etcd = %self.endpoints,
                            revision = self.revision.load(Ordering::Acquire),
                            changed,
                            "etcd reachable again: index re-read and current"
                        );
                        backoff = MIN_BACKOFF;
                        break;
                    }
                    Err(e) => tracing::debug!(error = %e, "etcd still unreachable"),
                }
            }
        }
    }

    /// Watches from the revision after the index's until it breaks.
    async fn watch(&self, changes: &mpsc::Sender<FeedEvent>, token: &CancellationToken) -> Stop {
        let from = self.revision.load(Ordering::Acquire) + 1;
        let options = WatchOptions::new()
            .with_prefix()
            .with_prev_key()
            .with_progress_notify()
            .with_start_revision(from);
        let mut client = self.client.watch_client();
        let mut stream = tokio::select! {
            () = token.cancelled() => return Stop::Cancelled,
            s = client.watch(self.layout.root(), Some(options)) => match s {
                Ok(s) => s,
                Err(e) => return Stop::Broken(e.to_string()),
            },
        };
        loop {
            let message = tokio::select! {
                () = token.cancelled() => return Stop::Cancelled,
                m = stream.message() => m,
            };
            let resp = match message {
                Ok(Some(resp)) => resp,
                Ok(None) => return Stop::Broken("the watch stream ended".into()),
                Err(e) => return Stop::Broken(e.to_string()),
            };
            if resp.compact_revision() > 0 {
                return Stop::Broken(format!(
                    "revision {from} was compacted (now {})",
                    resp.compact_revision()
                ));
            }
            if resp.canceled() {
                return Stop::Broken(format!("watch cancelled: {}", resp.cancel_reason()));
            }
            if !self.apply_events(resp.events(), changes).await {
                return Stop::Cancelled; // nobody applies changes: shutting down
            }
            if let Some(header) = resp.header() {
                self.revision.fetch_max(header.revision(), Ordering::AcqRel);
            }
        }
    }

    /// Turns one watch response's events into changes; false when the
    /// registry no longer receives them.
    async fn apply_events(
        &self,
        events: &[etcd_client::Event],
        changes: &mpsc::Sender<FeedEvent>,
    ) -> bool {
        // Removals by an instance leave a marker in the same transaction,
        // so in the same response.
        let removed: Vec<String> = events
            .iter()
            .filter(|e| e.event_type() == EventType::Put)
            .filter_map(|e| e.kv())
            .filter_map(
                |kv| match self.layout.kind(&String::from_utf8_lossy(kv.key())) {
                    KeyKind::Fired(uuid) => Some(uuid.to_string()),
                    _ => None,
                },
            )
            .collect();
        for event in events {
            let Some(kv) = event.kv() else { continue };
            let change = match event.event_type() {
                EventType::Put => match self.parse(kv) {
                    None => continue,
                    Some(Err((key, why))) => {
                        tracing::warn!(key, reason = %why, "etcd record ignored");
                        continue;
                    }
                    Some(Ok((record, held))) => {
                        let uuid = record.service.uuid.clone();
                        let known = self
                            .held
                            .get(&uuid)
                            .is_some_and(|h| h.modified >= held.modified);
                        if known {
                            continue; // our own write, applied already
                        }
                        self.held.insert(uuid, held);
                        FeedEvent::Put(Box::new(record))
                    }
                },
                EventType::Delete => {
                    let key = String::from_utf8_lossy(kv.key()).into_owned();
                    let Some(uuid) = self.uuid_of(&key, event.prev_kv()) else {
                        continue;
                    };
                    let Some((_, held)) = self.held.remove_if(&uuid, |_, h| h.key == key) else {
                        continue; // our own removal, applied already
                    };
                    let expired = !removed.contains(&uuid);
                    self.gone(uuid, &held, expired).await
                }
            };
            if changes.send(change).await.is_err() {
                return false;
            }
        }
        true
    }

    /// The uuid a deleted record's key held.
    fn uuid_of(&self, key: &str, prev: Option<&etcd_client::KeyValue>) -> Option<String> {
        if !matches!(self.layout.kind(key), KeyKind::Record(_)) {
            return None;
        }
        if let Some(Some(Ok((record, _)))) = prev.map(|kv| self.parse(kv)) {
            return Some(record.service.uuid);
        }
        // No previous value (compacted): find it by key.
        self.held
            .iter()
            .find(|h| h.key == key)
            .map(|h| h.key().clone())
    }

    /// The change for a record that went; claims its callbacks when it expired.
    async fn gone(&self, uuid: String, held: &Held, expired: bool) -> FeedEvent {
        let fire = if expired && held.has_callbacks {
            match self.claim(&uuid, held.created).await {
                Ok(won) => won,
                Err(e) => {
                    tracing::warn!(uuid, error = %e, "cannot claim an expired service's callbacks; another instance fires them");
                    false
                }
            }
        } else {
            false
        };
        FeedEvent::Gone {
            uuid,
            expired,
            fire,
        }
    }

    /// Re-reads every record and reports what differs from what was held.
    /// Returns how many changes it sent.
    async fn resync(&self, changes: &mpsc::Sender<FeedEvent>) -> Result<usize, super::StoreError> {
        let mut fresh: HashMap<String, (StoredService, Held)> = HashMap::new();
        let mut from = Some(self.layout.zone().as_bytes().to_vec());
        let mut revision = 0;
        while let Some(start) = from {
            let page = self.read_page(start, revision).await?;
            revision = page.revision;
            from = page.next;
            for (record, held) in page.records {
                fresh.insert(record.service.uuid.clone(), (record, held));
            }
        }
        let mut events = Vec::new();
        let vanished: Vec<(String, Held)> = self
            .held
            .iter()
            .filter(|h| {
                fresh
                    .get(h.key())
                    .is_none_or(|(_, f)| f.created != h.created)
            })
            .map(|h| (h.key().clone(), h.value().clone()))
            .collect();
        for (uuid, held) in vanished {
            self.held.remove(&uuid);
            let expired = !self.was_removed(&uuid, held.created).await?;
            events.push(self.gone(uuid, &held, expired).await);
        }
        for (uuid, (record, held)) in fresh {
            let changed = self
                .held
                .get(&uuid)
                .is_none_or(|h| h.modified != held.modified);
            if changed {
                self.held.insert(uuid, held);
                events.push(FeedEvent::Put(Box::new(record)));
            }
        }
        self.revision.store(revision, Ordering::Release);
        let count = events.len();
        for event in events {
            if changes.send(event).await.is_err() {
                break;
            }
        }
        Ok(count)
    }
}
