//! Where registrations are kept across restarts.
//!
//! The registry talks to storage only through the narrow [`Store`] trait, so a
//! replicated backend (etcd, for several skydns instances) can slot in without
//! touching the DNS or API code. Two backends ship:
//! - [`MemoryStore`]: nothing survives a restart (no `-data`).
//! - [`RedbStore`]: an embedded, crash-safe redb database in the `-data`
//!   directory; every acknowledged write is fsynced before the API answers.

mod memory;
mod redb_store;

pub use memory::MemoryStore;
pub use redb_store::RedbStore;

use serde::{Deserialize, Serialize};
use skydns_api::{Callback, Service};

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

/// What [`Store::load`] found: the readable records and the keys that were not.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Records read back intact.
    pub services: Vec<StoredService>,
    /// Keys whose records were damaged and skipped, with the reason.
    pub damaged: Vec<(String, String)>,
}

/// Durable storage behind the registry.
///
/// Contract: when `put`/`remove` return `Ok`, the change survives a crash.
/// `touch` (heartbeats) may be batched by the caller and may lose at most the
/// last batch.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Reads every stored registration (at start).
    async fn load(&self) -> Result<Loaded, StoreError>;
    /// Inserts or replaces registrations, atomically as one batch.
    async fn put(&self, records: Vec<StoredService>) -> Result<(), StoreError>;
    /// Removes a registration; removing a missing one is not an error.
    async fn remove(&self, uuid: &str) -> Result<(), StoreError>;
    /// Updates deadlines of existing registrations (heartbeats), as one batch.
    async fn touch(&self, deadlines: Vec<(String, u64)>) -> Result<(), StoreError>;
    /// A short description for logs (`memory`, `redb at ./data`).
    fn describe(&self) -> String;
}
