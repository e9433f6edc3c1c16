//! The service registry: the single source of truth that the API writes and
//! DNS reads.
//!
//! [`Registry`] is a cheap-to-clone handle (`Arc` inside). Entries live in a
//! `DashMap` keyed by uuid, with secondary indexes ([`index`]) so that a DNS
//! look-up touches only the services it could match. Every write goes to the
//! [`Store`] first and to memory second, so an acknowledged change is durable
//! and a failed one changes nothing. Writes to different uuids run
//! concurrently, so the store can commit them together (group commit). Expiry is exact: readers skip entries
//! whose deadline has passed, and the reaper task ([`tasks`]) purges them and
//! fires their callbacks.

mod index;
pub mod name;
mod record;
pub(crate) mod tasks;
mod validate;

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
    store::{Op, Store, StoreError, StoredService},
};
use index::Index;
pub use name::{Interner, Pattern, ServiceLabels, Shared};
pub use record::ServiceRecord;

/// Per-uuid write locks (a power of two).
const STRIPES: usize = 1024;

/// Batches of stored records in flight at start (each at most
/// [`crate::store::LOAD_BATCH`]): enough for the store to read the next one
/// while the registry files the last.
const LOAD_QUEUE: usize = 2;

/// Deadline of a registration that never expires.
pub const NEVER: u64 = u64::MAX;

/// Most callbacks one service holds (distinct callback uuids); a callback
/// that would give a service more is refused (409) and changes nothing.
pub const MAX_CALLBACKS_PER_SERVICE: usize = 64;
/// Most services one callback may attach to; a broader one is refused (400)
/// and should name more fields.
pub const MAX_CALLBACK_MATCHES: usize = 4096;
/// Deliveries waiting to be sent; beyond it a delivery is dropped, logged
/// and counted (`skydns_callbacks_dropped_total`), never blocking a removal.
pub const DELIVERY_QUEUE: usize = 10_000;

/// What a registry operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// No live service has this uuid.
    #[error("service {0:?} not found")]
    NotFound(String),
    /// No live service matches a callback's fields.
    #[error("{0}")]
    NoMatch(String),
    /// A live service has this uuid already.
    #[error("service {uuid:?} is already registered{}", owned_by(owner.as_deref()))]
    Conflict {
        /// The uuid asked for.
        uuid: String,
        /// The `Owner` of the registration holding it.
        owner: Option<String>,
    },
    /// The request names an owner other than the service's: only the agent
    /// that registered a service may renew or remove it.
    #[error("service {uuid:?} belongs to {}, not to {asked:?}: only its owner may renew or remove it", owner.as_deref().map_or_else(|| "no owner".to_string(), |o| format!("{o:?}")))]
    NotOwner {
        /// The service's uuid.
        uuid: String,
        /// The service's `Owner`.
        owner: Option<String>,
        /// The owner the request named.
        asked: String,
    },
    /// A callback would give a service more than
    /// [`MAX_CALLBACKS_PER_SERVICE`]; nothing was changed.
    #[error(
        "service {uuid:?} holds {MAX_CALLBACKS_PER_SERVICE} callbacks already (the limit): callback {callback:?} was not added anywhere"
    )]
    TooManyCallbacks {
        /// The service at the limit.
        uuid: String,
        /// The callback refused.
        callback: String,
    },
    /// A field is invalid; nothing was changed.
    #[error("{message}")]
    Invalid {
        /// The JSON field at fault (`Host`, `Port`, ...).
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The store failed; nothing was changed in memory.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn owned_by(owner: Option<&str>) -> String {
    owner.map(|o| format!(" by {o:?}")).unwrap_or_default()
}

/// Checks that a write naming `asked` (if it names an owner) may touch
/// `entry`. A write naming no owner is a SkyDNS v1 client's: not checked.
fn check_owner(entry: &Entry, asked: Option<&str>) -> Result<(), RegistryError> {
    let Some(asked) = asked else {
        return Ok(());
    };
    let owner = entry.service.owner.as_deref();
    if owner == Some(asked) {
        return Ok(());
    }
    Err(RegistryError::NotOwner {
        uuid: entry.service.uuid.to_string(),
        owner: owner.map(str::to_string),
        asked: asked.to_string(),
    })
}

/// Settings of the registry itself.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// The DNS domain services live under (`skydns.local`), for name-length checks.
    pub domain: String,
    /// TTL, in seconds, answered for `NoExpire` services.
    pub no_expire_ttl: u32,
}

/// One registered service.
#[derive(Debug)]
pub struct Entry {
    /// The service as registered (`uuid` set; `ttl` is the TTL last given),
    /// compact; [`Entry::view`] gives the API's form.
    pub service: ServiceRecord,
    /// Its DNS labels, lowercase.
    pub labels: ServiceLabels,
    /// Host parsed as an IP, when it is one.
    pub ip: Option<IpAddr>,
    /// Changed in place (not by replacing the `Arc`), so a heartbeat racing
    /// with `add_callback` is never lost on a stale copy. (Callbacks live in
    /// the registry's side map: few services have any.)
    expires_ms: AtomicU64,
}

impl Entry {
    fn new(service: Service, expires_ms: u64, interner: &Interner) -> Self {
        let ip = service.host.parse().ok();
        let service = ServiceRecord::new(service, interner);
        let s = &service;
        let labels = ServiceLabels::from_parts(
            [
                interner.label(&s.environment),
                interner.label(&s.name),
                interner.label(&s.version),
                interner.label(&s.region),
            ],
            s.host.trim_end_matches('.'),
            &s.uuid,
        );
        Self {
            labels,
            ip,
            expires_ms: AtomicU64::new(expires_ms),
            service,
        }
    }

    /// An entry for unit tests elsewhere in the crate.
    #[cfg(test)]
    pub(crate) fn new_for_test(service: Service, expires_ms: u64) -> Self {
        Self::new(service, expires_ms, &Interner::default())
    }

    /// Deadline in milliseconds since the Unix epoch ([`NEVER`] for NoExpire).
    pub fn expires_ms(&self) -> u64 {
        self.expires_ms.load(Ordering::Acquire)
    }

    /// True while the deadline is in the future.
    pub fn is_live(&self, now_ms: u64) -> bool {
        self.expires_ms() > now_ms
    }

    /// Seconds left, rounded up (a live entry never reports 0); `None` for NoExpire.
    pub fn remaining_secs(&self, now_ms: u64) -> Option<u32> {
        let deadline = self.expires_ms();
        (deadline != NEVER).then(|| {
            let ms = deadline.saturating_sub(now_ms);
            u32::try_from(ms.div_ceil(1000)).unwrap_or(u32::MAX)
        })
    }

    /// The service as the API shows it: remaining TTL and `Expires` filled in.
    pub fn view(&self, now_ms: u64) -> Service {
        let mut s = self.service.to_service();
        match self.remaining_secs(now_ms) {
            Some(left) => {
                s.ttl = left;
                s.expires = Some(
                    humantime::format_rfc3339_millis(
                        UNIX_EPOCH + Duration::from_millis(self.expires_ms()),
                    )
                    .to_string(),
                );
            }
            None => s.expires = None,
        }
        s
    }

    fn stored(&self) -> StoredService {
        StoredService {
            service: self.service.to_service(),
            expires_ms: self.expires_ms(),
            callbacks: Vec::new(),
        }
    }
}

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

/// A callback due because its service was removed.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The callback (its `uuid`, `reply` and `port`).
    pub callback: Callback,
    /// The removed service, as the API shows it.
    pub service: Service,
}

/// What [`Registry::open`] recovered from the store.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Registrations restored.
    pub restored: usize,
    /// Registrations that had expired while skydns was down, now purged.
    pub expired: usize,
    /// Records that could not be read or were invalid, with the reason.
    pub damaged: Vec<(String, String)>,
    /// Store-wide losses (a damaged file moved aside, a table read only in
    /// part), each a sentence for the log.
    pub lost: Vec<String>,
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

    /// Fills the registry from the store, a batch at a time as the store
    /// reads them ([`Store::load`]), so that only a few batches of full
    /// records exist at once besides the compact entries.
    async fn restore(&self) -> Result<LoadReport, RegistryError> {
        let started = std::time::Instant::now();
        let mut report = LoadReport::default();
        let mut purge = Vec::new();
        let (tx, mut rx) = mpsc::channel(LOAD_QUEUE);
        let fill = async {
            // Never wait on the store in here: it waits for this loop.
            while let Some(batch) = rx.recv().await {
                let now = now_ms();
                for record in batch {
                    self.restore_one(record, now, &mut report, &mut purge);
                }
            }
        };
        let (loaded, ()) = tokio::join!(self.inner.store.load(tx), fill);
        let loaded = loaded?;
        for what in &loaded.lost {
            tracing::error!("store damaged: {what}");
        }
        report.lost = loaded.lost;
        // The store's damaged records first, then those found invalid here.
        let invalid = std::mem::replace(&mut report.damaged, loaded.damaged);
        report.damaged.extend(invalid);
        if let Err(e) = self.inner.store.commit(purge).await {
            // Harmless: an expired record is purged again at the next start.
            tracing::warn!(error = %e, "cannot purge expired registrations from the store");
        }
        if report.restored > 0 {
            // Reading and filing overlap (one batch ahead): no split.
            tracing::debug!(
                total_ms = started.elapsed().as_millis(),
                restored = report.restored,
                "store read and registry filled"
            );
        }
        Ok(report)
    }

    /// Files one stored record, unless it has expired (to purge) or is
    /// invalid (reported damaged).
    fn restore_one(
        &self,
        record: StoredService,
        now: u64,
        report: &mut LoadReport,
        purge: &mut Vec<Op>,
    ) {
        let uuid = &record.service.uuid;
        if record.expires_ms <= now {
            report.expired += 1;
            purge.push(Op::Remove(record.service.uuid));
            return;
        }
        if let Err(e) = validate::service(uuid, &record.service, &self.inner.options.domain) {
            report.damaged.push((record.service.uuid, e.to_string()));
            return;
        }
        let entry = Entry::new(record.service, record.expires_ms, &self.inner.interner);
        if !record.callbacks.is_empty() {
            lock(&self.inner.callbacks).insert(Arc::clone(&entry.service.uuid), record.callbacks);
        }
        self.apply(entry);
        report.restored += 1;
    }

    /// The registry's options.
    pub fn options(&self) -> &RegistryOptions {
        &self.inner.options
    }

    /// Registers `service` as `uuid` (`PUT /skydns/services/{uuid}`).
    ///
    /// # Errors
    /// [`RegistryError::Invalid`] (nothing changed), [`RegistryError::Conflict`]
    /// if a live service has this uuid, [`RegistryError::Store`] if it could not
    /// be persisted (nothing changed).
    pub async fn register(&self, uuid: &str, mut service: Service) -> Result<(), RegistryError> {
        validate::service(uuid, &service, &self.inner.options.domain)?;
        service.uuid = uuid.to_string();
        service.expires = None;
        let expires_ms = if service.no_expire {
            NEVER
        } else {
            now_ms().saturating_add(u64::from(service.ttl) * 1000)
        };
        let _guard = self.stripe(uuid).lock().await;
        if let Some(held) = self.get_entry(uuid) {
            return Err(RegistryError::Conflict {
                uuid: uuid.to_string(),
                owner: held.service.owner.as_deref().map(str::to_string),
            });
        }
        let entry = Entry::new(service, expires_ms, &self.inner.interner);
        self.inner.store.put(vec![entry.stored()]).await?;
        if let Some(old) = self.inner.entries.get(uuid).map(|e| Arc::clone(&e.key().0)) {
            // An expired entry the reaper has not purged yet: replace it quietly.
            self.unapply(&old);
        }
        tracing::info!(uuid, name = %entry.labels, host = %entry.service.host, port = entry.service.port, "registered");
        if self.watched() {
            let now = now_ms();
            self.notify("registered", entry.view(now), now);
        }
        self.apply(entry);
        Ok(())
    }

    /// Extends a service's life by `ttl` seconds from now (`PATCH`, the
    /// heartbeat). `owner`, when given, must be the service's.
    ///
    /// # Errors
    /// [`RegistryError::NotFound`] if no live service has this uuid,
    /// [`RegistryError::Invalid`] for a TTL of 0, [`RegistryError::NotOwner`]
    /// when `owner` is not the service's.
    pub fn heartbeat(
        &self,
        uuid: &str,
        ttl: u32,
        owner: Option<&str>,
    ) -> Result<(), RegistryError> {
        validate::heartbeat_ttl(ttl)?;
        let entry = self
            .get_entry(uuid)
            .ok_or_else(|| RegistryError::NotFound(uuid.to_string()))?;
        check_owner(&entry, owner)?;
        if entry.expires_ms() == NEVER {
            return Ok(());
        }
        let deadline = now_ms().saturating_add(u64::from(ttl) * 1000);
        let previous = entry.expires_ms.swap(deadline, Ordering::AcqRel);
        // The reaper's heap holds an item at or before the previous deadline;
        // on popping it the reaper re-files a still-live entry at its current
        // deadline. So only a deadline moved earlier needs a new item.
        if deadline < previous {
            self.push_deadline(deadline, Arc::clone(&entry.service.uuid));
        }
        lock(&self.inner.dirty).insert(Arc::clone(&entry.service.uuid), deadline);
        if self.watched() {
            let now = now_ms();
            self.notify("heartbeat", entry.view(now), now);
        }
        Ok(())
    }

    /// Removes a service (`DELETE`) and fires its callbacks. `owner`, when
    /// given, must be the service's.
    ///
    /// # Errors
    /// [`RegistryError::NotFound`] if no live service has this uuid,
    /// [`RegistryError::NotOwner`] when `owner` is not the service's,
    /// [`RegistryError::Store`] if the removal could not be persisted.
    pub async fn remove(&self, uuid: &str, owner: Option<&str>) -> Result<Service, RegistryError> {
        let _guard = self.stripe(uuid).lock().await;
        let entry = self
            .get_entry(uuid)
            .ok_or_else(|| RegistryError::NotFound(uuid.to_string()))?;
        check_owner(&entry, owner)?;
        self.inner.store.remove(uuid).await?;
        let view = entry.view(now_ms());
        let callbacks = self.unapply(&entry);
        tracing::info!(uuid, name = %entry.labels, "removed");
        self.notify("removed", view.clone(), now_ms());
        self.fire_callbacks(callbacks, &view);
        Ok(view)
    }

    /// Attaches `callback` to every live service matching its Name, Version,
    /// Environment, Region and Host (empty fields match anything). Returns
    /// how many services it was attached to. Attaching it again (same
    /// callback uuid) replaces it.
    ///
    /// # Errors
    /// [`RegistryError::NoMatch`] when no service matches,
    /// [`RegistryError::Invalid`] for a missing Reply or Port or a callback
    /// matching more than [`MAX_CALLBACK_MATCHES`] services,
    /// [`RegistryError::TooManyCallbacks`] when a matched service holds
    /// [`MAX_CALLBACKS_PER_SERVICE`] already; nothing is changed then.
    pub async fn add_callback(
        &self,
        uuid: &str,
        mut callback: Callback,
    ) -> Result<usize, RegistryError> {
        validate::callback(uuid, &callback.reply, callback.port)?;
        callback.uuid = uuid.to_string();
        let want = |field: &str| (!field.is_empty()).then(|| name::to_label(field));
        let (name, version, env, region) = (
            want(&callback.name),
            want(&callback.version),
            want(&callback.environment),
            want(&callback.region),
        );
        let host = (!callback.host.is_empty()).then(|| callback.host.clone());
        let pattern = Pattern(vec![env, name, version, region]);
        let matching = |e: &Arc<Entry>| {
            host.as_deref()
                .is_none_or(|h| e.service.host.eq_ignore_ascii_case(h))
        };
        let candidates: Vec<Arc<Entry>> =
            self.lookup(&pattern).into_iter().filter(matching).collect();
        if candidates.is_empty() {
            return Err(RegistryError::NoMatch(format!(
                "no service matches callback {uuid} ({})",
                pattern.suffix(pattern.depth())
            )));
        }
        if candidates.len() > MAX_CALLBACK_MATCHES {
            return Err(RegistryError::Invalid {
                field: "Name",
                message: format!(
                    "callback {uuid} matches {} services, more than the limit of {MAX_CALLBACK_MATCHES}: name more of Name, Version, Environment, Region, Host",
                    candidates.len()
                ),
            });
        }
        let _guards = self
            .lock_stripes(candidates.iter().map(|e| &*e.service.uuid))
            .await;
        // Under the stripes: keep the services still registered as found.
        let matched: Vec<Arc<Entry>> = candidates
            .into_iter()
            .filter(|e| {
                self.get_entry(&e.service.uuid)
                    .is_some_and(|now| Arc::ptr_eq(&now, e))
            })
            .collect();
        if matched.is_empty() {
            return Err(RegistryError::NoMatch(format!(
                "no service matches callback {uuid} any more"
            )));
        }
        let mut updated: Vec<(Arc<Entry>, Vec<Callback>)> = Vec::with_capacity(matched.len());
        for e in matched {
            let mut callbacks: Vec<Callback> = self
                .callbacks_of(&e)
                .into_iter()
                .filter(|c| c.uuid != uuid)
                .collect();
            if callbacks.len() >= MAX_CALLBACKS_PER_SERVICE {
                return Err(RegistryError::TooManyCallbacks {
                    uuid: e.service.uuid.to_string(),
                    callback: uuid.to_string(),
                });
            }
            callbacks.push(callback.clone());
            updated.push((e, callbacks));
        }
        let records = updated
            .iter()
            .map(|(e, callbacks)| StoredService {
                service: e.service.to_service(),
                expires_ms: e.expires_ms(),
                callbacks: callbacks.clone(),
            })
            .collect();
        self.inner.store.put(records).await?;
        let count = updated.len();
        let mut held = lock(&self.inner.callbacks);
        for (entry, callbacks) in updated {
            held.insert(Arc::clone(&entry.service.uuid), callbacks);
        }
        Ok(count)
    }

    /// The live service registered as `uuid`.
    pub fn get(&self, uuid: &str) -> Option<Arc<Entry>> {
        self.get_entry(uuid)
    }

    /// Live services matching `pattern`, in no particular order.
    pub fn lookup(&self, pattern: &Pattern) -> Vec<Arc<Entry>> {
        let now = now_ms();
        let candidates = match pattern.at(name::pos::UUID) {
            Some(uuid) => Some(self.uuid_candidates(uuid)),
            None => self.inner.index.candidates(pattern),
        };
        match candidates {
            Some(found) => found
                .into_iter()
                .filter(|e| e.is_live(now) && pattern.matches(&e.labels))
                .collect(),
            None => self
                .inner
                .entries
                .iter()
                .map(|e| Arc::clone(&e.key().0))
                .filter(|e| e.is_live(now) && pattern.matches(&e.labels))
                .collect(),
        }
    }

    /// Entries (live or not) whose uuid label is `label`: the one registered
    /// under that very uuid, and those whose uuid only spells it otherwise.
    fn uuid_candidates(&self, label: &str) -> Vec<Arc<Entry>> {
        let mut found = self.inner.index.with_uuid(label);
        if let Some(e) = self.inner.entries.get(label)
            && index::uuid_is_label(&e.key().0)
        {
            found.push(Arc::clone(&e.key().0));
        }
        found
    }

    /// Live services whose uuid, as a DNS label, is `label` (for `<uuid>.<domain>`).
    pub fn by_uuid_label(&self, label: &str) -> Vec<Arc<Entry>> {
        let now = now_ms();
        self.uuid_candidates(label)
            .into_iter()
            .filter(|e| e.is_live(now))
            .collect()
    }

    /// Live services whose Host is `ip` (for PTR answers).
    pub fn by_ip(&self, ip: IpAddr) -> Vec<Arc<Entry>> {
        let now = now_ms();
        self.inner
            .index
            .with_ip(ip)
            .into_iter()
            .filter(|e| e.is_live(now))
            .collect()
    }

    /// True when some registered name ends in this suffix of `depth` labels,
    /// whatever its deadline (used to tell NODATA from NXDOMAIN cheaply).
    pub fn has_suffix(&self, suffix: &str) -> bool {
        self.inner.index.has_suffix(suffix)
    }

    /// Number of live services per value of `field` (regions, environments).
    pub fn counts(&self, field: impl Fn(&ServiceRecord) -> &str) -> BTreeMap<String, u64> {
        let now = now_ms();
        let mut out = BTreeMap::new();
        for e in &self.inner.entries {
            let e = &e.key().0;
            if e.is_live(now) {
                *out.entry(field(&e.service).to_string()).or_insert(0) += 1;
            }
        }
        out
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

    fn get_entry(&self, uuid: &str) -> Option<Arc<Entry>> {
        let e = self
            .inner
            .entries
            .get(uuid)
            .map(|e| Arc::clone(&e.key().0))?;
        e.is_live(now_ms()).then_some(e)
    }

    fn apply(&self, entry: Entry) {
        let id = Arc::clone(&entry.service.uuid);
        let deadline = entry.expires_ms();
        let entry = Arc::new(entry);
        self.inner.index.insert(&entry);
        // A map keeps the old key on insert: drop any stale one first.
        self.inner.entries.remove(&*id);
        self.inner.entries.insert(ByUuid(entry), ());
        if deadline != NEVER {
            self.push_deadline(deadline, id);
        }
        self.inner
            .metrics
            .services
            .set(i64::try_from(self.inner.entries.len()).unwrap_or(i64::MAX));
        self.touch_serial();
    }

    /// The callbacks to notify when `entry` is removed.
    pub fn callbacks_of(&self, entry: &Entry) -> Vec<Callback> {
        lock(&self.inner.callbacks)
            .get(&*entry.service.uuid)
            .cloned()
            .unwrap_or_default()
    }

    /// Takes `entry` out of the maps; returns its callbacks.
    fn unapply(&self, entry: &Arc<Entry>) -> Vec<Callback> {
        let uuid = &*entry.service.uuid;
        let held = self
            .inner
            .entries
            .remove_if(uuid, |held, ()| Arc::ptr_eq(&held.0, entry))
            .is_some();
        let callbacks = if held {
            lock(&self.inner.callbacks).remove(uuid).unwrap_or_default()
        } else {
            Vec::new()
        };
        self.inner.index.remove(entry);
        self.inner.interner.release();
        lock(&self.inner.dirty).remove(uuid);
        self.inner
            .metrics
            .services
            .set(i64::try_from(self.inner.entries.len()).unwrap_or(i64::MAX));
        self.touch_serial();
        callbacks
    }

    fn fire_callbacks(&self, callbacks: Vec<Callback>, view: &Service) {
        for cb in &callbacks {
            let delivery = Delivery {
                callback: cb.clone(),
                service: view.clone(),
            };
            match self.inner.deliveries.try_send(delivery) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.inner.metrics.callbacks_dropped.inc();
                    tracing::warn!(callback = %cb.uuid, service = %view.uuid, "callback queue full ({DELIVERY_QUEUE} waiting); callback dropped");
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    tracing::warn!(callback = %cb.uuid, "callback dispatcher stopped; callback dropped");
                }
            }
        }
    }

    /// Watches registry changes from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Change> {
        self.inner
            .changes
            .get_or_init(|| tokio::sync::broadcast::channel(CHANGES_KEPT).0)
            .subscribe()
    }

    /// Whether anybody watches changes (building one costs a service's view).
    fn watched(&self) -> bool {
        self.inner
            .changes
            .get()
            .is_some_and(|tx| tx.receiver_count() > 0)
    }

    /// The most recent expiries, oldest first.
    pub fn recent_expiries(&self) -> Vec<Change> {
        lock(&self.inner.expiries).iter().cloned().collect()
    }

    fn notify(&self, kind: &'static str, service: Service, at_ms: u64) {
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

    fn push_deadline(&self, deadline: u64, id: Arc<str>) {
        let earliest = {
            let mut heap = lock(&self.inner.deadlines);
            heap.push(Reverse((deadline, id)));
            heap.peek().map(|Reverse((d, _))| *d)
        };
        if earliest == Some(deadline) {
            self.inner.deadline_changed.notify_one();
        }
    }

    fn touch_serial(&self) {
        let now = u32::try_from(now_ms() / 1000).unwrap_or(u32::MAX);
        let _ = self
            .inner
            .serial
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some(now.max(old.wrapping_add(1)))
            });
    }
}

/// Locks a std mutex, recovering the data if a panicking thread poisoned it
/// (the protected maps stay consistent: every critical section is a single
/// insert, remove or pop).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    async fn registry() -> Registry {
        let options = RegistryOptions {
            domain: "skydns.local".into(),
            no_expire_ttl: 3600,
        };
        Registry::open(Arc::new(MemoryStore), options, Arc::new(Metrics::default()))
            .await
            .expect("open")
            .0
    }

    fn svc() -> Service {
        Service {
            name: "web".into(),
            environment: "prod".into(),
            host: "127.0.0.1".into(),
            port: 80,
            ttl: 1,
            ..Service::default()
        }
    }

    #[tokio::test]
    async fn a_service_kept_alive_by_heartbeats_is_purged_once_they_stop() {
        let registry = registry().await;
        let token = tokio_util::sync::CancellationToken::new();
        let reaper = tokio::spawn(tasks::run_expiry(registry.clone(), token.clone()));
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

    /// A store whose commits of one kind wait until the test opens the gate:
    /// a slow fsync, held as long as the test likes.
    struct GatedStore {
        /// Which commits wait.
        holds: fn(&[Op]) -> bool,
        /// Told when a held commit arrives.
        arrived: tokio::sync::Notify,
        gate: tokio::sync::Semaphore,
    }

    impl GatedStore {
        fn new(holds: fn(&[Op]) -> bool) -> Arc<Self> {
            Arc::new(Self {
                holds,
                arrived: tokio::sync::Notify::new(),
                gate: tokio::sync::Semaphore::new(0),
            })
        }
    }

    #[async_trait::async_trait]
    impl Store for GatedStore {
        async fn load(
            &self,
            _batches: mpsc::Sender<Vec<StoredService>>,
        ) -> Result<crate::store::Loaded, StoreError> {
            Ok(crate::store::Loaded::default())
        }
        async fn commit(&self, ops: Vec<Op>) -> Result<(), StoreError> {
            if (self.holds)(&ops) {
                self.arrived.notify_one();
                let _permit = self.gate.acquire().await;
            }
            Ok(())
        }
        fn describe(&self) -> String {
            "gated".into()
        }
    }

    async fn registry_on(store: Arc<GatedStore>) -> Registry {
        let options = RegistryOptions {
            domain: "skydns.local".into(),
            no_expire_ttl: 3600,
        };
        Registry::open(store, options, Arc::new(Metrics::default()))
            .await
            .expect("open")
            .0
    }

    /// A register of another uuid completes while `blocked` is stuck in its
    /// store commit.
    async fn registers_meanwhile(registry: &Registry, what: &str) {
        let mut other = svc();
        other.ttl = 60;
        other.host = "127.0.0.99".into();
        let done =
            tokio::time::timeout(Duration::from_secs(2), registry.register("other", other)).await;
        assert!(
            matches!(done, Ok(Ok(()))),
            "a PUT of another uuid waited for the {what}'s fsync: {done:?}"
        );
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
            async move { tasks::flush_heartbeats(&r).await }
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
        let reaper = tokio::spawn(tasks::run_expiry(registry.clone(), token.clone()));
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

    #[tokio::test]
    async fn writes_go_on_while_a_callback_waits_for_its_fsync() {
        let store = GatedStore::new(|ops| {
            ops.iter()
                .any(|op| matches!(op, Op::Put(r) if !r.callbacks.is_empty()))
        });
        let registry = registry_on(Arc::clone(&store)).await;
        let mut s = svc();
        s.ttl = 60;
        registry.register("u1", s).await.expect("register");
        let cb = Callback {
            name: "web".into(),
            reply: "127.0.0.1".into(),
            port: 9,
            ..Callback::default()
        };
        let adding = tokio::spawn({
            let r = registry.clone();
            async move { r.add_callback("cb1", cb).await }
        });
        store.arrived.notified().await;
        registers_meanwhile(&registry, "callback").await;
        store.gate.add_permits(1);
        assert_eq!(adding.await.expect("task").expect("attached"), 1);
    }

    async fn eventually_len(registry: &Registry, n: usize) -> bool {
        for _ in 0..100 {
            if registry.len() == n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    #[tokio::test]
    async fn deliveries_beyond_the_queue_are_dropped_and_counted() {
        let registry = registry().await;
        let n = DELIVERY_QUEUE + 5;
        for i in 0..n {
            let mut s = svc();
            s.ttl = 60;
            s.name = format!("s{i}");
            registry
                .register(&format!("u{i}"), s.clone())
                .await
                .expect("register");
            let cb = Callback {
                name: s.name.clone(),
                reply: "127.0.0.1".into(),
                port: 9,
                ..Callback::default()
            };
            registry.add_callback("cb", cb).await.expect("callback");
        }
        // Nobody delivers (no dispatcher): removals queue their callbacks.
        for i in 0..n {
            registry
                .remove(&format!("u{i}"), None)
                .await
                .expect("remove");
        }
        assert_eq!(registry.inner.metrics.callbacks_dropped.get(), 5);
        assert_eq!(
            registry.inner.deliveries.capacity(),
            0,
            "the queue is full, not grown"
        );
    }

    #[tokio::test]
    async fn a_service_holds_a_bounded_number_of_callbacks() {
        let registry = registry().await;
        let mut s = svc();
        s.ttl = 60;
        registry.register("u1", s).await.expect("register");
        let cb = |port: u16| Callback {
            name: "web".into(),
            reply: "127.0.0.1".into(),
            port,
            ..Callback::default()
        };
        for i in 0..MAX_CALLBACKS_PER_SERVICE {
            registry
                .add_callback(&format!("cb{i}"), cb(9))
                .await
                .expect("within the limit");
        }
        // The same callback uuid again replaces, and is not counted twice.
        registry
            .add_callback("cb0", cb(10))
            .await
            .expect("replaces");
        let err = registry
            .add_callback("one-more", cb(9))
            .await
            .expect_err("over the limit");
        assert!(
            matches!(err, RegistryError::TooManyCallbacks { .. }),
            "{err}"
        );
        let entry = registry.get("u1").expect("u1");
        let held = registry.callbacks_of(&entry);
        assert_eq!(held.len(), MAX_CALLBACKS_PER_SERVICE);
        assert!(held.iter().any(|c| c.uuid == "cb0" && c.port == 10));
    }

    #[tokio::test]
    async fn restore_files_every_batch_purges_the_expired_and_reports_the_invalid() {
        use crate::store::{LOAD_BATCH, RedbStore, load_all};

        let dir = tempfile::tempdir().expect("tempdir");
        let n = 2 * LOAD_BATCH + 10;
        let later = now_ms() + 3_600_000;
        let records: Vec<StoredService> = (0..n)
            .map(|i| {
                let mut service = svc();
                service.uuid = format!("u{i:05}");
                service.host = format!("10.0.{}.{}", i / 250, i % 250 + 1);
                if i % 500 == 3 {
                    service.port = 0; // invalid
                }
                StoredService {
                    service,
                    // Every tenth one expired while skydns was down.
                    expires_ms: if i % 10 == 1 { 1_000 } else { later },
                    callbacks: if i == 42 {
                        vec![Callback {
                            uuid: "cb".into(),
                            reply: "127.0.0.1".into(),
                            port: 9,
                            ..Callback::default()
                        }]
                    } else {
                        Vec::new()
                    },
                }
            })
            .collect();
        let store = Arc::new(RedbStore::open(dir.path()).expect("open"));
        store.put(records).await.expect("put");
        let options = RegistryOptions {
            domain: "skydns.local".into(),
            no_expire_ttl: 3600,
        };
        let (registry, report) = Registry::open(
            Arc::clone(&store) as Arc<dyn Store>,
            options,
            Arc::new(Metrics::default()),
        )
        .await
        .expect("open");

        let expired = (0..n).filter(|i| i % 10 == 1).count();
        let invalid = (0..n).filter(|i| i % 500 == 3).count();
        assert_eq!(report.expired, expired);
        assert_eq!(report.damaged.len(), invalid, "{:?}", report.damaged);
        assert!(report.damaged.iter().all(|(_, why)| why.contains("Port")));
        assert!(report.lost.is_empty());
        assert_eq!(report.restored, n - expired - invalid);
        assert_eq!(registry.len(), report.restored);
        let entry = registry.get("u00042").expect("restored");
        assert_eq!(entry.service.host.as_ref(), "10.0.0.43");
        assert_eq!(registry.callbacks_of(&entry).len(), 1);
        assert!(registry.get("u00001").is_none(), "expired");
        assert!(registry.get("u00003").is_none(), "invalid");

        let (left, _, _) = load_all(&*store).await.expect("load");
        assert_eq!(
            left.len(),
            n - expired,
            "the expired are purged from the store"
        );
        assert!(left.iter().all(|r| r.expires_ms == later));
    }
}
