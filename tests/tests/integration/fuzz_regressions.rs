//! Regression tests for what the fuzz targets in `fuzz/` found (see
//! docs/reliability.md, "Fuzzing"). Findings in crates whose unit tests the fuzzing
//! work does not own live here.

use std::path::Path;

use skydns::store::{RedbStore, Store, StoredService};
use skydns_api::{Callback, Service};
use skydns_tests::SkyDns;

/// The store file's name in the `-data` directory.
const FILE_NAME: &str = "skydns.redb";

/// One record of the `store_recovery` fuzz target's template store.
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

/// Damage as the `store_recovery` target applies it (offsets modulo the
/// file's length at the time).
enum Damage {
    Flip { at: usize, mask: u8 },
    Write { at: usize, bytes: &'static [u8] },
}

/// Writes the `store_recovery` target's template store into `dir`, then
/// applies a minimized crashing input to it.
async fn damaged_store(dir: &Path, damage: &[Damage]) {
    {
        let store = RedbStore::open(dir).expect("open");
        let records: Vec<StoredService> = (1..=5).map(|n| record(&format!("svc-{n}"), n)).collect();
        store.put(records).await.expect("put");
        store.remove("svc-5").await.expect("remove");
        store.put(vec![record("svc-5", 5)]).await.expect("put");
        store
            .touch(vec![("svc-1".into(), u64::MAX / 3)])
            .await
            .expect("touch");
    }
    let path = dir.join(FILE_NAME);
    let mut file = std::fs::read(&path).expect("read");
    for d in damage {
        match d {
            Damage::Flip { at, mask } => {
                let at = at % file.len();
                file[at] ^= mask;
            }
            Damage::Write { at, bytes } => {
                let at = at % file.len();
                for (i, b) in bytes.iter().enumerate() {
                    if let Some(slot) = file.get_mut(at + i) {
                        *slot = *b;
                    }
                }
            }
        }
    }
    std::fs::write(&path, file).expect("write");
}

/// Minimized input: redb panics in `Database::create`.
const PANICS_ON_OPEN: &[Damage] = &[Damage::Flip {
    at: 3_422_552_064,
    mask: 201,
}];

/// Minimized input (crash-71559295…): `Database::create` succeeds, and redb
/// panics in the next commit — in a debug build the first write transaction
/// (`try_shrink` → `debug_check_consistency`, `buddy_allocator.rs:308`), in
/// the fuzz build the commit `Drop for Database` makes when closing
/// (`buddy_allocator.rs:277`), where a second panic during the unwinding
/// aborted the process.
const PANICS_ON_CLOSE: &[Damage] = &[Damage::Write {
    at: 571_998_373,
    bytes: &[255, 0],
}];

/// store_recovery finding: redb 4.6 panics (`unreachable!` in
/// `btree.rs`, reached from `Database::create` checking the allocator state)
/// on this damaged file. Opening must return an error or a store, never panic.
#[tokio::test]
async fn damaged_store_file_does_not_panic_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    damaged_store(dir.path(), PANICS_ON_OPEN).await;
    let path = dir.path().to_path_buf();
    let opened = tokio::task::spawn_blocking(move || RedbStore::open(&path).map(|_| ())).await;
    assert!(
        opened.is_ok(),
        "RedbStore::open panicked on a damaged file instead of returning an error"
    );
}

/// The same file given to the real binary: skydns either refuses to start
/// with an error (not a panic), or starts and says the store was damaged —
/// never a crash, never a silent empty registry.
#[tokio::test]
async fn skydns_starts_or_fails_cleanly_on_a_damaged_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    damaged_store(dir.path(), PANICS_ON_OPEN).await;
    let data = dir.path().to_str().expect("utf8 path");
    match SkyDns::try_spawn_on("127.0.0.1:0", "127.0.0.1:0", &["-data", data]).await {
        Ok(skydns) => {
            let log = skydns.log().to_ascii_lowercase();
            assert!(
                log.contains("damaged"),
                "skydns started on a damaged store without saying so:\n{log}"
            );
        }
        Err(out) => assert!(
            out.lines().any(|l| l.starts_with("skydns: ")),
            "skydns did not fail with a clear error:\n{out}"
        ),
    }
}

/// store_recovery finding: on a file that opens but panics redb on its next
/// commit, skydns either refuses it with a clear error, or serves and then
/// stops with a clean exit on SIGTERM — never a panic or an abort.
#[tokio::test]
async fn skydns_survives_a_store_that_panics_redb_on_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    damaged_store(dir.path(), PANICS_ON_CLOSE).await;
    let data = dir.path().to_str().expect("utf8 path");
    match SkyDns::try_spawn_on("127.0.0.1:0", "127.0.0.1:0", &["-data", data]).await {
        Ok(skydns) => {
            let log = skydns.log();
            assert!(
                skydns.stop().await,
                "skydns did not exit cleanly on SIGTERM with this store:\n{log}"
            );
        }
        Err(out) => assert!(
            out.lines().any(|l| l.starts_with("skydns: ")),
            "skydns did not fail with a clear error:\n{out}"
        ),
    }
}

/// dns_request finding: a question whose name is a compression pointer into
/// the header (`c0 02`: offset 2, the flags byte, which reads as the root
/// name in the request) was echoed verbatim, as hickory-server echoes the
/// question section; in the response that byte holds QR (0x80), so the
/// answer does not parse. The first name of a message has nothing before it
/// but the header, so such a pointer is never valid: the reply, if any, must
/// be a well-formed DNS message with the request's ID.
#[tokio::test]
async fn question_compressed_into_the_header_gets_a_parseable_reply() {
    let skydns = SkyDns::spawn(&[]).await;
    let request = [
        0x12, 0x34, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, // header, QD=1
        0xc0, 0x02, 0x00, 0x01, 0x00, 0x01, // name: pointer to offset 2; A; IN
    ];
    if let Some(reply) = skydns_tests::udp_raw(skydns.dns, &request).await {
        let parsed = hickory_proto::op::Message::from_vec(&reply)
            .unwrap_or_else(|e| panic!("reply does not parse ({e}): {reply:02x?}"));
        assert_eq!(parsed.metadata.id, 0x1234, "reply ID");
    }
}
