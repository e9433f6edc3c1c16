//! The no-persistence store: the registry's own memory is the only copy.

use tokio::sync::mpsc;

use super::{Loaded, Op, Store, StoreError, StoredService};

/// Keeps nothing: every registration is lost on restart.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemoryStore;

#[async_trait::async_trait]
impl Store for MemoryStore {
    async fn load(&self, _batches: mpsc::Sender<Vec<StoredService>>) -> Result<Loaded, StoreError> {
        Ok(Loaded::default())
    }
    async fn commit(&self, _ops: Vec<Op>) -> Result<(), StoreError> {
        Ok(())
    }
    fn describe(&self) -> String {
        "memory (no -data: registrations do not survive a restart)".into()
    }
}
