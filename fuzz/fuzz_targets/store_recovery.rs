//! The store's recovery from a damaged data directory.
//!
//! A valid redb store with a few records is written once (through
//! `skydns::store::RedbStore`); each input is a list of byte flips, overwrites
//! and a truncation applied to a copy of that file. Then the directory is
//! opened and loaded, and the registry restored from it, as skydns does at
//! start. Invariants besides "no panic, no hang": open/load return an error or
//! a `Loaded`; load never hands over more records (read, in batches of at
//! most `LOAD_BATCH`, + damaged) than were written; the registry never
//! restores more than the store handed over.
//! Panics inside redb are caught as the fix does (see `install_redb_panic_hook`).
#![no_main]

use std::{
    collections::HashSet,
    panic::AssertUnwindSafe,
    path::PathBuf,
    sync::{Arc, LazyLock, Mutex, Once},
};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use skydns::{
    fuzzing,
    store::{LOAD_BATCH, RedbStore, Store, StoredService},
};
use skydns_api::{Callback, Service};
use skydns_fuzz::{DOMAIN, runtime};

/// Name of the database file inside the data directory (`RedbStore`'s).
const FILE_NAME: &str = "skydns.redb";

struct Fixture {
    rt: tokio::runtime::Runtime,
    /// The pristine database file.
    template: Vec<u8>,
    records: usize,
    /// Where each damaged copy is written (tmpfs when available).
    dir: tempfile::TempDir,
}

fn record(uuid: &str, n: u8) -> StoredService {
    StoredService {
        service: Service {
            uuid: uuid.into(),
            name: "web".into(),
            version: format!("1.{n}"),
            environment: "production".into(),
            region: "east".into(),
            host: format!("10.0.0.{n}"),
            port: 8000 + u16::from(n),
            ttl: 3600,
            ..Service::default()
        },
        expires_ms: u64::MAX / 2,
        callbacks: vec![Callback {
            uuid: uuid.into(),
            name: "web".into(),
            reply: "127.0.0.1".into(),
            port: 9999,
            ..Callback::default()
        }],
    }
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let rt = runtime();
    let base = ["/dev/shm", "/tmp"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::Builder::new()
        .prefix("skydns-fuzz-")
        .tempdir_in(base)
        .expect("tempdir");
    let records: Vec<StoredService> = (1..=5).map(|n| record(&format!("svc-{n}"), n)).collect();
    let count = records.len();
    rt.block_on(async {
        let store = RedbStore::open(dir.path()).expect("open template store");
        store.put(records).await.expect("put");
        store.remove("svc-5").await.expect("remove");
        store
            .put(vec![record("svc-5", 5)])
            .await
            .expect("put again");
        store
            .touch(vec![("svc-1".into(), u64::MAX / 3)])
            .await
            .expect("touch");
    });
    let template = std::fs::read(dir.path().join(FILE_NAME)).expect("read template");
    Fixture {
        rt,
        template,
        records: count,
        dir,
    }
});

#[derive(Debug, Arbitrary)]
enum Damage {
    /// XOR one byte.
    Flip { at: u32, mask: u8 },
    /// Overwrite bytes from `at`.
    Write { at: u32, bytes: Vec<u8> },
    /// Cut the file.
    Truncate { len: u32 },
}

fn damaged(template: &[u8], damage: &[Damage]) -> Vec<u8> {
    let mut file = template.to_vec();
    for d in damage {
        let len = file.len().max(1);
        match d {
            Damage::Flip { at, mask } => {
                if let Some(b) = file.get_mut(*at as usize % len) {
                    *b ^= mask;
                }
            }
            Damage::Write { at, bytes } => {
                let start = *at as usize % len;
                for (i, b) in bytes.iter().enumerate() {
                    if let Some(slot) = file.get_mut(start + i) {
                        *slot = *b;
                    }
                }
            }
            Damage::Truncate { len: to } => file.truncate(*to as usize % len),
        }
    }
    file
}

/// Panics raised inside redb on a damaged file are the known finding (see
/// docs/reliability-fuzz.md, tests/tests/integration/fuzz_regressions.rs):
/// the fix catches them in `RedbStore` (`catch_unwind`) and reports the file
/// as damaged. This target does the same around open + load, so fuzzing goes
/// on to look for everything else; each distinct redb panic site is printed
/// once. Any other panic still aborts through libFuzzer's hook.
fn install_redb_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let fuzzer_hook = std::panic::take_hook();
        let seen = Mutex::new(HashSet::new());
        std::panic::set_hook(Box::new(move |info| {
            let site = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            if site.contains("/redb-") {
                if seen.lock().is_ok_and(|mut s| s.insert(site.clone())) {
                    eprintln!("store_recovery: redb panic at {site}: {info}");
                }
                return;
            }
            fuzzer_hook(info);
        }));
    });
}

/// Runs `f`, turning a panic raised inside redb into `None`.
fn redb_guard<T>(f: impl FnOnce() -> T) -> Option<T> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).ok()
}

fuzz_target!(|damage: Vec<Damage>| {
    install_redb_panic_hook();
    let fx = &*FIXTURE;
    let file = damaged(&fx.template, &damage);
    let path = fx.dir.path().join(FILE_NAME);
    std::fs::write(&path, &file).expect("write damaged copy");
    fx.rt.block_on(async {
        let Some(Ok(store)) = redb_guard(|| RedbStore::open(fx.dir.path())) else {
            return;
        };
        // `load` runs redb on the store's thread, which catches a redb panic
        // and reports it: `Err` here, or the records read before it.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<StoredService>>(2);
        let count = async {
            let mut read = 0;
            while let Some(batch) = rx.recv().await {
                assert!(
                    !batch.is_empty() && batch.len() <= LOAD_BATCH,
                    "a batch of {} records",
                    batch.len()
                );
                read += batch.len();
            }
            read
        };
        let (loaded, read) = tokio::join!(store.load(tx), count);
        let Ok(loaded) = loaded else {
            return;
        };
        let found = read + loaded.damaged.len();
        assert!(
            found <= fx.records,
            "{found} records read from a store holding {}",
            fx.records
        );
        if let Ok((registry, report)) = fuzzing::registry(Arc::new(store), DOMAIN).await {
            assert!(report.restored <= read, "restored more than loaded");
            assert!(registry.len() <= read, "registry holds more than loaded");
        }
    });
});
