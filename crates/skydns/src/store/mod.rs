//! Where registrations are kept across restarts.
//!
//! The registry talks to storage only through the narrow [`Store`] trait, so a
//! replicated backend (etcd, for several skydns instances) can slot in without
//! touching the DNS or API code. Three backends ship:
//! - [`MemoryStore`]: nothing survives a restart (no `-data`).
//! - [`EtcdStore`]: etcd, shared by several instances (`-etcd`); it owns
//!   expiry (leases) and reports other instances' changes ([`FeedEvent`]).
//! - [`RedbStore`]: an embedded, crash-safe redb database in the `-data`
//!   directory; every acknowledged write is fsynced before the API answers.
//!   Concurrent writes are group-committed: one writer thread commits every
//!   batch waiting for it in one transaction and one fsync.
//!
//! LOADING: [`Store::load`] streams the stored records to the registry in
//! batches of at most [`LOAD_BATCH`] through a bounded channel, so that only
//! a few batches exist at once besides the registry being filled. Handing
//! over every record in one `Vec` had the full, uncompacted copy (≈ 35 MB
//! for 100,000 services) live next to the registry, and the memory it
//! freed stayed in the allocator (docs/performance.md).

#[cfg(feature = "etcd")]
mod etcd;
mod memory;
mod redb;

#[cfg(feature = "etcd")]
pub use etcd::{EtcdOptions, EtcdStore, FeedEvent};
pub use memory::MemoryStore;
pub use redb::{FILE_NAME, RedbStore};

use std::{path::PathBuf, sync::Arc};

use serde::{Deserialize, Serialize};
use skydns_api::{Callback, Service};
use tokio::sync::mpsc;

/// Most records in one batch handed over by [`Store::load`].
pub const LOAD_BATCH: usize = 1024;

/// The deadline of a registration whose expiry the store owns (an etcd
/// lease): live until the store reports it gone.
pub const LEASED: u64 = u64::MAX - 1;

/// One registration as persisted: the service, its wall-clock deadline and the
/// callbacks attached to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredService {
    /// The service as registered (its `UUID` set).
    pub service: Service,
    /// Expiry as milliseconds since the Unix epoch; `u64::MAX` never expires.
    pub expires_ms: u64,
    /// Callbacks to notify when the service is removed.
    #[serde(default)]
    pub callbacks: Vec<Callback>,
}

/// What a store can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The data directory could not be opened or created.
    #[error("cannot open data directory {path}: {source}")]
    Open {
        /// The directory.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The database file could not be opened for another reason than damage
    /// (another skydns holds it, permission denied, read-only file system).
    #[error("store: cannot open {}: {reason}{hint}", file.display())]
    File {
        /// The database file.
        file: PathBuf,
        /// Why.
        reason: String,
        /// What to check, when a likely cause is known.
        hint: &'static str,
    },
    /// A new, empty database could not be created in place of a damaged one.
    #[error("store: cannot create a new store at {}: {reason}", file.display())]
    Create {
        /// The database file.
        file: PathBuf,
        /// Why.
        reason: String,
    },
    /// A damaged file could not be renamed out of the way.
    #[error("store: {} is damaged and cannot be moved aside to {}: {error}", file.display(), aside.display())]
    MoveAside {
        /// The damaged file.
        file: PathBuf,
        /// Where it was to go.
        aside: PathBuf,
        /// Why.
        error: Arc<std::io::Error>,
    },
    /// The records recovered from a damaged file could not be written to
    /// the new one.
    #[error("store: cannot rewrite the registrations recovered from {} to {}: {reason}", aside.display(), file.display())]
    Rewrite {
        /// The new file.
        file: PathBuf,
        /// The damaged file, moved aside.
        aside: PathBuf,
        /// Why.
        reason: String,
    },
    /// A write failed (disk full, read-only, I/O error); nothing of it was kept.
    #[error("store: cannot write to {}: {error}", file.display())]
    Write {
        /// The database file.
        file: PathBuf,
        /// What the engine said.
        error: Arc<EngineError>,
    },
    /// The database could not be reopened after an earlier failure.
    #[error("store: cannot reopen {}: {error}", file.display())]
    Reopen {
        /// The database file.
        file: PathBuf,
        /// What the engine said.
        error: Arc<EngineError>,
    },
    /// The store's thread is not there to take the request.
    #[error("store: the store thread {0}")]
    Thread(String),
    /// A load whose receiver went away before the end.
    #[error("store: the store load was abandoned: nothing receives its records")]
    Abandoned,
    /// etcd could not be reached or refused the request; nothing of the
    /// change was acknowledged.
    #[error("etcd{}: {reason}", if endpoints.is_empty() { String::new() } else { format!(" at {endpoints}") })]
    Etcd {
        /// The endpoints asked.
        endpoints: String,
        /// What failed.
        reason: String,
    },
    /// Another registration holds this uuid (seen by the store: another
    /// instance registered it first).
    #[error("service {uuid:?} is already registered")]
    Exists {
        /// The uuid.
        uuid: String,
    },
    /// The store no longer holds this registration (it expired or another
    /// instance removed it).
    #[error("service {uuid:?} not found")]
    Missing {
        /// The uuid.
        uuid: String,
    },
    /// A stored record could not be decoded.
    #[error("stored record {key:?} is damaged: {reason}")]
    Corrupt {
        /// The record's key.
        key: String,
        /// Why it could not be read.
        reason: String,
    },
}

/// What the embedded database engine failed with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// redb's own error (I/O, damage, a transaction or table error).
    #[error(transparent)]
    Redb(#[from] ::redb::Error),
    /// A record could not be encoded.
    #[error("cannot encode a record: {0}")]
    Encode(#[from] serde_json::Error),
    /// The engine panicked (a damaged file seen by its assertions).
    #[error("the database engine failed")]
    Panicked,
}

/// redb's error types, each into [`EngineError`] through `redb::Error`.
macro_rules! engine_from {
    ($($t:ty),*) => {$(
        impl From<$t> for EngineError {
            fn from(e: $t) -> Self {
                Self::Redb(e.into())
            }
        }
    )*};
}
engine_from!(
    ::redb::DatabaseError,
    ::redb::TransactionError,
    ::redb::TableError,
    ::redb::StorageError,
    ::redb::CommitError
);

/// What [`Store::load`] found besides the records it handed over: the keys
/// that could not be read and the store-wide losses.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Keys whose records were damaged and skipped, with the reason.
    pub damaged: Vec<(String, String)>,
    /// Whole-store problems met while opening or reading (a damaged file
    /// moved aside, a table that could not be read to its end): what could
    /// not be recovered, for the start-up log.
    pub lost: Vec<String>,
}

/// One change in a [`Store::commit`] batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Insert a new registration; a shared store fails the batch with
    /// [`StoreError::Exists`] when another holds its uuid.
    Create(StoredService),
    /// Insert or replace a registration.
    Put(StoredService),
    /// Remove a registration (missing is not an error).
    Remove(String),
    /// Move the deadline of an existing registration (a heartbeat); ignored
    /// when the registration is not stored.
    Touch(String, u64),
}

/// Durable storage behind the registry.
///
/// Contract: when `commit` (or `put`/`remove`/`touch`) returns `Ok`, the whole
/// batch survives a crash; when it returns `Err`, none of it was acknowledged
/// and the caller must not change its memory. Callers may call it
/// concurrently: a backend is free to commit concurrent batches together.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Reads every stored registration (at start), sending the intact records
    /// to `batches`, at most [`LOAD_BATCH`] at a time; damaged records and
    /// store-wide losses come back in the [`Loaded`] report. `batches` is
    /// dropped before `load` returns.
    ///
    /// The caller must receive from `batches` while it awaits `load` (for
    /// example in a `tokio::join!`): the store waits while the channel is
    /// full. Nor may it wait on the store (a `commit`) between batches: a
    /// backend may serve `load` and `commit` on one thread, so that commit
    /// would wait for a load that waits for the caller.
    ///
    /// When `load` returns `Ok`, the store holds every record it handed
    /// over, even after repairing a damaged file, so the caller may keep
    /// them all. If the receiver is dropped, the store stops reading and
    /// returns an error.
    async fn load(&self, batches: mpsc::Sender<Vec<StoredService>>) -> Result<Loaded, StoreError>;
    /// Applies `ops` in order, atomically and durably.
    async fn commit(&self, ops: Vec<Op>) -> Result<(), StoreError>;
    /// Inserts or replaces registrations, atomically as one batch.
    async fn put(&self, records: Vec<StoredService>) -> Result<(), StoreError> {
        self.commit(records.into_iter().map(Op::Put).collect())
            .await
    }
    /// Removes a registration; removing a missing one is not an error.
    async fn remove(&self, uuid: &str) -> Result<(), StoreError> {
        self.commit(vec![Op::Remove(uuid.to_string())]).await
    }
    /// Updates deadlines of existing registrations (heartbeats), as one batch.
    async fn touch(&self, deadlines: Vec<(String, u64)>) -> Result<(), StoreError> {
        self.commit(
            deadlines
                .into_iter()
                .map(|(uuid, d)| Op::Touch(uuid, d))
                .collect(),
        )
        .await
    }
    /// True when the store expires registrations itself (etcd leases): the
    /// registry then neither reaps them nor writes heartbeats, and sends
    /// each heartbeat to [`Store::keep_alive`].
    fn owns_expiry(&self) -> bool {
        false
    }
    /// Renews `uuid` for `ttl` seconds (stores that own expiry); false when
    /// the store no longer holds it.
    async fn keep_alive(&self, _uuid: &str, _ttl: u32) -> Result<bool, StoreError> {
        Ok(true)
    }
    /// A short description for logs (`memory`, `redb at ./data`).
    fn describe(&self) -> String;
}

/// Loads everything `store` holds into memory, as the tests want it: the
/// records, the report, and how many batches they came in.
#[cfg(test)]
pub(crate) async fn load_all(
    store: &dyn Store,
) -> Result<(Vec<StoredService>, Loaded, usize), StoreError> {
    let (tx, mut rx) = mpsc::channel::<Vec<StoredService>>(2);
    let receive = async {
        let (mut records, mut batches) = (Vec::new(), 0);
        while let Some(batch) = rx.recv().await {
            assert!(
                !batch.is_empty() && batch.len() <= LOAD_BATCH,
                "a batch of {}",
                batch.len()
            );
            records.extend(batch);
            batches += 1;
        }
        (records, batches)
    };
    let (loaded, (records, batches)) = tokio::join!(store.load(tx), receive);
    Ok((records, loaded?, batches))
}
