//! The embedded store: one redb database file in the `-data` directory.
//!
//! Records are JSON under their uuid. redb commits are crash-safe (copy-on-write
//! with checksums), and every commit here uses immediate durability, so a
//! write acknowledged by the API survives `kill -9` and power loss.

use std::{path::Path, sync::Arc};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Loaded, Store, StoreError, StoredService};

const SERVICES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("services");
const FILE_NAME: &str = "skydns.redb";

/// A redb database in a directory.
#[derive(Clone)]
pub struct RedbStore {
    db: Arc<Database>,
    path: String,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish()
    }
}

impl RedbStore {
    /// Opens (or creates) the database in `dir`, creating the directory.
    ///
    /// # Errors
    /// [`StoreError::Open`] if the directory cannot be created,
    /// [`StoreError::Backend`] if the database cannot be opened (locked by
    /// another skydns, damaged beyond repair, unreadable).
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Open {
            path: dir.display().to_string(),
            source,
        })?;
        let file = dir.join(FILE_NAME);
        let db = Database::create(&file)
            .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", file.display())))?;
        let store = Self {
            db: Arc::new(db),
            path: file.display().to_string(),
        };
        // Create the table up front so reads never meet a missing table.
        let txn = store.db.begin_write().map_err(backend)?;
        txn.open_table(SERVICES).map_err(backend)?;
        txn.commit().map_err(backend)?;
        Ok(store)
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| StoreError::Backend(format!("store task failed: {e}")))?
    }
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn encode(record: &StoredService) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(record).map_err(backend)
}

#[async_trait::async_trait]
impl Store for RedbStore {
    async fn load(&self) -> Result<Loaded, StoreError> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(SERVICES).map_err(backend)?;
            let mut loaded = Loaded::default();
            for row in table.iter().map_err(backend)? {
                let (key, value) = row.map_err(backend)?;
                let key = key.value().to_string();
                match serde_json::from_slice::<StoredService>(value.value()) {
                    Ok(record) => loaded.services.push(record),
                    Err(e) => loaded.damaged.push((key, e.to_string())),
                }
            }
            Ok(loaded)
        })
        .await
    }

    async fn put(&self, records: Vec<StoredService>) -> Result<(), StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut table = txn.open_table(SERVICES).map_err(backend)?;
                for record in &records {
                    let bytes = encode(record)?;
                    table
                        .insert(record.service.uuid.as_str(), bytes.as_slice())
                        .map_err(backend)?;
                }
            }
            txn.commit().map_err(backend)
        })
        .await
    }

    async fn remove(&self, uuid: &str) -> Result<(), StoreError> {
        let uuid = uuid.to_string();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut table = txn.open_table(SERVICES).map_err(backend)?;
                table.remove(uuid.as_str()).map_err(backend)?;
            }
            txn.commit().map_err(backend)
        })
        .await
    }

    async fn touch(&self, deadlines: Vec<(String, u64)>) -> Result<(), StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut table = txn.open_table(SERVICES).map_err(backend)?;
                for (uuid, expires_ms) in &deadlines {
                    let record = {
                        let current = table.get(uuid.as_str()).map_err(backend)?;
                        current
                            .and_then(|c| serde_json::from_slice::<StoredService>(c.value()).ok())
                    };
                    let Some(mut record) = record else { continue };
                    record.expires_ms = *expires_ms;
                    let bytes = encode(&record)?;
                    table
                        .insert(uuid.as_str(), bytes.as_slice())
                        .map_err(backend)?;
                }
            }
            txn.commit().map_err(backend)
        })
        .await
    }

    fn describe(&self) -> String {
        format!("redb at {}", self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skydns_api::Service;

    fn record(uuid: &str, expires_ms: u64) -> StoredService {
        StoredService {
            service: Service {
                uuid: uuid.into(),
                host: "10.0.0.1".into(),
                port: 80,
                ..Default::default()
            },
            expires_ms,
            callbacks: Vec::new(),
        }
    }

    #[tokio::test]
    async fn records_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = RedbStore::open(dir.path()).expect("open");
            store
                .put(vec![record("a", 10), record("b", 20)])
                .await
                .expect("put");
            store.remove("a").await.expect("remove");
            store
                .touch(vec![("b".into(), 99), ("missing".into(), 1)])
                .await
                .expect("touch");
        }
        let store = RedbStore::open(dir.path()).expect("reopen");
        let loaded = store.load().await.expect("load");
        assert_eq!(loaded.services, vec![record("b", 99)]);
        assert!(loaded.damaged.is_empty());
    }
}
