//! The service registry: the single source of truth that the API writes and
//! DNS reads.
//!
//! [`Registry`] is a cheap-to-clone handle (`Arc` inside). Entries live in a
//! `DashMap` keyed by uuid, with secondary indexes (`index`) so that a DNS
//! look-up touches only the services it could match. Every write goes to the
//! [`Store`] first and to memory second, so an acknowledged change is durable
//! and a failed one changes nothing. Writes to different uuids run
//! concurrently, so the store can commit them together (group commit).
//! Expiry is exact: readers skip entries whose deadline has passed, and the
//! reaper task (`tasks`) purges them and fires their callbacks.
//!
//! # Layout
//! - this file: the [`Registry`] handle, its state and locking rules, `open`.
//! - `entry`: one registered service ([`Entry`]); `record`: its compact fields.
//! - `writes`: register, heartbeat, remove (and ownership checks).
//! - `lookup`: what DNS and the API read; `index`: the secondary indexes.
//! - `callbacks`: attaching callbacks and queueing their deliveries.
//! - `events`: the change feed (`GET /events`) and recent expiries.
//! - `restore`: filling the registry from the store at start.
//! - `feed`: applying other instances' changes from a shared store (etcd).
//! - `tasks`: expiry, the heartbeat flush, callback delivery.
//! - [`name`]: services ↔ DNS names and query patterns; `validate`: input checks.

mod callbacks;
mod entry;
mod error;
mod events;
#[cfg(feature = "etcd")]
pub(crate) mod feed;
mod index;
mod lookup;
pub mod name;
mod record;
mod restore;
pub(crate) mod tasks;
#[cfg(test)]
pub(crate) mod test_support;
mod validate;
mod writes;

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BinaryHeap, HashMap},
    net::IpAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use dashmap::DashMap;
use skydns_api::{Callback, Service};
use tokio::sync::{Notify, mpsc};

use crate::{
    metrics::Metrics,
    store::{LEASED, Op, Store, StoreError, StoredService},
};
pub use callbacks::{DELIVERY_QUEUE, Delivery, MAX_CALLBACK_MATCHES, MAX_CALLBACKS_PER_SERVICE};
pub use entry::Entry;
pub use error::RegistryError;
pub use events::Change;
use index::Index;
pub use name::{Interner, Pattern, ServiceLabels, Shared};
pub use record::ServiceRecord;
pub use restore::LoadReport;

/// Per-uuid write locks (a power of two).
const STRIPES: usize = 1024;

/// Deadline of a registration that never expires.
pub const NEVER: u64 = u64::MAX;

/// Settings of the registry itself.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// The DNS domain services live under (`skydns.local`), for name-length checks.
    pub domain: String,
    /// TTL, in seconds, answered for `NoExpire` services.
    pub no_expire_ttl: u32,
}

/// Cheap-to-clone handle on the registry.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("services", &self.inner.entries.len())
            .finish()
    }
}

/// An entry as the key of the registry's map, hashed and compared by its
/// uuid: the map stores one pointer per service instead of a uuid and a
/// pointer.
#[derive(Debug)]
pub(crate) struct ByUuid(pub(crate) Arc<Entry>);

impl std::hash::Hash for ByUuid {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (*self.0.service.uuid).hash(state);
    }
}

impl PartialEq for ByUuid {
    fn eq(&self, other: &Self) -> bool {
        self.0.service.uuid == other.0.service.uuid
    }
}

impl Eq for ByUuid {}

impl std::borrow::Borrow<str> for ByUuid {
    fn borrow(&self) -> &str {
        &self.0.service.uuid
    }
}

/// A min-heap of (deadline in ms, uuid).
type Deadlines = BinaryHeap<Reverse<(u64, Arc<str>)>>;

struct Inner {
    /// uuid → entry. Entries are immutable but for their deadline and their
    /// callbacks, both changed in place.
    entries: DashMap<ByUuid, (), foldhash::fast::RandomState>,
    index: Index,
    /// Shares the values that repeat across services (names, versions...).
    interner: Interner,
    store: Arc<dyn Store>,
    /// Serialise "check, persist, apply" per uuid, so two PUTs of one uuid
    /// cannot both win and a purge or a callback never writes over a
    /// registration that changed meanwhile. Writers that touch one uuid
    /// (register, remove) hold its stripe; writers that touch several
    /// (expiry, callbacks) hold theirs, taken in ascending order
    /// ([`Registry::lock_stripes`]), so no two writers wait on each other in
    /// a cycle. Tokio locks: they are held across the store's `.await`, and
    /// only writes to the same stripes wait for that fsync: there is no
    /// registry-wide write lock. Concurrent writes thus reach the store
    /// together and are group-committed. The heartbeat flush takes none (a
    /// store `Touch` only updates a record that is there).
    stripes: Box<[tokio::sync::Mutex<()>]>,
    /// Used only if a stripe index were ever out of range.
    stripe_fallback: tokio::sync::Mutex<()>,
    hasher: std::hash::RandomState,
    /// Deadlines for the reaper, lazily invalidated: a popped deadline that no
    /// longer matches its entry (heartbeat, removal) is ignored. A std mutex:
    /// held only for a push or pop, never across `.await`.
    deadlines: Mutex<Deadlines>,
    deadline_changed: Notify,
    /// Heartbeat deadlines not yet written to the store (flushed every second).
    dirty: Mutex<HashMap<Arc<str>, u64>>,
    /// uuid → callbacks to notify on its removal; only services that have
    /// some are here. A std mutex: held only for a look-up or an update.
    callbacks: Mutex<HashMap<Arc<str>, Vec<Callback>>>,
    /// Bounded ([`DELIVERY_QUEUE`]): a dead or slow listener costs dropped
    /// deliveries, never memory without bound.
    deliveries: mpsc::Sender<Delivery>,
    deliveries_rx: Mutex<Option<mpsc::Receiver<Delivery>>>,
    /// Registry changes for watchers; sending with no watcher costs nothing.
    /// Made by the first [`Registry::subscribe`]: its 1,024 slots (a quarter
    /// of a MiB) are not paid for by a server nobody watches.
    changes: std::sync::OnceLock<tokio::sync::broadcast::Sender<Change>>,
    /// The last few expiries, newest last.
    expiries: Mutex<std::collections::VecDeque<Change>>,
    /// SOA serial: seconds of the last change, strictly increasing.
    serial: AtomicU32,
    options: RegistryOptions,
    metrics: Arc<Metrics>,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Registry {
    /// Opens the registry on `store`, restoring what it holds. Registrations
    /// that expired while skydns was down are purged, not restored.
    ///
    /// # Errors
    /// [`RegistryError::Store`] when the store cannot be read at all.
    pub async fn open(
        store: Arc<dyn Store>,
        options: RegistryOptions,
        metrics: Arc<Metrics>,
    ) -> Result<(Self, LoadReport), RegistryError> {
        let (tx, rx) = mpsc::channel(DELIVERY_QUEUE);
        let registry = Self {
            inner: Arc::new(Inner {
                entries: DashMap::default(),
                index: Index::default(),
                interner: Interner::default(),
                store,
                stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
                stripe_fallback: tokio::sync::Mutex::new(()),
                hasher: std::hash::RandomState::new(),
                deadlines: Mutex::new(BinaryHeap::new()),
                deadline_changed: Notify::new(),
                dirty: Mutex::new(HashMap::new()),
                callbacks: Mutex::new(HashMap::new()),
                deliveries: tx,
                deliveries_rx: Mutex::new(Some(rx)),
                changes: std::sync::OnceLock::new(),
                expiries: Mutex::new(std::collections::VecDeque::new()),
                serial: AtomicU32::new(0),
                options,
                metrics,
            }),
        };
        let report = registry.restore().await?;
        registry.touch_serial();
        Ok((registry, report))
    }

    /// The registry's options.
    pub fn options(&self) -> &RegistryOptions {
        &self.inner.options
    }

    /// Number of entries held (live or awaiting purge).
    pub fn len(&self) -> usize {
        self.inner.entries.len()
    }

    /// True when nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.inner.entries.is_empty()
    }

    /// The SOA serial: the second of the last change.
    pub fn serial(&self) -> u32 {
        self.inner.serial.load(Ordering::Relaxed)
    }

    fn stripe_index(&self, uuid: &str) -> usize {
        use std::hash::BuildHasher;
        let hash = self.inner.hasher.hash_one(uuid);
        usize::try_from(hash % STRIPES as u64).unwrap_or(0)
    }

    fn stripe(&self, uuid: &str) -> &tokio::sync::Mutex<()> {
        self.inner
            .stripes
            .get(self.stripe_index(uuid))
            .unwrap_or(&self.inner.stripe_fallback)
    }

    /// Locks the stripes of every uuid, each once, in ascending order (the
    /// one order every multi-uuid writer uses, so none waits in a cycle).
    pub(crate) async fn lock_stripes<'a>(
        &self,
        uuids: impl Iterator<Item = &'a str>,
    ) -> Vec<tokio::sync::MutexGuard<'_, ()>> {
        let mut indexes: Vec<usize> = uuids.map(|u| self.stripe_index(u)).collect();
        indexes.sort_unstable();
        indexes.dedup();
        let mut guards = Vec::with_capacity(indexes.len());
        for i in indexes {
            let stripe = self
                .inner
                .stripes
                .get(i)
                .unwrap_or(&self.inner.stripe_fallback);
            guards.push(stripe.lock().await);
        }
        guards
    }
}

/// Locks a std mutex, recovering the data if a panicking thread poisoned it
/// (the protected maps stay consistent: every critical section is a single
/// insert, remove or pop).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
