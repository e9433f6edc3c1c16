//! Where registrations are kept across restarts.
//!
//! The registry talks to storage only through the narrow [`Store`] trait, so a
//! replicated backend (etcd, for several skydns instances) can slot in without
//! touching the DNS or API code. Two backends ship:
//! - [`MemoryStore`]: nothing survives a restart (no `-data`).
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

mod memory;
mod redb_store;

pub use memory::MemoryStore;
pub use redb_store::{FILE_NAME, RedbStore};

use serde::{Deserialize, Serialize};
use skydns_api::{Callback, Service};
use tokio::sync::mpsc;

/// Most records in one batch handed over by [`Store::load`].
pub const LOAD_BATCH: usize = 1024;

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
    /// The database engine failed (disk full, read-only, damaged file).
    #[error("store: {0}")]
    Backend(String),
    /// A stored record could not be decoded.
    #[error("stored record {key:?} is damaged: {reason}")]
    Corrupt {
        /// The record's key.
        key: String,
        /// Why it could not be read.
        reason: String,
    },
}

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
