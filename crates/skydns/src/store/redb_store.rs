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

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    path::{Path, PathBuf},
    sync::mpsc,
};

use redb::{
    Database, DatabaseError, ReadOnlyTable, ReadableDatabase, ReadableTable, StorageError, Table,
    TableDefinition,
};
use tokio::sync::oneshot;

use super::{LOAD_BATCH, Loaded, Op, Store, StoreError, StoredService};

const SERVICES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("services");
const DEADLINES: TableDefinition<'_, &str, u64> = TableDefinition::new("deadlines");
/// The database file's name inside the `-data` directory.
pub const FILE_NAME: &str = "skydns.redb";
/// redb's page cache. Its default (1 GiB) grew skydns by ~45 MiB with
/// 100,000 services; the registry in memory is what DNS reads, and the store
/// is read once, at start, so a small cache costs only a little write speed.
const CACHE_BYTES: usize = 4 << 20;
/// Most batches committed in one transaction.
const MAX_BATCH: usize = 4096;

/// Where [`Store::load`] sends the records it reads.
type Batches = tokio::sync::mpsc::Sender<Vec<StoredService>>;

enum Job {
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
    /// [`StoreError::Backend`] if the database cannot be opened for another
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
            .map_err(|e| StoreError::Backend(format!("cannot start the store thread: {e}")))?;
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
            .ok_or_else(|| StoreError::Backend("the store is closing".into()))?
            .send(job(tx))
            .map_err(|_| StoreError::Backend("the store thread has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Backend("the store thread has stopped".into()))?
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

/// Opens `file`; when it is damaged, moves it aside (noting it in `lost`)
/// and creates a fresh one.
fn open_or_move_aside(file: &Path, lost: &mut Vec<String>) -> Result<Database, StoreError> {
    let err = match open_with_tables(file) {
        Ok(db) => return Ok(db),
        Err(e) => e,
    };
    let damaged = match &err {
        Opened::Panicked => true,
        Opened::Db(DatabaseError::Storage(StorageError::Io(e))) => {
            // Not a database, or shorter than its own header says (truncated).
            matches!(
                e.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
            )
        }
        Opened::Db(
            DatabaseError::DatabaseAlreadyOpen
            | DatabaseError::LockProtocolMismatch
            | DatabaseError::TransactionInProgress,
        ) => false,
        Opened::Db(_) | Opened::Other(_) => true,
    };
    let reason = err.to_string();
    if !damaged {
        let hint = if matches!(
            err,
            Opened::Db(DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch)
        ) {
            " (is another skydns running with this -data?)"
        } else {
            ""
        };
        return Err(StoreError::Backend(format!(
            "cannot open {}: {reason}{hint}",
            file.display()
        )));
    }
    let aside = move_aside(file)?;
    lost.push(format!(
        "the store file could not be opened ({reason}); it was moved to {} and a new, empty one created: \
         every registration it held is lost until its owner registers again",
        aside.display()
    ));
    open_with_tables(file).map_err(|e| {
        StoreError::Backend(format!(
            "cannot create a new store at {}: {e}",
            file.display()
        ))
    })
}

/// Why a database could not be opened.
#[derive(Debug, thiserror::Error)]
enum Opened {
    #[error("{0}")]
    Db(DatabaseError),
    #[error("{0}")]
    Other(String),
    #[error("the database engine found it inconsistent")]
    Panicked,
}

/// Opens or creates `file` and makes sure both tables exist.
fn open_with_tables(file: &Path) -> Result<Database, Opened> {
    // redb's debug builds assert on some impossible-unless-damaged states; a
    // panic here means a damaged file, not a bug to crash on.
    let db = catch_unwind(|| create(file))
        .map_err(|_| Opened::Panicked)?
        .map_err(Opened::Db)?;
    let txn = db.begin_write().map_err(|e| Opened::Other(e.to_string()))?;
    txn.open_table(SERVICES)
        .map_err(|e| Opened::Other(e.to_string()))?;
    txn.open_table(DEADLINES)
        .map_err(|e| Opened::Other(e.to_string()))?;
    txn.commit().map_err(|e| Opened::Other(e.to_string()))?;
    Ok(db)
}

/// Opens or creates the database, saying so when it has to be repaired (it
/// was not closed cleanly: `kill -9`, power loss, a failed write).
fn create(file: &Path) -> Result<Database, DatabaseError> {
    let repaired = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&repaired);
    let started = std::time::Instant::now();
    let db = redb::Builder::new()
        .set_cache_size(CACHE_BYTES)
        .set_repair_callback(move |_| flag.store(true, std::sync::atomic::Ordering::Relaxed))
        .create(file)?;
    if repaired.load(std::sync::atomic::Ordering::Relaxed) {
        tracing::warn!(
            file = %file.display(),
            took_ms = started.elapsed().as_millis(),
            "store was not closed cleanly and was repaired (committed writes are kept)"
        );
    }
    Ok(db)
}

/// Renames `file` to `<file>.damaged-<unix seconds>`.
fn move_aside(file: &Path) -> Result<PathBuf, StoreError> {
    let mut aside = file.as_os_str().to_owned();
    aside.push(format!(".damaged-{}", crate::registry::now_ms() / 1000));
    let aside = PathBuf::from(aside);
    std::fs::rename(file, &aside).map_err(|e| {
        StoreError::Backend(format!(
            "{} is damaged and cannot be moved aside to {}: {e}",
            file.display(),
            aside.display()
        ))
    })?;
    Ok(aside)
}

fn backend(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// The writer thread's state.
struct Writer {
    /// `None` after a failed transaction, until reopened.
    db: Option<Database>,
    file: PathBuf,
    /// Damage found at open, reported by the first load.
    lost: Vec<String>,
}

type Pending = (Vec<Op>, oneshot::Sender<Result<(), StoreError>>);

impl Writer {
    fn run(mut self, rx: &mpsc::Receiver<Job>) {
        let mut batch: Vec<Pending> = Vec::new();
        while let Ok(job) = rx.recv() {
            let mut load = None;
            match job {
                Job::Load(batches, reply) => load = Some((batches, reply)),
                Job::Commit(ops, reply) => batch.push((ops, reply)),
            }
            while load.is_none() && batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(Job::Commit(ops, reply)) => batch.push((ops, reply)),
                    Ok(Job::Load(batches, reply)) => load = Some((batches, reply)),
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                let result = self.commit(&batch);
                if let Err(e) = &result {
                    tracing::warn!(error = %e, writes = batch.len(), "store commit failed; the writes were refused");
                }
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(result.clone().map_err(StoreError::Backend));
                }
            }
            if let Some((batches, reply)) = load {
                // `load` drops `batches` before the reply is sent.
                let _ = reply.send(self.load(batches));
            }
        }
    }

    /// The open database, reopening it after a failure.
    fn db(&mut self) -> Result<&Database, String> {
        if self.db.is_none() {
            let db = catch_unwind(|| create(&self.file))
                .map_err(|_| format!("cannot reopen {}: damaged", self.file.display()))?
                .map_err(|e| format!("cannot reopen {}: {e}", self.file.display()))?;
            tracing::info!(file = %self.file.display(), "store reopened");
            self.db = Some(db);
        }
        self.db
            .as_ref()
            .ok_or_else(|| format!("{} is not open", self.file.display()))
    }

    fn commit(&mut self, batch: &[Pending]) -> Result<(), String> {
        let file = self.file.display().to_string();
        let db = self.db()?;
        let result = match catch_unwind(AssertUnwindSafe(|| write(db, batch))) {
            Ok(result) => result,
            Err(_) => {
                // A database whose commit panicked would commit again in its
                // `Drop` and may panic there, outside any guard: never drop it.
                std::mem::forget(self.db.take());
                Err("the database engine failed".into())
            }
        };
        if result.is_err() {
            // redb wants a reopen after an I/O error; do it for any failure.
            self.db = None;
        }
        result.map_err(|e| format!("cannot write to {file}: {e}"))
    }

    fn load(&mut self, batches: Batches) -> Result<Loaded, StoreError> {
        let mut loaded = Loaded {
            lost: std::mem::take(&mut self.lost),
            ..Loaded::default()
        };
        let mut reading = Reading::new(batches);
        let db = self.db().map_err(StoreError::Backend)?;
        let read = catch_unwind(AssertUnwindSafe(|| {
            read_all(db, &mut reading, &mut loaded.damaged)
        }));
        let failure = match read {
            Ok(Ok(())) => None,
            Ok(Err(Stop::Abandoned)) => return Err(abandoned()),
            Ok(Err(Stop::Failed(e))) => Some(e),
            Err(_) => Some("the database engine found it inconsistent".to_string()),
        };
        // What was read before a failure is kept too.
        reading.flush().map_err(|_| abandoned())?;
        if let Some(failure) = failure {
            self.rebuild(&failure, &reading, &mut loaded.lost)?;
        }
        Ok(loaded)
    }

    /// The file opened but could not be read to its end (`failure`): moves
    /// it aside and writes the records handed over from it to a fresh file.
    ///
    /// Those records have already left for the registry, so they are read a
    /// second time from the damaged file, which stays open (through its open
    /// handle, once renamed) for this: the first `reading.rows` rows, which
    /// were read once already, never the one that failed. Rewriting them
    /// here rather than having the registry put back what it restored keeps
    /// the store's promise that when `load` returns, the store holds every
    /// record it handed over: the registry never holds an entry the store
    /// has not (its rule for every write), and the rare damaged start costs
    /// a second read instead of a copy of every record kept in memory.
    fn rebuild(
        &mut self,
        failure: &str,
        reading: &Reading,
        lost: &mut Vec<String>,
    ) -> Result<(), StoreError> {
        let file = self.file.display().to_string();
        let damaged = self
            .db
            .take()
            .ok_or_else(|| StoreError::Backend(format!("{file} is not open")))?;
        let aside = move_aside(&self.file)?;
        let fresh = open_with_tables(&self.file).map_err(|e| {
            StoreError::Backend(format!("cannot create a new store at {file}: {e}"))
        })?;
        let copied = if reading.rows == 0 {
            Ok(Ok(0))
        } else {
            catch_unwind(AssertUnwindSafe(|| copy(&damaged, &fresh, reading.rows)))
        };
        drop(damaged);
        let copied = match copied {
            Ok(Ok(copied)) => copied,
            Ok(Err(e)) => {
                return Err(StoreError::Backend(format!(
                    "cannot rewrite the registrations recovered from {} to {file}: {e}",
                    aside.display()
                )));
            }
            Err(_) => {
                // As in `commit`: a database that panicked is never dropped.
                std::mem::forget(fresh);
                return Err(StoreError::Backend(format!(
                    "cannot rewrite the registrations recovered from {} to {file}: \
                     the database engine failed",
                    aside.display()
                )));
            }
        };
        if copied != reading.records {
            return Err(StoreError::Backend(format!(
                "{} read {copied} registrations the second time instead of {}; \
                 they cannot be rewritten to {file}",
                aside.display(),
                reading.records
            )));
        }
        self.db = Some(fresh);
        lost.push(format!(
            "the store file could be read only in part ({failure}); {copied} registrations were recovered \
             and rewritten to a new file, the rest is lost; the damaged file was moved to {}",
            aside.display()
        ));
        Ok(())
    }
}

/// The error of a load whose caller stopped receiving.
fn abandoned() -> StoreError {
    StoreError::Backend("the store load was abandoned: nothing receives its records".into())
}

/// Why a read stopped before the end of the table.
enum Stop {
    /// The receiver of the batches was dropped.
    Abandoned,
    /// The engine failed (damaged file, I/O error).
    Failed(String),
}

fn failed(e: impl std::fmt::Display) -> Stop {
    Stop::Failed(e.to_string())
}

/// A load under way: the batch being filled, and how far the read got.
struct Reading {
    batches: Batches,
    batch: Vec<StoredService>,
    /// Rows of `services` read (handed over, or reported damaged).
    rows: usize,
    /// Records handed over (or in `batch`, about to be).
    records: usize,
}

impl Reading {
    fn new(batches: Batches) -> Self {
        Self {
            batches,
            batch: Vec::new(),
            rows: 0,
            records: 0,
        }
    }

    fn push(&mut self, record: StoredService) -> Result<(), Stop> {
        if self.batch.capacity() == 0 {
            self.batch.reserve_exact(LOAD_BATCH);
        }
        self.batch.push(record);
        self.records += 1;
        if self.batch.len() >= LOAD_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    /// Sends the batch being filled, waiting while the channel is full.
    fn flush(&mut self) -> Result<(), Stop> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.batches
            .blocking_send(std::mem::take(&mut self.batch))
            .map_err(|_| Stop::Abandoned)
    }
}

/// Reads every record, handing the intact ones to `reading` and noting the
/// undecodable ones in `damaged`; stops at the first unreadable row.
fn read_all(
    db: &Database,
    reading: &mut Reading,
    damaged: &mut Vec<(String, String)>,
) -> Result<(), Stop> {
    let txn = db.begin_read().map_err(failed)?;
    let services = txn.open_table(SERVICES).map_err(failed)?;
    let deadlines = txn.open_table(DEADLINES).map_err(failed)?;
    for row in services.iter().map_err(failed)? {
        let (key, value) = row.map_err(failed)?;
        let decoded = decode(&deadlines, key.value(), value.value()).map_err(failed)?;
        reading.rows += 1;
        match decoded {
            Ok(record) => reading.push(record)?,
            Err(reason) => damaged.push((key.value().to_string(), reason)),
        }
    }
    Ok(())
}

/// Copies the intact records among the first `rows` rows of `from` into
/// `to`, in one transaction; returns how many.
fn copy(from: &Database, to: &Database, rows: usize) -> Result<usize, String> {
    let read = from.begin_read().map_err(backend)?;
    let services = read.open_table(SERVICES).map_err(backend)?;
    let deadlines = read.open_table(DEADLINES).map_err(backend)?;
    let txn = to.begin_write().map_err(backend)?;
    let mut copied = 0;
    {
        let mut to_services = txn.open_table(SERVICES).map_err(backend)?;
        let mut to_deadlines = txn.open_table(DEADLINES).map_err(backend)?;
        for row in services.iter().map_err(backend)?.take(rows) {
            let (key, value) = row.map_err(backend)?;
            if let Ok(record) = decode(&deadlines, key.value(), value.value())? {
                put(&mut to_services, &mut to_deadlines, &record)?;
                copied += 1;
            }
        }
    }
    txn.commit().map_err(backend)?;
    Ok(copied)
}

/// Decodes one `services` row, its deadline taken from `deadlines`:
/// `Ok(Err(reason))` when the record is damaged, `Err` when the engine failed.
fn decode(
    deadlines: &ReadOnlyTable<&'static str, u64>,
    key: &str,
    value: &[u8],
) -> Result<Result<StoredService, String>, String> {
    match serde_json::from_slice::<StoredService>(value) {
        Ok(mut record) => {
            if let Some(d) = deadlines.get(key).map_err(backend)? {
                record.expires_ms = d.value();
            }
            Ok(Ok(record))
        }
        Err(e) => Ok(Err(e.to_string())),
    }
}

/// Inserts or replaces `record` in the two tables.
fn put(
    services: &mut Table<'_, &'static str, &'static [u8]>,
    deadlines: &mut Table<'_, &'static str, u64>,
    record: &StoredService,
) -> Result<(), String> {
    let uuid = record.service.uuid.as_str();
    let bytes = serde_json::to_vec(record).map_err(backend)?;
    services.insert(uuid, bytes.as_slice()).map_err(backend)?;
    deadlines.insert(uuid, record.expires_ms).map_err(backend)?;
    Ok(())
}

/// Applies every batch in one transaction and commits it durably.
fn write(db: &Database, batch: &[Pending]) -> Result<(), String> {
    let txn = db.begin_write().map_err(backend)?;
    {
        let mut services = txn.open_table(SERVICES).map_err(backend)?;
        let mut deadlines = txn.open_table(DEADLINES).map_err(backend)?;
        for op in batch.iter().flat_map(|(ops, _)| ops) {
            match op {
                Op::Put(record) => put(&mut services, &mut deadlines, record)?,
                Op::Remove(uuid) => {
                    services.remove(uuid.as_str()).map_err(backend)?;
                    deadlines.remove(uuid.as_str()).map_err(backend)?;
                }
                Op::Touch(uuid, deadline) => {
                    let stored = services.get(uuid.as_str()).map_err(backend)?.is_some();
                    if stored {
                        deadlines
                            .insert(uuid.as_str(), *deadline)
                            .map_err(backend)?;
                    }
                }
            }
        }
    }
    txn.commit().map_err(backend)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::load_all;
    use skydns_api::Service;

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
