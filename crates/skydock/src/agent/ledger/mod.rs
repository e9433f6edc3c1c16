//! The ledger: for each uuid, what this agent wants in skydns and what skydns
//! holds there as far as the agent knows, plus the queue of uuids whose two
//! sides differ (level-triggered: a uuid is queued, not an operation, and
//! the worker that takes it syncs it to the *latest* want).
//!
//! Shared behind an `Arc` by the event loop (it writes wants), the sync pool
//! (it takes jobs and records what it found), heartbeats and the registry
//! reconcile (they read what is held, and report what skydns lost or another
//! owner took).
//!
//! LOCKING: one std `Mutex` over the maps, held only inside these
//! synchronous methods and never across an `.await`; a std mutex, not
//! tokio's, because no critical section waits on anything. Waiting for
//! progress is done on two `Notify`s: `wake` (work was queued: the
//! dispatcher) and `settled` (a job finished: `wait_*`).
//!
//! Invariants: a uuid is in at most one of `queued` and `in_flight`; a uuid
//! made dirty while in flight goes to `redo` and is queued again when its
//! flight ends, so there is at most one registry call in flight per uuid and
//! the calls for one uuid happen in order.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

mod slot;
#[cfg(test)]
mod tests;

use skydns_api::Service;
use tokio::sync::Notify;

use self::slot::Slot;
pub(crate) use self::slot::{Held, same_service};
use crate::{control::AgentMetrics, naming::Registration};

/// A uuid to sync, with both sides as they were when it was taken.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub(crate) uuid: String,
    pub(crate) want: Option<Registration>,
    pub(crate) held: Held,
    /// Transient failures in a row before this attempt.
    pub(crate) failures: u32,
}

/// What a job found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Done: skydns holds this now.
    Settled(Held),
    /// A transient failure (skydns unreachable, 5xx): try again after a backoff.
    Retry(Held),
    /// skydns refused the registration (400, 401): tried again at the next
    /// reconcile, or when the want changes.
    Stuck(Held),
}

/// What a listing of this agent's registrations changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Fixes {
    /// Ours in skydns and not wanted: queued for removal.
    pub(crate) stale: Vec<String>,
    /// Wanted, believed ours, and missing from skydns: queued to register again.
    pub(crate) lost: Vec<String>,
    /// Held by another owner: queued to try taking them again.
    pub(crate) foreign: usize,
}

/// Counts for the gauges.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Wanted and ours in skydns.
    pub(crate) ours: usize,
    /// Wanted and held by another owner.
    pub(crate) foreign: usize,
    /// Queued, in flight or waiting for a retry.
    pub(crate) pending: usize,
}

#[derive(Debug, Default)]
struct Inner {
    slots: HashMap<String, Slot>,
    /// Dirty uuids in the order they became dirty.
    queue: VecDeque<String>,
    /// The uuids in `queue`.
    queued: HashSet<String>,
    /// uuids a worker is syncing now.
    in_flight: HashSet<String>,
    /// uuids made dirty while in flight.
    redo: HashSet<String>,
}

/// The shared ledger (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    inner: Mutex<Inner>,
    /// Work was queued (one stored permit: the dispatcher never misses it).
    wake: Notify,
    /// A job finished.
    settled: Notify,
}

/// Backoff after `failures` transient failures in a row: 250 ms doubling to 3 s.
pub(crate) fn retry_backoff(failures: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1 << failures.min(4))).min(Duration::from_secs(3))
}

impl Inner {
    fn mark_dirty(&mut self, uuid: &str) -> bool {
        if self.in_flight.contains(uuid) {
            self.redo.insert(uuid.to_string());
            return false;
        }
        if let Some(slot) = self.slots.get_mut(uuid) {
            slot.retry_at = None;
        }
        if self.queued.insert(uuid.to_string()) {
            self.queue.push_back(uuid.to_string());
            return true;
        }
        false
    }

    /// Drops the slot if nothing is left to do for it.
    fn tidy(&mut self, uuid: &str) {
        let idle = !self.in_flight.contains(uuid) && !self.queued.contains(uuid);
        if idle && self.slots.get(uuid).is_some_and(Slot::is_empty) {
            self.slots.remove(uuid);
        }
    }

    fn is_pending(&self, uuid: &str) -> bool {
        self.queued.contains(uuid)
            || self.in_flight.contains(uuid)
            || self
                .slots
                .get(uuid)
                .is_some_and(|s| s.retry_at.is_some() && s.needs_work())
    }
}

impl Ledger {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock means a panic in one of the short sections below,
        // which leave the maps consistent at every step: keep going.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn dirty(&self, inner: &mut Inner, uuid: &str) {
        if inner.mark_dirty(uuid) {
            self.wake.notify_one();
        }
    }

    /// Sets what this agent wants at `uuid` (`None`: nothing) and queues the
    /// uuid if that makes a registry call due.
    pub(crate) fn want(&self, uuid: &str, want: Option<Registration>) {
        let mut inner = self.lock();
        let slot = inner
            .slots
            .entry(uuid.to_string())
            .or_insert_with(|| Slot::new(Held::Absent));
        if slot.want == want {
            return;
        }
        slot.want = want;
        let due = slot.needs_work();
        if inner.in_flight.contains(uuid) {
            // Whatever the flight finds, look again after it.
            inner.redo.insert(uuid.to_string());
        } else if due {
            self.dirty(&mut inner, uuid);
        } else {
            inner.tidy(uuid);
        }
    }

    /// Wants nothing anywhere (`-deregister-on-exit`).
    pub(crate) fn clear_wants(&self) {
        let uuids: Vec<String> = self.lock().slots.keys().cloned().collect();
        for uuid in uuids {
            self.want(&uuid, None);
        }
    }

    /// Waits until work may be queued.
    pub(crate) async fn wait_for_work(&self) {
        self.wake.notified().await;
    }

    /// Takes the oldest dirty uuid that still needs work.
    pub(crate) fn next_job(&self) -> Option<Job> {
        let mut inner = self.lock();
        while let Some(uuid) = inner.queue.pop_front() {
            inner.queued.remove(&uuid);
            let Some(slot) = inner.slots.get_mut(&uuid) else {
                continue;
            };
            if !slot.needs_work() {
                slot.retry_at = None;
                inner.tidy(&uuid);
                continue;
            }
            slot.retry_at = None;
            slot.retake = false;
            let job = Job {
                uuid: uuid.clone(),
                want: slot.want.clone(),
                held: slot.held.clone(),
                failures: slot.failures,
            };
            inner.in_flight.insert(uuid);
            return Some(job);
        }
        None
    }

    /// Records what the job on `uuid` found, and queues it again if its want
    /// changed meanwhile.
    pub(crate) fn finish(&self, uuid: &str, outcome: Outcome) {
        let mut inner = self.lock();
        inner.in_flight.remove(uuid);
        let redo = inner.redo.remove(uuid);
        let stuck = matches!(outcome, Outcome::Stuck(_));
        if let Some(slot) = inner.slots.get_mut(uuid) {
            match outcome {
                Outcome::Settled(held) | Outcome::Stuck(held) => {
                    slot.set_held(held);
                    slot.failures = 0;
                    slot.retry_at = None;
                }
                Outcome::Retry(held) => {
                    slot.set_held(held);
                    slot.retry_at = Some(Instant::now() + retry_backoff(slot.failures));
                    slot.failures = slot.failures.saturating_add(1);
                }
            }
            let due = slot.needs_work();
            if due && !redo && slot.retry_at.is_none() && !stuck {
                // Settled yet still due (an answer that raced a change):
                // look again soon rather than never.
                slot.retry_at = Some(Instant::now() + retry_backoff(0));
            }
            if redo && due {
                self.dirty(&mut inner, uuid);
            }
        }
        inner.tidy(uuid);
        drop(inner);
        self.settled.notify_waiters();
    }

    /// Forgets a job that never reported (its task failed): queued again.
    pub(crate) fn abandon(&self, uuid: &str) {
        let mut inner = self.lock();
        inner.in_flight.remove(uuid);
        inner.redo.remove(uuid);
        if inner.slots.get(uuid).is_some_and(Slot::needs_work) {
            self.dirty(&mut inner, uuid);
        }
        drop(inner);
        self.settled.notify_waiters();
    }

    /// Queues the failed uuids whose backoff is over.
    pub(crate) fn queue_due_retries(&self, now: Instant) {
        let mut inner = self.lock();
        let due: Vec<String> = inner
            .slots
            .iter()
            .filter(|(_, s)| s.retry_at.is_some_and(|t| t <= now))
            .map(|(u, _)| u.clone())
            .collect();
        for uuid in due {
            self.dirty(&mut inner, &uuid);
        }
    }

    /// The registrations to heartbeat: wanted, ours, and not being synced
    /// (uuid, TTL, generation).
    pub(crate) fn beats(&self) -> Vec<(String, u32, u64)> {
        let inner = self.lock();
        inner
            .slots
            .iter()
            .filter(|(u, _)| !inner.in_flight.contains(*u))
            .filter_map(|(u, s)| match (&s.want, &s.held) {
                (Some(r), Held::Ours(_)) => Some((u.clone(), r.service.ttl, s.generation)),
                _ => None,
            })
            .collect()
    }

    /// A heartbeat found `uuid` gone (404): unless the slot changed since
    /// (`generation`), it is absent now and queued to register again.
    /// True when that was news.
    pub(crate) fn heartbeat_lost(&self, uuid: &str, generation: u64) -> bool {
        self.heartbeat_found(uuid, generation, Held::Absent)
    }

    /// A heartbeat was refused (409): another owner holds `uuid` now.
    /// True when that was news.
    pub(crate) fn heartbeat_taken(&self, uuid: &str, generation: u64) -> bool {
        self.heartbeat_found(uuid, generation, Held::Foreign(None))
    }

    fn heartbeat_found(&self, uuid: &str, generation: u64, held: Held) -> bool {
        let mut inner = self.lock();
        if inner.in_flight.contains(uuid) {
            return false;
        }
        let Some(slot) = inner.slots.get_mut(uuid) else {
            return false;
        };
        if slot.generation != generation || !matches!(slot.held, Held::Ours(_)) {
            return false;
        }
        slot.set_held(held);
        if slot.needs_work() {
            self.dirty(&mut inner, uuid);
        }
        inner.tidy(uuid);
        true
    }

    /// Records this agent's registrations listed by skydns at start, before
    /// the wants are known, so that finding them wanted costs no call.
    pub(crate) fn seed(&self, listed: &[Service]) {
        let mut inner = self.lock();
        for s in listed {
            let slot = inner
                .slots
                .entry(s.uuid.clone())
                .or_insert_with(|| Slot::new(Held::Absent));
            if slot.held == Held::Absent {
                slot.set_held(Held::Ours(s.clone()));
            }
        }
    }

    /// Compares a listing of this agent's registrations, taken at `since`,
    /// with the ledger, and queues what it shows to be due: ours that are not
    /// wanted (stale), wanted ones skydns lost, wanted ones another owner
    /// holds (to try taking them again), and anything due but not queued.
    pub(crate) fn apply_listing(&self, listed: &[Service], since: Instant) -> Fixes {
        let mut inner = self.lock();
        let mut fixes = Fixes::default();
        let present: HashMap<&str, &Service> =
            listed.iter().map(|s| (s.uuid.as_str(), s)).collect();
        for s in listed {
            if inner.in_flight.contains(&s.uuid) {
                continue;
            }
            let slot = inner
                .slots
                .entry(s.uuid.clone())
                .or_insert_with(|| Slot::new(Held::Absent));
            if !matches!(slot.held, Held::Ours(_)) {
                slot.set_held(Held::Ours(s.clone()));
            }
            if slot.want.is_none() && !inner.queued.contains(&s.uuid) {
                fixes.stale.push(s.uuid.clone());
            }
        }
        let mut due = Vec::new();
        for (uuid, slot) in &mut inner.slots {
            if !present.contains_key(uuid.as_str())
                && slot.want.is_some()
                && matches!(slot.held, Held::Ours(_))
                && slot.held_at < since
            {
                slot.set_held(Held::Absent);
                fixes.lost.push(uuid.clone());
            }
            if slot.want.is_some() && matches!(slot.held, Held::Foreign(_)) {
                fixes.foreign += 1;
                slot.retake = true;
                due.push(uuid.clone());
            } else if slot.needs_work() {
                due.push(uuid.clone());
            }
        }
        for uuid in due {
            if inner.in_flight.contains(&uuid) {
                continue;
            }
            self.dirty(&mut inner, &uuid);
        }
        fixes.stale.sort();
        fixes.lost.sort();
        fixes
    }

    /// Nothing queued, in flight or waiting for a retry.
    pub(crate) fn is_idle(&self) -> bool {
        let inner = self.lock();
        inner.queue.is_empty()
            && inner.in_flight.is_empty()
            && !inner
                .slots
                .values()
                .any(|s| s.retry_at.is_some() && s.needs_work())
    }

    /// True when none of `uuids` has a registry call due or under way.
    pub(crate) fn settled(&self, uuids: &[String]) -> bool {
        let inner = self.lock();
        uuids.iter().all(|u| !inner.is_pending(u))
    }

    /// Waits up to `within` for `done` to hold, checking after every
    /// finished job; returns whether it did.
    pub(crate) async fn wait_until(&self, within: Duration, done: impl Fn(&Self) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.settled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if done(self) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return done(self);
            }
        }
    }

    /// What the gauges show.
    pub(crate) fn counts(&self) -> Counts {
        let inner = self.lock();
        let mut c = Counts::default();
        for (uuid, s) in &inner.slots {
            match (&s.want, &s.held) {
                (Some(_), Held::Ours(_)) => c.ours += 1,
                (Some(_), Held::Foreign(_)) => c.foreign += 1,
                _ => {}
            }
            if inner.is_pending(uuid) {
                c.pending += 1;
            }
        }
        c
    }

    /// Sets the gauges.
    pub(crate) fn publish(&self, metrics: &AgentMetrics) {
        let c = self.counts();
        let n = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        metrics.registrations.set(n(c.ours));
        metrics.foreign.set(n(c.foreign));
        metrics.pending.set(n(c.pending));
    }
}
