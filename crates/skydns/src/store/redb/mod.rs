//! The embedded store: one redb database file in the `-data` directory.
//!
//! Two tables: `services` holds each registration as JSON under its uuid, and
//! `deadlines` its current deadline (so a heartbeat rewrites eight bytes, not
//! the record). Files written before the `deadlines` table existed load with
//! the deadline inside the JSON.
//!
//! GROUP COMMIT: one writer thread owns the database. Callers queue batches
//! of [`Op`]s to it; it takes every batch waiting (up to [`MAX_BATCH`]),
//! applies them in arrival order in one write transaction, commits with
//! immediate durability (one fsync), and only then answers each caller. So
//! an acknowledged write is on disk, and a failed commit acknowledges none of
//! the batches it held.
//!
//! FAULTS: after a failed transaction (disk full, read-only, I/O error) the
//! database is closed and reopened before the next batch, as redb requires
//! after an I/O error; while it cannot be reopened every batch fails with a
//! clear error, and writes succeed again as soon as the disk does.
//!
//! LOAD: the writer thread reads the `services` table in one read
//! transaction and sends the records on in batches ([`LOAD_BATCH`]) with
//! `blocking_send`, so it decodes the next batch while the registry files
//! the last one, and waits when the registry falls behind.
//!
//! DAMAGE: a file redb cannot open as a database is moved aside
//! (`skydns.redb.damaged-<unix seconds>`) and a fresh one created, loudly
//! ([`Loaded::lost`]); a file that opens but whose table cannot be read to its
//! end keeps what was read, and the records are rewritten into a fresh file
//! while the damaged one is moved aside (see `Writer::rebuild`). Errors that
//! are not damage (another skydns holds the file, permission denied) fail the
//! start.
//!
//! # Layout
//! - this file: [`RedbStore`], the handle that queues jobs to the thread.
//! - `file`: opening the file, and moving a damaged one aside.
//! - `writer`: the thread and its group commit.
//! - `load`: reading every record at start, and rebuilding a damaged file.

mod file;
mod load;
mod writer;

use std::{path::Path, sync::mpsc};

use redb::TableDefinition;
use tokio::sync::oneshot;

use super::{Loaded, Op, Store, StoreError, StoredService};
use file::open_or_move_aside;
use writer::Writer;

pub(super) const SERVICES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("services");
pub(super) const DEADLINES: TableDefinition<'_, &str, u64> = TableDefinition::new("deadlines");
/// The database file's name inside the `-data` directory.
pub const FILE_NAME: &str = "skydns.redb";
/// redb's page cache. Its default (1 GiB) grew skydns by ~45 MiB with
/// 100,000 services; the registry in memory is what DNS reads, and the store
/// is read once, at start, so a small cache costs only a little write speed.
pub(super) const CACHE_BYTES: usize = 4 << 20;
/// Most batches committed in one transaction.
pub(super) const MAX_BATCH: usize = 4096;

/// Where [`Store::load`] sends the records it reads.
pub(super) type Batches = tokio::sync::mpsc::Sender<Vec<StoredService>>;

pub(super) enum Job {
    Load(Batches, oneshot::Sender<Result<Loaded, StoreError>>),
    Commit(Vec<Op>, oneshot::Sender<Result<(), StoreError>>),
}

/// A redb database in a directory, written by one group-committing thread.
///
/// Dropping it lets the thread finish what is queued, close the database
/// cleanly (so the next start needs no repair) and stop; the drop waits for
/// that.
pub struct RedbStore {
    /// `None` only while dropping.
    jobs: Option<mpsc::Sender<Job>>,
    writer: Option<std::thread::JoinHandle<()>>,
    path: String,
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!(file = %self.path, "the store thread failed while closing");
        }
    }
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish()
    }
}

impl RedbStore {
    /// Opens (or creates) the database in `dir`, creating the directory, and
    /// starts its writer thread. A damaged file is moved aside (see the
    /// module documentation); [`Store::load`] reports it.
    ///
    /// # Errors
    /// [`StoreError::Open`] if the directory cannot be created,
    /// [`StoreError::File`] if the database cannot be opened for another
    /// reason than damage (locked by another skydns, permission denied,
    /// read-only file system).
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Open {
            path: dir.display().to_string(),
            source,
        })?;
        let file = dir.join(FILE_NAME);
        let mut lost = Vec::new();
        let db = open_or_move_aside(&file, &mut lost)?;
        let (jobs, rx) = mpsc::channel();
        let writer = Writer {
            db: Some(db),
            file: file.clone(),
            lost,
        };
        let writer = std::thread::Builder::new()
            .name("skydns-store".into())
            .spawn(move || writer.run(&rx))
            .map_err(|e| StoreError::Thread(format!("cannot be started: {e}")))?;
        Ok(Self {
            jobs: Some(jobs),
            writer: Some(writer),
            path: file.display().to_string(),
        })
    }

    async fn ask<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Job,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .as_ref()
            .ok_or_else(|| StoreError::Thread("is closing".into()))?
            .send(job(tx))
            .map_err(|_| StoreError::Thread("has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Thread("has stopped".into()))?
    }
}

#[async_trait::async_trait]
impl Store for RedbStore {
    async fn load(&self, batches: Batches) -> Result<Loaded, StoreError> {
        self.ask(|reply| Job::Load(batches, reply)).await
    }

    async fn commit(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        self.ask(|tx| Job::Commit(ops, tx)).await
    }

    fn describe(&self) -> String {
        format!("redb at {}", self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{LOAD_BATCH, load_all};
    use redb::Database;
    use skydns_api::Service;
    use std::path::Path;

    /// The store directory holds a damaged file moved aside.
    fn assert_moved_aside(dir: &Path) {
        let names: Vec<String> = std::fs::read_dir(dir)
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().any(|n| n.starts_with("skydns.redb.damaged-")),
            "{names:?}"
        );
    }

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
        let (records, loaded, _) = load_all(&store).await.expect("load");
        assert_eq!(records, vec![record("b", 99)]);
        assert!(loaded.damaged.is_empty());
        assert!(loaded.lost.is_empty());
    }

    #[tokio::test]
    async fn concurrent_commits_are_all_durable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = std::sync::Arc::new(RedbStore::open(dir.path()).expect("open"));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..200 {
            let store = std::sync::Arc::clone(&store);
            tasks.spawn(async move { store.put(vec![record(&format!("u{i:03}"), 5)]).await });
        }
        while let Some(r) = tasks.join_next().await {
            r.expect("join").expect("put");
        }
        let (records, _, _) = load_all(&*store).await.expect("load");
        assert_eq!(records.len(), 200);
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_database_is_moved_aside_loudly() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(FILE_NAME), vec![0x5a; 8192]).expect("write");
        let store = RedbStore::open(dir.path()).expect("open");
        let (records, loaded, _) = load_all(&store).await.expect("load");
        assert!(records.is_empty());
        assert_eq!(loaded.lost.len(), 1, "{:?}", loaded.lost);
        assert!(loaded.lost[0].contains("moved to"), "{:?}", loaded.lost);
        assert_moved_aside(dir.path());
    }

    /// A store holding `n` records `u00000`, `u00001`... (3 of every 100
    /// written in a damaged form), closed.
    async fn store_with(dir: &Path, n: usize) {
        let store = RedbStore::open(dir).expect("open");
        let records = (0..n).map(|i| record(&format!("u{i:05}"), 1_000 + i as u64));
        store.put(records.collect()).await.expect("put");
        let damaged: Vec<Op> = (0..n)
            .filter(|i| i % 100 == 7)
            .map(|i| Op::Remove(format!("u{i:05}")))
            .collect();
        store.commit(damaged).await.expect("remove");
        drop(store);
        let db = Database::create(dir.join(FILE_NAME)).expect("reopen raw");
        let txn = db.begin_write().expect("write");
        {
            let mut services = txn.open_table(SERVICES).expect("table");
            for i in (0..n).filter(|i| i % 100 == 7) {
                services
                    .insert(format!("u{i:05}").as_str(), b"{not json".as_slice())
                    .expect("insert");
            }
        }
        txn.commit().expect("commit");
    }

    #[tokio::test]
    async fn load_hands_over_every_record_in_bounded_batches() {
        let dir = tempfile::tempdir().expect("tempdir");
        let n = 2 * LOAD_BATCH + 100;
        store_with(dir.path(), n).await;
        let store = RedbStore::open(dir.path()).expect("open");
        let (records, loaded, batches) = load_all(&store).await.expect("load");
        let damaged = (0..n).filter(|i| i % 100 == 7).count();
        assert_eq!(records.len(), n - damaged);
        assert_eq!(loaded.damaged.len(), damaged, "{:?}", loaded.damaged);
        assert!(loaded.damaged.iter().all(|(key, _)| key.ends_with('7')));
        assert!(loaded.lost.is_empty(), "{:?}", loaded.lost);
        assert_eq!(batches, records.len().div_ceil(LOAD_BATCH), "batches");
        for (i, r) in records.iter().enumerate() {
            let want = (0..n).filter(|i| i % 100 != 7).nth(i).expect("index");
            assert_eq!(*r, record(&format!("u{want:05}"), 1_000 + want as u64));
        }
    }

    #[tokio::test]
    async fn a_load_whose_receiver_goes_away_fails_and_the_store_goes_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        store_with(dir.path(), 3 * LOAD_BATCH).await;
        let store = RedbStore::open(dir.path()).expect("open");
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<StoredService>>(1);
        let first = async {
            let batch = rx.recv().await.expect("a batch");
            drop(rx);
            batch.len()
        };
        let (loaded, first) = tokio::join!(store.load(tx), first);
        assert_eq!(first, LOAD_BATCH);
        assert!(loaded.is_err(), "an abandoned load says so");
        store.put(vec![record("after", 5)]).await.expect("put");
        let (records, _, _) = load_all(&store).await.expect("load");
        assert_eq!(records.len(), 3 * LOAD_BATCH - 31 + 1);
    }

    #[tokio::test]
    async fn a_file_read_only_in_part_keeps_what_was_read_in_a_fresh_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let n = 3 * LOAD_BATCH;
        store_with(dir.path(), n).await;
        // Damage the leaf page that holds a record in the middle of the table.
        let path = dir.path().join(FILE_NAME);
        let mut file = std::fs::read(&path).expect("read");
        let needle = br#""UUID":"u01500""#;
        let at = file
            .windows(needle.len())
            .position(|w| w == needle)
            .expect("record in the file");
        let page = at / 4096 * 4096;
        file[page + 2..page + 4].copy_from_slice(&[0xff, 0xff]);
        std::fs::write(&path, &file).expect("write");

        let store = RedbStore::open(dir.path()).expect("open");
        let (records, loaded, _) = load_all(&store).await.expect("load");
        eprintln!("{} records, {:?}", records.len(), loaded.lost);
        assert!(
            !records.is_empty() && records.len() < 1500,
            "{}",
            records.len()
        );
        assert_eq!(loaded.lost.len(), 1, "{:?}", loaded.lost);
        assert!(
            loaded.lost[0].contains("read only in part"),
            "{:?}",
            loaded.lost
        );
        assert!(
            loaded.lost[0].contains(&format!("{} registrations were recovered", records.len())),
            "{:?}",
            loaded.lost
        );
        drop(store);
        assert_moved_aside(dir.path());
        // The fresh file holds exactly what was handed over.
        let store = RedbStore::open(dir.path()).expect("reopen");
        let (again, loaded, _) = load_all(&store).await.expect("load again");
        assert_eq!(again, records);
        assert!(loaded.lost.is_empty() && loaded.damaged.is_empty());
    }
}
