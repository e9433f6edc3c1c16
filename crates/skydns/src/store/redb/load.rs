//! Reading every record at start, in batches, and rebuilding a file that
//! could be read only in part.

use std::panic::{AssertUnwindSafe, catch_unwind};

use redb::{Database, ReadOnlyTable, ReadableDatabase, ReadableTable};

use super::{
    Batches, DEADLINES, SERVICES,
    file::{move_aside, open_with_tables},
    writer::{Writer, put},
};
use crate::store::{EngineError, LOAD_BATCH, Loaded, StoreError, StoredService};

impl Writer {
    pub(super) fn load(&mut self, batches: Batches) -> Result<Loaded, StoreError> {
        let mut loaded = Loaded {
            lost: std::mem::take(&mut self.lost),
            ..Loaded::default()
        };
        let mut reading = Reading::new(batches);
        let file = self.file.clone();
        let db = self.db().map_err(|e| StoreError::Reopen {
            file,
            error: std::sync::Arc::new(e),
        })?;
        let read = catch_unwind(AssertUnwindSafe(|| {
            read_all(db, &mut reading, &mut loaded.damaged)
        }));
        let failure = match read {
            Ok(Ok(())) => None,
            Ok(Err(Stop::Abandoned)) => return Err(abandoned()),
            Ok(Err(Stop::Failed(e))) => Some(e.to_string()),
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
        let file = self.file.clone();
        let Some(damaged) = self.db.take() else {
            return Err(StoreError::Create {
                file,
                reason: "the damaged file is not open".into(),
            });
        };
        let aside = move_aside(&self.file)?;
        let fresh = open_with_tables(&self.file).map_err(|e| StoreError::Create {
            file: file.clone(),
            reason: e.to_string(),
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
                return Err(StoreError::Rewrite {
                    file,
                    aside,
                    reason: e.to_string(),
                });
            }
            Err(_) => {
                // As in `commit`: a database that panicked is never dropped.
                std::mem::forget(fresh);
                return Err(StoreError::Rewrite {
                    file,
                    aside,
                    reason: EngineError::Panicked.to_string(),
                });
            }
        };
        if copied != reading.records {
            return Err(StoreError::Rewrite {
                file,
                aside,
                reason: format!(
                    "the second read found {copied} registrations instead of {}",
                    reading.records
                ),
            });
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
    StoreError::Abandoned
}

/// Why a read stopped before the end of the table.
enum Stop {
    /// The receiver of the batches was dropped.
    Abandoned,
    /// The engine failed (damaged file, I/O error).
    Failed(EngineError),
}

fn failed(e: impl Into<EngineError>) -> Stop {
    Stop::Failed(e.into())
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
            Decoded::Record(record) => reading.push(record)?,
            Decoded::Damaged(reason) => damaged.push((key.value().to_string(), reason)),
        }
    }
    Ok(())
}

/// Copies the intact records among the first `rows` rows of `from` into
/// `to`, in one transaction; returns how many.
fn copy(from: &Database, to: &Database, rows: usize) -> Result<usize, EngineError> {
    let read = from.begin_read()?;
    let services = read.open_table(SERVICES)?;
    let deadlines = read.open_table(DEADLINES)?;
    let txn = to.begin_write()?;
    let mut copied = 0;
    {
        let mut to_services = txn.open_table(SERVICES)?;
        let mut to_deadlines = txn.open_table(DEADLINES)?;
        for row in services.iter()?.take(rows) {
            let (key, value) = row?;
            if let Decoded::Record(record) = decode(&deadlines, key.value(), value.value())? {
                put(&mut to_services, &mut to_deadlines, &record)?;
                copied += 1;
            }
        }
    }
    txn.commit()?;
    Ok(copied)
}

/// One `services` row, decoded (used at once, one at a time: its size does
/// not matter).
#[allow(clippy::large_enum_variant)]
enum Decoded {
    /// An intact record.
    Record(StoredService),
    /// A record that cannot be decoded, and why.
    Damaged(String),
}

/// Decodes one `services` row, its deadline taken from `deadlines`; `Err`
/// when the engine failed.
fn decode(
    deadlines: &ReadOnlyTable<&'static str, u64>,
    key: &str,
    value: &[u8],
) -> Result<Decoded, EngineError> {
    match serde_json::from_slice::<StoredService>(value) {
        Ok(mut record) => {
            if let Some(d) = deadlines.get(key)? {
                record.expires_ms = d.value();
            }
            Ok(Decoded::Record(record))
        }
        Err(e) => Ok(Decoded::Damaged(e.to_string())),
    }
}
