//! Fixtures of the registry's unit tests: registries on a memory store or
//! on a store whose commits wait at a gate (a slow fsync, held at will).

use std::{sync::Arc, time::Duration};

use skydns_api::Service;
use tokio::sync::mpsc;

use super::{Registry, RegistryOptions};
use crate::{
    metrics::Metrics,
    store::{MemoryStore, Op, Store, StoreError, StoredService},
};

pub(crate) async fn registry() -> Registry {
    let options = RegistryOptions {
        domain: "skydns.local".into(),
        no_expire_ttl: 3600,
    };
    Registry::open(Arc::new(MemoryStore), options, Arc::new(Metrics::default()))
        .await
        .expect("open")
        .0
}

pub(super) fn svc() -> Service {
    Service {
        name: "web".into(),
        environment: "prod".into(),
        host: "127.0.0.1".into(),
        port: 80,
        ttl: 1,
        ..Service::default()
    }
}

/// A store whose commits of one kind wait until the test opens the gate:
/// a slow fsync, held as long as the test likes.
pub(super) struct GatedStore {
    /// Which commits wait.
    pub(super) holds: fn(&[Op]) -> bool,
    /// Told when a held commit arrives.
    pub(super) arrived: tokio::sync::Notify,
    pub(super) gate: tokio::sync::Semaphore,
}

impl GatedStore {
    pub(super) fn new(holds: fn(&[Op]) -> bool) -> Arc<Self> {
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

pub(super) async fn registry_on(store: Arc<GatedStore>) -> Registry {
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
pub(super) async fn registers_meanwhile(registry: &Registry, what: &str) {
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

pub(super) async fn eventually_len(registry: &Registry, n: usize) -> bool {
    for _ in 0..100 {
        if registry.len() == n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}
