//! The writer thread: it owns the database and commits every batch waiting
//! in one transaction and one fsync (group commit).

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    path::PathBuf,
    sync::{Arc, mpsc},
};

use redb::{Database, ReadableTable, Table};
use tokio::sync::oneshot;

use super::{DEADLINES, Job, MAX_BATCH, SERVICES, file::create};
use crate::store::{EngineError, Op, StoreError, StoredService};

/// The writer thread's state.
pub(super) struct Writer {
    /// `None` after a failed transaction, until reopened.
    pub(super) db: Option<Database>,
    pub(super) file: PathBuf,
    /// Damage found at open, reported by the first load.
    pub(super) lost: Vec<String>,
}

pub(super) type Pending = (Vec<Op>, oneshot::Sender<Result<(), StoreError>>);

/// Why a commit failed, shared by every batch it held.
#[derive(Debug, Clone)]
enum CommitError {
    /// The database could not be reopened after an earlier failure.
    Reopen(Arc<EngineError>),
    /// The transaction failed; nothing of it was kept.
    Write(Arc<EngineError>),
}

impl CommitError {
    fn for_caller(&self, file: &std::path::Path) -> StoreError {
        let file = file.to_path_buf();
        match self {
            Self::Reopen(error) => StoreError::Reopen {
                file,
                error: Arc::clone(error),
            },
            Self::Write(error) => StoreError::Write {
                file,
                error: Arc::clone(error),
            },
        }
    }
}

impl Writer {
    pub(super) fn run(mut self, rx: &mpsc::Receiver<Job>) {
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
                    let e = e.for_caller(&self.file);
                    tracing::warn!(error = %e, writes = batch.len(), "store commit failed; the writes were refused");
                }
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(
                        result
                            .as_ref()
                            .map_err(|e| e.for_caller(&self.file))
                            .copied(),
                    );
                }
            }
            if let Some((batches, reply)) = load {
                // `load` drops `batches` before the reply is sent.
                let _ = reply.send(self.load(batches));
            }
        }
    }

    /// The open database, reopening it after a failure.
    pub(super) fn db(&mut self) -> Result<&Database, EngineError> {
        if self.db.is_none() {
            let db = catch_unwind(|| create(&self.file)).map_err(|_| EngineError::Panicked)??;
            tracing::info!(file = %self.file.display(), "store reopened");
            self.db = Some(db);
        }
        self.db.as_ref().ok_or(EngineError::Panicked)
    }

    fn commit(&mut self, batch: &[Pending]) -> Result<(), CommitError> {
        let db = self.db().map_err(|e| CommitError::Reopen(Arc::new(e)))?;
        let result = match catch_unwind(AssertUnwindSafe(|| write(db, batch))) {
            Ok(result) => result,
            Err(_) => {
                // A database whose commit panicked would commit again in its
                // `Drop` and may panic there, outside any guard: never drop it.
                std::mem::forget(self.db.take());
                Err(EngineError::Panicked)
            }
        };
        if result.is_err() {
            // redb wants a reopen after an I/O error; do it for any failure.
            self.db = None;
        }
        result.map_err(|e| CommitError::Write(Arc::new(e)))
    }
}

/// Inserts or replaces `record` in the two tables.
pub(super) fn put(
    services: &mut Table<'_, &'static str, &'static [u8]>,
    deadlines: &mut Table<'_, &'static str, u64>,
    record: &StoredService,
) -> Result<(), EngineError> {
    let uuid = record.service.uuid.as_str();
    let bytes = serde_json::to_vec(record)?;
    services.insert(uuid, bytes.as_slice())?;
    deadlines.insert(uuid, record.expires_ms)?;
    Ok(())
}

/// Applies every batch in one transaction and commits it durably.
fn write(db: &Database, batch: &[Pending]) -> Result<(), EngineError> {
    let txn = db.begin_write()?;
    {
        let mut services = txn.open_table(SERVICES)?;
        let mut deadlines = txn.open_table(DEADLINES)?;
        for op in batch.iter().flat_map(|(ops, _)| ops) {
            match op {
                Op::Create(record) | Op::Put(record) => {
                    put(&mut services, &mut deadlines, record)?;
                }
                Op::Remove(uuid) => {
                    services.remove(uuid.as_str())?;
                    deadlines.remove(uuid.as_str())?;
                }
                Op::Touch(uuid, deadline) => {
                    let stored = services.get(uuid.as_str())?.is_some();
                    if stored {
                        deadlines.insert(uuid.as_str(), *deadline)?;
                    }
                }
            }
        }
    }
    Ok(txn.commit()?)
}
