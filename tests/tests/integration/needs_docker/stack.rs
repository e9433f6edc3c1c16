//! The article's stack for real: compose brings up skydns, skydock, three
//! replicas of an app and nginx (all images built locally); load runs through
//! nginx while `skydock rollout` replaces v1 with v2 and while a replica is
//! stopped with plain `docker stop`. Not one request may fail.
//!
//! One test: the stack has fixed names and a fixed subnet.

/// The image the stack's rollout moves to.
const ROLLED_TO: &str = "skydns-test/cool-api:v2";

use std::{
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const NGINX: &str = "127.0.0.1:8088";
const SKYDNS_API: &str = "http://172.30.0.53:8080";
const SKYDOCK_AGENT: &str = "http://172.30.0.54:8081";
/// Requests per second offered through nginx.
const RATE: u64 = 240;
const WORKERS: u64 = 4;

fn root() -> String {
    format!("{}/..", env!("CARGO_MANIFEST_DIR"))
}

fn script(name: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new("bash")
        .arg(format!("{}/scripts/{name}", root()))
        .args(args)
        // Images from this very source, not whatever an earlier run left.
        .env("REBUILD", "1")
        .current_dir(root())
        .output()
        .map_err(|e| format!("{name}: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{name} failed:\n{text}"))
    }
}

/// Takes the stack down when the test ends, however it ends.
struct StackGuard;

impl Drop for StackGuard {
    fn drop(&mut self) {
        let _ = script("stack-down.sh", &[]);
        // Containers started by this test's rollout are not compose's:
        // remove them too (only those: another test's rollout may be running).
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "docker ps -aq --filter label=skydock.rollout={ROLLED_TO} | xargs -r docker rm -f"
            ))
            .output();
    }
}

#[derive(Default)]
struct Tally {
    ok: u64,
    failed: Vec<String>,
    last_versions: Vec<String>,
}

/// One `GET /version` through nginx; the body, or why it failed.
async fn get_version() -> Result<String, String> {
    let fut = async {
        let mut s = TcpStream::connect(NGINX)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        s.write_all(b"GET /version HTTP/1.0\r\nHost: cool-api\r\n\r\n")
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        let text = String::from_utf8_lossy(&buf).to_string();
        let status = text.lines().next().unwrap_or_default().to_string();
        if !status.contains(" 200 ") {
            return Err(format!("status {status:?}"));
        }
        Ok(text
            .rsplit("\r\n\r\n")
            .next()
            .unwrap_or_default()
            .trim()
            .to_string())
    };
    tokio::time::timeout(Duration::from_secs(3), fut)
        .await
        .map_err(|_| "timeout".to_string())?
}

/// Offers [`RATE`] requests/s until `stop` is set.
fn start_load(stop: Arc<AtomicBool>, tally: Arc<Mutex<Tally>>) -> Vec<tokio::task::JoinHandle<()>> {
    (0..WORKERS)
        .map(|_| {
            let (stop, tally) = (Arc::clone(&stop), Arc::clone(&tally));
            tokio::spawn(async move {
                let period = Duration::from_micros(1_000_000 * WORKERS / RATE);
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let r = get_version().await;
                    let mut t = tally.lock().expect("tally");
                    match r {
                        Ok(v) => {
                            t.ok += 1;
                            t.last_versions.push(v);
                            if t.last_versions.len() > 50 {
                                t.last_versions.remove(0);
                            }
                        }
                        Err(e) => t.failed.push(e),
                    }
                }
            })
        })
        .collect()
}

async fn under_load<F, Fut>(settle: Duration, action: F) -> (Tally, Duration)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let workers = start_load(Arc::clone(&stop), Arc::clone(&tally));
    tokio::time::sleep(Duration::from_secs(2)).await;
    action().await;
    tokio::time::sleep(settle).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    let elapsed = started.elapsed();
    let t = std::mem::take(&mut *tally.lock().expect("tally"));
    (t, elapsed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_and_replica_stop_drop_no_request_through_nginx() {
    skydns_tests::docker::ensure_test_images();
    let _ = script("stack-down.sh", &[]);
    let _guard = StackGuard;
    let up = tokio::task::spawn_blocking(|| script("stack-up.sh", &["1"]))
        .await
        .expect("task");
    up.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(get_version().await.as_deref(), Ok("v1"));

    // 0. Scale 1 → 5 → 1 under load, then back to 3 for the rollout.
    for replicas in [5, 1, 3] {
        let (tally, _) = under_load(Duration::from_secs(2), || async move {
            let out = tokio::process::Command::new("docker-compose")
                .args([
                    "-f",
                    "deploy/docker-compose.yml",
                    "-p",
                    "skystack",
                    "up",
                    "-d",
                    "--no-recreate",
                ])
                .args(["--scale", &format!("cool-api={replicas}")])
                .current_dir(root())
                .output()
                .await
                .expect("docker-compose runs");
            assert!(
                out.status.success(),
                "scale to {replicas}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            // New replicas join once healthy and registered; give them time under load.
            tokio::time::sleep(Duration::from_secs(4)).await;
        })
        .await;
        let total = tally.ok + tally.failed.len() as u64;
        assert!(
            tally.failed.is_empty(),
            "{} of {total} requests failed while scaling to {replicas}: {:?}",
            tally.failed.len(),
            &tally.failed[..tally.failed.len().min(10)]
        );
        assert!(total > 0);
    }

    // 1. A rollout from v1 to v2 under load.
    let skydock = skydns_tests::binary("skydock");
    let (tally, elapsed) = under_load(Duration::from_secs(3), || async {
        let out = tokio::process::Command::new(&skydock)
            .args([
                "rollout",
                "--service",
                "cool-api",
                "--image",
                ROLLED_TO,
                "--replicas",
                "3",
            ])
            .args([
                "-s",
                "/var/run/docker.sock",
                "--skydns",
                SKYDNS_API,
                "--agent",
                SKYDOCK_AGENT,
            ])
            .args(["--timeout", "60", "--stop-grace", "10"])
            .output()
            .await
            .expect("skydock rollout runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "rollout failed:\n{text}");
        assert!(text.contains("[5/5]"), "rollout shows its steps:\n{text}");
    })
    .await;
    let total = tally.ok + tally.failed.len() as u64;
    let rate = total as f64 / elapsed.as_secs_f64();
    assert!(
        tally.failed.is_empty(),
        "{} of {total} requests failed during the rollout: {:?}",
        tally.failed.len(),
        &tally.failed[..tally.failed.len().min(10)]
    );
    assert!(rate >= 200.0, "offered load too low: {rate:.0} requests/s");
    assert!(
        tally.last_versions.iter().all(|v| v == "v2"),
        "after the rollout only v2 answers: {:?}",
        tally.last_versions
    );
    let v1_left = Command::new("docker")
        .args(["ps", "-q", "--filter", "ancestor=skydns-test/cool-api:v1"])
        .output()
        .expect("docker ps");
    assert!(
        v1_left.stdout.is_empty(),
        "no v1 container is left after the rollout"
    );

    // 2. A plain `docker stop` of one replica under load.
    let replica = Command::new("sh")
        .arg("-c")
        .arg("docker ps -q --filter label=skydock.rollout | head -n 1")
        .output()
        .expect("docker ps");
    let replica = String::from_utf8_lossy(&replica.stdout).trim().to_string();
    assert!(!replica.is_empty(), "a v2 replica runs");
    let (tally, _) = under_load(Duration::from_secs(2), || async {
        let out = tokio::process::Command::new("docker")
            .args(["stop", "-t", "15", &replica])
            .output()
            .await
            .expect("docker stop");
        assert!(out.status.success(), "docker stop failed");
    })
    .await;
    let total = tally.ok + tally.failed.len() as u64;
    assert!(
        tally.failed.is_empty(),
        "{} of {total} requests failed while a replica stopped: {:?}",
        tally.failed.len(),
        &tally.failed[..tally.failed.len().min(10)]
    );
}
