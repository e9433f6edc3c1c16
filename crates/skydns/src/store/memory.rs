//! The no-persistence store: the registry's own memory is the only copy.

use super::{Loaded, Store, StoreError, StoredService};

/// Keeps nothing: every registration is lost on restart.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemoryStore;

#[async_trait::async_trait]
impl Store for MemoryStore {
    async fn load(&self) -> Result<Loaded, StoreError> {
        Ok(Loaded::default())
    }
    async fn put(&self, _records: Vec<StoredService>) -> Result<(), StoreError> {
        Ok(())
    }
    async fn remove(&self, _uuid: &str) -> Result<(), StoreError> {
        Ok(())
    }
    async fn touch(&self, _deadlines: Vec<(String, u64)>) -> Result<(), StoreError> {
        Ok(())
    }
    fn describe(&self) -> String {
        "memory (no -data: registrations do not survive a restart)".into()
    }
}
