//! Writes: register, heartbeat, remove. Each checks, persists, then
//! applies, under its uuid's stripe; ownership is checked here.

use super::*;

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

/// A store's verdict in the registry's terms: another instance holding
/// the uuid is a conflict, a registration gone from the store is not found.
pub(super) fn from_store(e: StoreError) -> RegistryError {
    match e {
        StoreError::Exists { uuid } => RegistryError::Conflict { uuid, owner: None },
        StoreError::Missing { uuid } => RegistryError::NotFound(uuid),
        e => RegistryError::Store(e),
    }
}

impl Registry {
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
        let expires_ms = if self.inner.store.owns_expiry() {
            LEASED
        } else if service.no_expire {
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
        self.inner
            .store
            .commit(vec![Op::Create(entry.stored())])
            .await
            .map_err(from_store)?;
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

    /// A heartbeat as the API takes it: [`Registry::heartbeat`], or, when
    /// the store owns expiry (etcd), a renewal of the service's lease,
    /// acknowledged once etcd has renewed it.
    ///
    /// # Errors
    /// As [`Registry::heartbeat`]; [`RegistryError::Store`] when etcd
    /// cannot be reached.
    pub async fn beat(
        &self,
        uuid: &str,
        ttl: u32,
        owner: Option<&str>,
    ) -> Result<(), RegistryError> {
        if !self.inner.store.owns_expiry() {
            return self.heartbeat(uuid, ttl, owner);
        }
        validate::heartbeat_ttl(ttl)?;
        let entry = self
            .get_entry(uuid)
            .ok_or_else(|| RegistryError::NotFound(uuid.to_string()))?;
        check_owner(&entry, owner)?;
        if !self
            .inner
            .store
            .keep_alive(uuid, ttl)
            .await
            .map_err(from_store)?
        {
            return Err(RegistryError::NotFound(uuid.to_string()));
        }
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
        self.inner.store.remove(uuid).await.map_err(from_store)?;
        let view = entry.view(now_ms());
        let callbacks = self.unapply(&entry);
        tracing::info!(uuid, name = %entry.labels, "removed");
        self.notify("removed", view.clone(), now_ms());
        self.fire_callbacks(callbacks, &view);
        Ok(view)
    }

    pub(super) fn apply(&self, entry: Entry) {
        let id = Arc::clone(&entry.service.uuid);
        let deadline = entry.expires_ms();
        let entry = Arc::new(entry);
        self.inner.index.insert(&entry);
        // A map keeps the old key on insert: drop any stale one first.
        self.inner.entries.remove(&*id);
        self.inner.entries.insert(ByUuid(entry), ());
        if deadline != NEVER && deadline != LEASED {
            self.push_deadline(deadline, id);
        }
        self.inner
            .metrics
            .services
            .set(i64::try_from(self.inner.entries.len()).unwrap_or(i64::MAX));
        self.touch_serial();
    }

    /// Takes `entry` out of the maps; returns its callbacks.
    pub(super) fn unapply(&self, entry: &Arc<Entry>) -> Vec<Callback> {
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

    pub(super) fn push_deadline(&self, deadline: u64, id: Arc<str>) {
        let earliest = {
            let mut heap = lock(&self.inner.deadlines);
            heap.push(Reverse((deadline, id)));
            heap.peek().map(|Reverse((d, _))| *d)
        };
        if earliest == Some(deadline) {
            self.inner.deadline_changed.notify_one();
        }
    }

    pub(super) fn touch_serial(&self) {
        let now = u32::try_from(now_ms() / 1000).unwrap_or(u32::MAX);
        let _ = self
            .inner
            .serial
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some(now.max(old.wrapping_add(1)))
            });
    }
}
