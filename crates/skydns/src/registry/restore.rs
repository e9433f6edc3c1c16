//! Filling the registry from the store at start: a batch at a time,
//! purging what expired while skydns was down.

use super::*;

/// Batches of stored records in flight at start (each at most
/// [`crate::store::LOAD_BATCH`]): enough for the store to read the next one
/// while the registry files the last.
const LOAD_QUEUE: usize = 2;

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

impl Registry {
    /// Fills the registry from the store, a batch at a time as the store
    /// reads them ([`Store::load`]), so that only a few batches of full
    /// records exist at once besides the compact entries.
    pub(super) async fn restore(&self) -> Result<LoadReport, RegistryError> {
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
    pub(super) fn restore_one(
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::test_support::*;

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
