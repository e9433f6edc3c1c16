//! Identical questions in flight are sent upstream once: the first asker
//! leads, the others wait for its outcome.

use std::{
    collections::{HashMap, hash_map},
    sync::Mutex,
};

use tokio::sync::broadcast;

use super::{Outcome, cache::CacheKey};

/// A question in flight: its cache key and whether it goes over TCP.
pub(super) type FlightKey = (CacheKey, bool);

/// Identical queries in flight: the first asker (the leader) sends, the
/// others wait for its outcome.
///
/// The leader's entry is removed by a drop guard ([`Flight`]), so a leader
/// whose future is dropped before it is done (its TCP client closed, say)
/// never leaves the question blocked: its waiters see the channel close and
/// one of them leads a new attempt. Waiters never wait past the forwarding
/// deadline either.
#[derive(Debug, Default)]
pub(crate) struct Coalescer {
    inflight: Mutex<InFlight>,
}

type InFlight = HashMap<FlightKey, broadcast::Sender<Outcome>, foldhash::fast::RandomState>;

/// What joining the in-flight questions gave: lead the question, or wait.
pub(super) enum Joined<'a> {
    Lead(Flight<'a>),
    Wait(broadcast::Receiver<Outcome>),
}

impl Coalescer {
    fn lock(&self) -> std::sync::MutexGuard<'_, InFlight> {
        self.inflight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn join(&self, key: FlightKey) -> Joined<'_> {
        let mut inflight = self.lock();
        let (key, tx) = match inflight.entry(key) {
            hash_map::Entry::Occupied(flight) => return Joined::Wait(flight.get().subscribe()),
            hash_map::Entry::Vacant(free) => {
                let key = free.key().clone();
                let (tx, _) = broadcast::channel(1);
                free.insert(tx.clone());
                (key, tx)
            }
        };
        Joined::Lead(Flight {
            coalescer: self,
            key: Some(key),
            tx,
        })
    }

    /// Questions in flight now.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// The leader's hold on a question in flight: [`Flight::finish`] hands the
/// outcome to the waiters; dropping it unfinished just removes the question
/// (the waiters' channel closes).
pub(super) struct Flight<'a> {
    coalescer: &'a Coalescer,
    key: Option<FlightKey>,
    tx: broadcast::Sender<Outcome>,
}

impl Flight<'_> {
    pub(super) fn finish(mut self, outcome: &Outcome) {
        self.remove();
        let _ = self.tx.send(outcome.clone());
    }

    fn remove(&mut self) {
        let Some(key) = self.key.take() else {
            return;
        };
        let mut inflight = self.coalescer.lock();
        if let hash_map::Entry::Occupied(flight) = inflight.entry(key)
            && flight.get().same_channel(&self.tx)
        {
            flight.remove();
        }
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        self.remove();
    }
}
