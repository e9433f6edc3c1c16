//! Opening the database file, and moving a damaged one aside.

use std::{
    panic::catch_unwind,
    path::{Path, PathBuf},
    sync::Arc,
};

use redb::{Database, DatabaseError, StorageError};

use super::{CACHE_BYTES, DEADLINES, SERVICES};
use crate::store::{EngineError, StoreError};

/// Opens `file`; when it is damaged, moves it aside (noting it in `lost`)
/// and creates a fresh one.
pub(super) fn open_or_move_aside(
    file: &Path,
    lost: &mut Vec<String>,
) -> Result<Database, StoreError> {
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
        return Err(StoreError::File {
            file: file.to_path_buf(),
            reason,
            hint,
        });
    }
    let aside = move_aside(file)?;
    lost.push(format!(
        "the store file could not be opened ({reason}); it was moved to {} and a new, empty one created: \
         every registration it held is lost until its owner registers again",
        aside.display()
    ));
    open_with_tables(file).map_err(|e| StoreError::Create {
        file: file.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Why a database could not be opened.
#[derive(Debug, thiserror::Error)]
pub(super) enum Opened {
    #[error("{0}")]
    Db(DatabaseError),
    #[error("{0}")]
    Other(EngineError),
    #[error("the database engine found it inconsistent")]
    Panicked,
}

/// Opens or creates `file` and makes sure both tables exist.
pub(super) fn open_with_tables(file: &Path) -> Result<Database, Opened> {
    // redb's debug builds assert on some impossible-unless-damaged states; a
    // panic here means a damaged file, not a bug to crash on.
    let db = catch_unwind(|| create(file))
        .map_err(|_| Opened::Panicked)?
        .map_err(Opened::Db)?;
    let other = |e: EngineError| Opened::Other(e);
    let txn = db.begin_write().map_err(|e| other(e.into()))?;
    txn.open_table(SERVICES).map_err(|e| other(e.into()))?;
    txn.open_table(DEADLINES).map_err(|e| other(e.into()))?;
    txn.commit().map_err(|e| other(e.into()))?;
    Ok(db)
}

/// Opens or creates the database, saying so when it has to be repaired (it
/// was not closed cleanly: `kill -9`, power loss, a failed write).
pub(super) fn create(file: &Path) -> Result<Database, DatabaseError> {
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
pub(super) fn move_aside(file: &Path) -> Result<PathBuf, StoreError> {
    let mut aside = file.as_os_str().to_owned();
    aside.push(format!(".damaged-{}", crate::registry::now_ms() / 1000));
    let aside = PathBuf::from(aside);
    std::fs::rename(file, &aside).map_err(|error| StoreError::MoveAside {
        file: file.to_path_buf(),
        aside: aside.clone(),
        error: Arc::new(error),
    })?;
    Ok(aside)
}
