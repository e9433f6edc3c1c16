//! Callbacks: attaching them to matching services (bounded), and queueing
//! their deliveries when a service goes (a bounded queue).

use super::*;

/// Most callbacks one service holds (distinct callback uuids); a callback
/// that would give a service more is refused (409) and changes nothing.
pub const MAX_CALLBACKS_PER_SERVICE: usize = 64;
/// Most services one callback may attach to; a broader one is refused (400)
/// and should name more fields.
pub const MAX_CALLBACK_MATCHES: usize = 4096;
/// Deliveries waiting to be sent; beyond it a delivery is dropped, logged
/// and counted (`skydns_callbacks_dropped_total`), never blocking a removal.
pub const DELIVERY_QUEUE: usize = 10_000;

/// A callback due because its service was removed.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The callback (its `uuid`, `reply` and `port`).
    pub callback: Callback,
    /// The removed service, as the API shows it.
    pub service: Service,
}

impl Registry {
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

    /// The callbacks to notify when `entry` is removed.
    pub fn callbacks_of(&self, entry: &Entry) -> Vec<Callback> {
        lock(&self.inner.callbacks)
            .get(&*entry.service.uuid)
            .cloned()
            .unwrap_or_default()
    }

    pub(super) fn fire_callbacks(&self, callbacks: Vec<Callback>, view: &Service) {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::test_support::*;

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
}
