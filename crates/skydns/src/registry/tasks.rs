//! The registry's background tasks. Each runs until its cancellation token
//! fires; `server::run` owns the tokens and joins the tasks on shutdown.
//!
//! - [`run_expiry`]: sleeps until the earliest deadline (or a new earlier one),
//!   then purges what expired and fires callbacks.
//! - [`run_heartbeat_flush`]: writes heartbeat deadlines to the store once a
//!   second, in one batch, and once more on shutdown.
//! - [`run_callbacks`]: delivers callbacks over HTTP, off the request path,
//!   each with a timeout, so a slow listener never stalls the registry.

use std::{cmp::Reverse, mem, net::IpAddr, sync::Arc, time::Duration};

use tokio::{sync::Semaphore, task::JoinSet};
use tokio_util::sync::CancellationToken;

use super::{Delivery, Registry, lock, now_ms};
use crate::store::Op;

/// How long an idle reaper sleeps when nothing is due.
const IDLE: Duration = Duration::from_secs(3600);
/// How often heartbeat deadlines are written to the store.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Time allowed to one callback delivery.
const CALLBACK_TIMEOUT: Duration = Duration::from_secs(5);
/// Deliveries in flight at once.
const CALLBACK_CONCURRENCY: usize = 32;

/// Purges services the moment their deadline passes.
pub(crate) async fn run_expiry(registry: Registry, token: CancellationToken) {
    let inner = &registry.inner;
    loop {
        let next = lock(&inner.deadlines).peek().map(|Reverse((d, _))| *d);
        let wait = next.map_or(IDLE, |d| Duration::from_millis(d.saturating_sub(now_ms())));
        tokio::select! {
            () = token.cancelled() => return,
            () = inner.deadline_changed.notified() => continue,
            () = tokio::time::sleep(wait) => {}
        }
        purge_expired(&registry).await;
    }
}

async fn purge_expired(registry: &Registry) {
    let inner = &registry.inner;
    let now = now_ms();
    let due: Vec<Arc<str>> = {
        let mut heap = lock(&inner.deadlines);
        let mut due = Vec::new();
        while heap.peek().is_some_and(|Reverse((d, _))| *d <= now) {
            if let Some(Reverse((_, id))) = heap.pop() {
                due.push(id);
            }
        }
        due
    };
    if due.is_empty() {
        return;
    }
    // Their stripes: no register or remove of these uuids runs between this
    // check and the purge; writes to other uuids go on meanwhile.
    let _guards = registry.lock_stripes(due.iter().map(|id| &**id)).await;
    let now = now_ms();
    let mut expired: Vec<Arc<super::Entry>> = Vec::new();
    for id in due {
        let Some(entry) = inner.entries.get(&*id).map(|e| Arc::clone(&e.key().0)) else {
            continue;
        };
        if entry.is_live(now) {
            // A heartbeat moved the deadline later without filing it (see
            // `Registry::heartbeat`): file it now.
            let deadline = entry.expires_ms();
            if deadline != super::NEVER {
                registry.push_deadline(deadline, id);
            }
        } else {
            expired.push(entry);
        }
    }
    if expired.is_empty() {
        return;
    }
    let ops = expired
        .iter()
        .map(|e| Op::Remove(e.service.uuid.to_string()))
        .collect();
    if let Err(e) = inner.store.commit(ops).await {
        // Memory is purged anyway: a stale record on disk is expired by its
        // deadline when it is loaded again.
        tracing::warn!(error = %e, services = expired.len(), "cannot remove expired services from the store");
    }
    for entry in expired {
        let view = entry.view(now);
        let callbacks = registry.unapply(&entry);
        inner.metrics.expired.inc();
        registry.notify("expired", view.clone(), now);
        tracing::info!(uuid = %entry.service.uuid, name = %entry.labels, "expired");
        registry.fire_callbacks(callbacks, &view);
    }
}

/// Writes batched heartbeat deadlines to the store every [`FLUSH_EVERY`].
pub(crate) async fn run_heartbeat_flush(registry: Registry, token: CancellationToken) {
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stop = tokio::select! {
            () = token.cancelled() => true,
            _ = tick.tick() => false,
        };
        flush_heartbeats(&registry).await;
        if stop {
            return;
        }
    }
}

pub(crate) async fn flush_heartbeats(registry: &Registry) {
    let inner = &registry.inner;
    let batch = mem::take(&mut *lock(&inner.dirty));
    if batch.is_empty() {
        return;
    }
    // No lock: a `Touch` only updates a record the store holds, so a flush
    // never resurrects one removed meanwhile; writes go on during the fsync.
    // (A uuid removed and registered again within the second may get the
    // earlier incarnation's heartbeat deadline on disk until its next beat.)
    let deadlines: Vec<(String, u64)> = batch
        .iter()
        .filter(|(id, _)| inner.entries.contains_key(&***id))
        .map(|(id, d)| (id.to_string(), *d))
        .collect();
    if let Err(e) = inner.store.touch(deadlines).await {
        tracing::warn!(error = %e, "cannot persist heartbeats; will retry");
        let mut dirty = lock(&inner.dirty);
        for (id, d) in batch {
            dirty.entry(id).or_insert(d);
        }
    }
}

/// Delivers callbacks until cancelled.
pub(crate) async fn run_callbacks(registry: Registry, token: CancellationToken) {
    let Some(mut rx) = lock(&registry.inner.deliveries_rx).take() else {
        tracing::error!("callback dispatcher started twice");
        return;
    };
    let http = match reqwest::Client::builder().timeout(CALLBACK_TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the callback HTTP client; callbacks disabled");
            return;
        }
    };
    let permits = Arc::new(Semaphore::new(CALLBACK_CONCURRENCY));
    let mut inflight = JoinSet::new();
    loop {
        let delivery = tokio::select! {
            () = token.cancelled() => break,
            d = rx.recv() => match d { Some(d) => d, None => break },
        };
        while inflight.try_join_next().is_some() {}
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            break;
        };
        let http = http.clone();
        let metrics = Arc::clone(&registry.inner.metrics);
        inflight.spawn(async move {
            let _permit = permit;
            if let Err(e) = deliver(&http, &delivery).await {
                metrics.callback_failures.inc();
                tracing::warn!(callback = %delivery.callback.uuid, reply = %delivery.callback.reply, error = %e, "callback failed");
            }
        });
    }
    inflight.abort_all();
}

async fn deliver(http: &reqwest::Client, d: &Delivery) -> Result<(), reqwest::Error> {
    let host = match d.callback.reply.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
        _ => d.callback.reply.clone(),
    };
    let url = format!(
        "http://{host}:{}/skydns/callbacks/{}",
        d.callback.port, d.callback.uuid
    );
    http.delete(url)
        .json(&d.service)
        .send()
        .await?
        .error_for_status()?;
    tracing::debug!(callback = %d.callback.uuid, "callback delivered");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::test_support::*;

    #[tokio::test]
    async fn a_service_kept_alive_by_heartbeats_is_purged_once_they_stop() {
        let registry = registry().await;
        let token = tokio_util::sync::CancellationToken::new();
        let reaper = tokio::spawn(run_expiry(registry.clone(), token.clone()));
        registry.register("u1", svc()).await.expect("register");
        // The first deadline (1 s) passes while heartbeats hold it alive...
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(400)).await;
            registry.heartbeat("u1", 2, None).expect("heartbeat");
        }
        assert_eq!(registry.len(), 1, "alive while beating");
        // ...then it expires one TTL after the last beat, and is purged.
        tokio::time::sleep(Duration::from_millis(2600)).await;
        assert_eq!(registry.len(), 0, "purged after the beats stop");
        token.cancel();
        reaper.await.expect("reaper");
    }

    #[tokio::test]
    async fn writes_go_on_while_the_heartbeat_flush_waits_for_its_fsync() {
        let store = GatedStore::new(|ops| ops.iter().any(|op| matches!(op, Op::Touch(..))));
        let registry = registry_on(Arc::clone(&store)).await;
        let mut s = svc();
        s.ttl = 60;
        registry.register("u1", s).await.expect("register");
        registry.heartbeat("u1", 60, None).expect("heartbeat");
        let flush = tokio::spawn({
            let r = registry.clone();
            async move { flush_heartbeats(&r).await }
        });
        store.arrived.notified().await;
        registers_meanwhile(&registry, "heartbeat flush").await;
        store.gate.add_permits(1);
        flush.await.expect("flush");
    }

    #[tokio::test]
    async fn writes_go_on_while_the_purge_waits_for_its_fsync() {
        let store = GatedStore::new(|ops| ops.iter().any(|op| matches!(op, Op::Remove(_))));
        let registry = registry_on(Arc::clone(&store)).await;
        registry.register("u1", svc()).await.expect("register"); // TTL 1 s
        let token = tokio_util::sync::CancellationToken::new();
        let reaper = tokio::spawn(run_expiry(registry.clone(), token.clone()));
        store.arrived.notified().await;
        registers_meanwhile(&registry, "purge").await;
        store.gate.add_permits(1);
        assert!(
            eventually_len(&registry, 1).await,
            "u1 purged once its fsync is done"
        );
        token.cancel();
        reaper.await.expect("reaper");
    }
}
