//! The embedded store under faults: `kill -9` during a stream of writes, a
//! disk that fills up or turns read-only under a running skydns, and a
//! damaged store file at start.
//!
//! The disk tests mount a small tmpfs (a real `ENOSPC`) and use the immutable
//! attribute (`chattr +i`, a real `EPERM` even for root); both need root, as
//! the test machines run the suite. Without root they fail saying so.

use std::{
    collections::HashMap,
    io::Write,
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::Duration,
};

use hickory_proto::rr::RecordType;
use serde_json::json;
use skydns_tests::{ClientError, HttpReply, SkyDns, a_records, http, service};
use tokio::sync::Mutex;

const STORE_FILE: &str = "skydns.redb";

/// What a client knows about one uuid when skydns dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    /// PUT acknowledged (201), no DELETE sent.
    Present,
    /// DELETE acknowledged (200).
    Absent,
    /// PUT sent, no answer: all there or not there at all.
    MaybePut,
    /// DELETE sent, no answer: there (intact) or gone.
    MaybeDeleted,
}

fn host_of(client: usize, i: usize) -> String {
    format!("127.1.{client}.{}", i % 250 + 1)
}

#[tokio::test]
async fn kill_9_during_puts_and_deletes_keeps_every_acknowledged_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf8 path");
    let sky = SkyDns::spawn(&["-data", data]).await;
    let known: Arc<Mutex<HashMap<String, (Known, String)>>> = Arc::default();
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..8 {
        let client = sky.client.clone();
        let known = Arc::clone(&known);
        clients.spawn(async move {
            let mut acked = 0usize;
            for i in 0..100_000 {
                let uuid = format!("k{c}-{i}");
                let host = host_of(c, i);
                let svc = service("kill", "durable", &format!("c{c}"), &host, 80, 3600);
                known
                    .lock()
                    .await
                    .insert(uuid.clone(), (Known::MaybePut, host.clone()));
                if client.add_service(&uuid, &svc).await.is_err() {
                    return acked;
                }
                known
                    .lock()
                    .await
                    .insert(uuid.clone(), (Known::Present, host));
                acked += 1;
                // Delete every third service right after its registration.
                if i % 3 == 0 {
                    if let Some(k) = known.lock().await.get_mut(&uuid) {
                        k.0 = Known::MaybeDeleted;
                    }
                    if client.delete_service(&uuid).await.is_err() {
                        return acked;
                    }
                    if let Some(k) = known.lock().await.get_mut(&uuid) {
                        k.0 = Known::Absent;
                    }
                    acked += 1;
                }
            }
            acked
        });
    }
    // Let the stream run, then kill skydns in the middle of it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    sky.kill9().await;
    let mut acked = 0;
    while let Some(n) = clients.join_next().await {
        acked += n.expect("client task");
    }
    assert!(
        acked > 100,
        "the stream should have had many acknowledged writes before the kill, got {acked}"
    );

    let sky = SkyDns::spawn(&["-data", data]).await;
    assert!(
        sky.log().contains("not closed cleanly"),
        "after kill -9 the store is repaired, and says so: {}",
        sky.log()
    );
    let restored: HashMap<String, String> = sky
        .client
        .list_services(None)
        .await
        .expect("list")
        .into_iter()
        .map(|s| (s.uuid, s.host))
        .collect();
    let known = known.lock().await;
    let (mut present, mut absent, mut uncertain) = (0, 0, 0);
    for (uuid, (state, host)) in known.iter() {
        let got = restored.get(uuid);
        match state {
            Known::Present => {
                present += 1;
                assert_eq!(
                    got,
                    Some(host),
                    "acknowledged PUT of {uuid} lost or changed"
                );
            }
            Known::Absent => {
                absent += 1;
                assert_eq!(got, None, "acknowledged DELETE of {uuid} undone");
            }
            Known::MaybePut | Known::MaybeDeleted => {
                uncertain += 1;
                if let Some(got) = got {
                    assert_eq!(got, host, "unacknowledged write of {uuid} half-applied");
                }
            }
        }
    }
    for uuid in restored.keys() {
        assert!(known.contains_key(uuid), "{uuid} appeared from nowhere");
    }
    assert!(
        present > 0 && absent > 0,
        "present {present}, absent {absent}"
    );
    assert!(uncertain <= 8, "at most one write in flight per client");
    assert!(sky.stop().await, "SIGTERM exits cleanly");
}

/// A small tmpfs mounted for one test, unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs to fill it and needs root (or CAP_SYS_ADMIN): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a filler file until the disk is full; returns its path.
    fn fill(&self) -> PathBuf {
        let path = self.path().join("filler");
        let mut f = std::fs::File::create(&path).expect("create filler");
        let chunk = vec![0xa5u8; 64 * 1024];
        loop {
            if f.write_all(&chunk).is_err() {
                break;
            }
        }
        // Fill the last partial page too.
        while f.write_all(&[1]).is_ok() {}
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("chattr")
            .arg("-i")
            .arg(self.path().join("data").join(STORE_FILE))
            .output();
        let _ = Command::new("umount").arg("-l").arg(self.path()).output();
    }
}

fn chattr(flag: &str, path: &Path) {
    let out = Command::new("chattr")
        .arg(flag)
        .arg(path)
        .output()
        .expect("run chattr");
    assert!(
        out.status.success(),
        "chattr {flag} {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn put(sky: &SkyDns, uuid: &str, host: &str) -> HttpReply {
    let body = json!({"Name":"disk","Environment":"fault","Host":host,"Port":80,"TTL":3600});
    let bytes = serde_json::to_vec(&body).expect("json");
    http(
        sky.http,
        "PUT",
        &format!("/skydns/services/{uuid}"),
        &[],
        Some(&bytes),
    )
    .await
    .unwrap_or_else(|e| panic!("PUT {uuid}: {e}"))
}

fn assert_503(r: &HttpReply, what: &str) {
    assert_eq!(r.status, 503, "{what}: {}", r.text());
    let err = r.json()["error"].as_str().unwrap_or_default().to_string();
    assert!(
        err.contains("storage unavailable") && err.contains("nothing was changed"),
        "{what}: clear message in {}",
        r.text()
    );
}

async fn count(sky: &SkyDns) -> usize {
    sky.client.list_services(None).await.expect("list").len()
}

async fn a_count(sky: &SkyDns) -> usize {
    a_records(&sky.query("disk.fault.skydns.local.", RecordType::A).await).len()
}

#[tokio::test]
async fn full_or_read_only_disk_answers_503_keeps_dns_and_recovers() {
    let disk = SmallDisk::mount("2m");
    let data = disk.path().join("data");
    let data_arg = data.to_str().expect("utf8 path");
    let sky = SkyDns::spawn(&["-data", data_arg]).await;
    for i in 0..3 {
        let r = put(&sky, &format!("before-{i}"), &format!("127.0.2.{}", i + 1)).await;
        assert_eq!(r.status, 201, "{}", r.text());
    }
    assert_eq!(a_count(&sky).await, 3);

    // Disk full: writes are refused with 503 until one needs a new page.
    let filler = disk.fill();
    let mut acked = 3;
    let mut refused = None;
    for i in 0..5000 {
        let uuid = format!("full-{i}");
        let r = put(
            &sky,
            &uuid,
            &format!("127.0.{}.{}", 3 + i / 250, i % 250 + 1),
        )
        .await;
        match r.status {
            201 => acked += 1,
            _ => {
                assert_503(&r, "PUT on a full disk");
                refused = Some(uuid);
                break;
            }
        }
    }
    let refused = refused.expect("a full disk must make some write fail within 5000 PUTs");
    eprintln!("disk full: {acked} writes acknowledged, then {refused} refused");
    assert!(
        matches!(
            sky.client.get_service(&refused).await,
            Err(ClientError::NotFound(_))
        ),
        "the refused service must not be in memory"
    );
    assert_eq!(
        count(&sky).await,
        acked,
        "memory unchanged by the refused write"
    );
    assert_eq!(
        a_count(&sky).await,
        acked,
        "DNS keeps answering from memory"
    );

    // Read-only: the store file turns immutable while the disk is still
    // full, then space comes back; writes still fail, since the store has to
    // reopen the file after the failure and may not.
    let file = data.join(STORE_FILE);
    chattr("+i", &file);
    let r = http(sky.http, "DELETE", "/skydns/services/before-0", &[], None)
        .await
        .expect("DELETE");
    assert_503(&r, "DELETE on a read-only store file");
    assert!(
        sky.client.get_service("before-0").await.is_ok(),
        "a refused DELETE keeps the service"
    );
    std::fs::remove_file(&filler).expect("remove filler");
    let r = put(&sky, "read-only", "127.0.9.1").await;
    assert_503(&r, "PUT on a read-only store file");
    assert_eq!(
        count(&sky).await,
        acked,
        "memory unchanged by the refused writes"
    );
    assert_eq!(
        a_count(&sky).await,
        acked,
        "DNS keeps answering from memory"
    );

    // The disk recovers: writes succeed again, and are durable.
    chattr("-i", &file);
    let r = put(&sky, "after", "127.0.9.2").await;
    assert_eq!(
        r.status,
        201,
        "writes succeed once the disk recovers: {}",
        r.text()
    );
    acked += 1;
    assert_eq!(a_count(&sky).await, acked);
    assert!(sky.stop().await, "SIGTERM exits cleanly");
    let sky = SkyDns::spawn(&["-data", data_arg]).await;
    assert_eq!(
        count(&sky).await,
        acked,
        "every acknowledged write survived"
    );
    assert!(sky.client.get_service("after").await.is_ok());
    assert!(matches!(
        sky.client.get_service(&refused).await,
        Err(ClientError::NotFound(_))
    ));
    assert!(sky.stop().await, "SIGTERM exits cleanly");
}

async fn store_with_three(data: &str) {
    let sky = SkyDns::spawn(&["-data", data]).await;
    for i in 0..3 {
        sky.client
            .add_service(
                &format!("s{i}"),
                &service("web", "prod", "", &format!("127.0.3.{}", i + 1), 80, 3600),
            )
            .await
            .expect("add");
    }
    assert!(sky.stop().await, "SIGTERM exits cleanly");
}

fn aside_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("ls data")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("skydns.redb.damaged-"))
        .collect()
}

#[tokio::test]
async fn an_overwritten_store_file_is_moved_aside_and_said_loudly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf8 path");
    store_with_three(data).await;
    let file = dir.path().join(STORE_FILE);
    let len = std::fs::metadata(&file).expect("stat").len();
    std::fs::write(&file, vec![0x5au8; usize::try_from(len).expect("size")]).expect("overwrite");

    let sky = SkyDns::spawn(&["-data", data]).await;
    let log = sky.log();
    assert!(
        log.contains("store damaged") && log.contains("moved to"),
        "the loss is logged loudly: {log}"
    );
    assert_eq!(
        aside_files(dir.path()).len(),
        1,
        "the damaged file is kept aside"
    );
    // It serves (empty) and stores again.
    sky.client
        .add_service("new", &service("web", "prod", "", "127.0.3.9", 80, 3600))
        .await
        .expect("add after recovery");
    assert!(sky.stop().await, "SIGTERM exits cleanly");
    let sky = SkyDns::spawn(&["-data", data]).await;
    assert_eq!(count(&sky).await, 1);
    assert!(!sky.log().contains("store damaged"), "{}", sky.log());
}

#[tokio::test]
async fn a_truncated_store_file_never_serves_empty_silently() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf8 path");
    store_with_three(data).await;
    let file = dir.path().join(STORE_FILE);
    let len = std::fs::metadata(&file).expect("stat").len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .expect("open");
    f.set_len(len / 2).expect("truncate");
    drop(f);

    let sky = SkyDns::spawn(&["-data", data]).await;
    let restored = count(&sky).await;
    let log = sky.log();
    eprintln!("truncated store: {restored} of 3 restored; log:\n{log}");
    // Either everything was recovered, or what was lost is said.
    assert!(
        restored == 3 || log.contains("store damaged"),
        "{restored} of 3 restored and no loss reported: {log}"
    );
    if restored == 3 {
        let msg = sky.query("web.prod.skydns.local.", RecordType::A).await;
        assert_eq!(a_records(&msg).len(), 3);
    }
    sky.client
        .add_service("new", &service("web", "prod", "", "127.0.3.9", 80, 3600))
        .await
        .expect("writes work after recovery");
    assert!(sky.stop().await, "SIGTERM exits cleanly");
}

#[tokio::test]
async fn a_store_file_that_cannot_be_opened_fails_the_start_in_one_line() {
    let disk = SmallDisk::mount("1m");
    let data = disk.path().join("data");
    let data_arg = data.to_str().expect("utf8 path");
    store_with_three(data_arg).await;
    chattr("+i", &data.join(STORE_FILE));
    let Err(err) = SkyDns::try_spawn_on("127.0.0.1:0", "127.0.0.1:0", &["-data", data_arg]).await
    else {
        panic!("skydns must not start on a store it cannot write")
    };
    assert!(
        err.contains(STORE_FILE) && err.contains("not permitted"),
        "one clear line naming the file and the cause: {err}"
    );
    assert!(
        aside_files(&data).is_empty(),
        "a readable store is never moved aside"
    );
    chattr("-i", &data.join(STORE_FILE));
    let sky = SkyDns::spawn(&["-data", data_arg]).await;
    assert_eq!(count(&sky).await, 3);
}
