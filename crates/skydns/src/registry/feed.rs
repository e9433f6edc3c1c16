//! Applying a shared store's changes (etcd: other instances' writes, lease
//! expiry, records written by other tools) to this instance's index.
//!
//! Each change is applied under its uuid's stripe, so it never interleaves
//! with a local write of the same uuid, and it is idempotent: a record the
//! index already holds as it is changes nothing, a removal of a uuid the
//! index no longer holds is nothing to do.

use tokio_util::sync::CancellationToken;

use super::*;
use crate::store::FeedEvent;

/// Applies `changes` until `token` is cancelled or the feed ends.
pub(crate) async fn run_feed(
    registry: Registry,
    mut changes: mpsc::Receiver<FeedEvent>,
    token: CancellationToken,
) {
    loop {
        let change = tokio::select! {
            () = token.cancelled() => return,
            c = changes.recv() => match c { Some(c) => c, None => return },
        };
        registry.apply_remote(change).await;
    }
}

impl Registry {
    /// Applies one change from the shared store.
    pub(crate) async fn apply_remote(&self, change: FeedEvent) {
        match change {
            FeedEvent::Put(record) => self.remote_put(*record).await,
            FeedEvent::Gone {
                uuid,
                expired,
                fire,
            } => self.remote_gone(&uuid, expired, fire).await,
        }
    }

    async fn remote_put(&self, record: StoredService) {
        let uuid = record.service.uuid.clone();
        let _guard = self.stripe(&uuid).lock().await;
        let held = self
            .inner
            .entries
            .get(uuid.as_str())
            .map(|e| Arc::clone(&e.key().0));
        if let Some(held) = &held
            && held.service.to_service() == record.service
            && self.callbacks_of(held) == record.callbacks
        {
            return; // as held: our own write, or a re-read that found it unchanged
        }
        if let Err(e) = validate::service(&uuid, &record.service, &self.inner.options.domain) {
            tracing::warn!(uuid, error = %e, "record in etcd ignored: not a valid service");
            return;
        }
        let entry = Entry::new(record.service, LEASED, &self.inner.interner);
        if let Some(old) = held {
            self.unapply(&old);
        }
        if !record.callbacks.is_empty() {
            lock(&self.inner.callbacks).insert(Arc::clone(&entry.service.uuid), record.callbacks);
        }
        tracing::info!(uuid, name = %entry.labels, host = %entry.service.host, port = entry.service.port, "registered (from etcd)");
        if self.watched() {
            let now = now_ms();
            self.notify("registered", entry.view(now), now);
        }
        self.apply(entry);
    }

    async fn remote_gone(&self, uuid: &str, expired: bool, fire: bool) {
        let _guard = self.stripe(uuid).lock().await;
        let Some(entry) = self.inner.entries.get(uuid).map(|e| Arc::clone(&e.key().0)) else {
            return;
        };
        let now = now_ms();
        let view = entry.view(now);
        let callbacks = self.unapply(&entry);
        if expired {
            self.inner.metrics.expired.inc();
            tracing::info!(uuid, name = %entry.labels, "expired (its etcd lease ran out)");
            self.notify("expired", view.clone(), now);
        } else {
            tracing::info!(uuid, name = %entry.labels, "removed (from etcd)");
            self.notify("removed", view.clone(), now);
        }
        if fire {
            self.fire_callbacks(callbacks, &view);
        }
    }
}
