//! Reconcile: events missed while frozen, an earlier life's leftovers,
//! others' registrations left alone, a lost Docker connection.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use hickory_proto::op::ResponseCode;
use skydns_tests::{
    ClientError, Service, SkyDns, binary,
    docker::{self, BUSYBOX, Container, DOCKER_SOCKET},
    eventually,
};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    net::{UnixListener, UnixStream},
    process::{Child, Command},
    task::{JoinHandle, JoinSet},
};

use super::*;

#[tokio::test]
async fn events_missed_while_frozen_are_fixed_by_the_next_reconcile() {
    // A long TTL: what removes the name must be skydock, not expiry.
    let rig = Rig::start(&["-ttl", "60", "-resync", "2"]).await;
    let old = Container::run(PREFIX, BUSYBOX, &[], &[]).await;
    let old_name = rig.name(&old);
    rig.resolves(&old_name, &old.ip().await, APPEAR).await;

    rig.dock.signal("STOP");
    old.kill().await;
    old.rm().await;
    let new = Container::run(PREFIX, BUSYBOX, &[], &[]).await;
    let new_name = rig.name(&new);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        lookup(&rig.sky, &new_name).await.0,
        ResponseCode::NXDomain,
        "frozen: nothing registered"
    );
    assert_eq!(
        lookup(&rig.sky, &old_name).await.0,
        ResponseCode::NoError,
        "frozen: the stale name is still there"
    );
    rig.dock.signal("CONT");
    rig.gone(&old_name, Duration::from_secs(4)).await;
    rig.resolves(&new_name, &new.ip().await, Duration::from_secs(4))
        .await;
}

#[tokio::test]
async fn a_restarted_agent_removes_what_its_earlier_life_left_behind() {
    // Events missed for good: the agent was dead while the container went.
    let rig = Rig::start(&["-ttl", "60"]).await;
    let old = Container::run(PREFIX, BUSYBOX, &[], &[]).await;
    let old_name = rig.name(&old);
    rig.resolves(&old_name, &old.ip().await, APPEAR).await;
    let Rig {
        sky,
        dock,
        env,
        owner,
    } = rig;
    dock.kill9().await;
    old.kill().await;
    old.rm().await;
    let new = Container::run(PREFIX, BUSYBOX, &[], &[]).await;
    let new_name = fqdn(&new.name, "busybox", &env);
    assert_eq!(lookup(&sky, &old_name).await.0, ResponseCode::NoError);

    let dock = start_dock(&sky, &env, &owner, &["-ttl", "60"]).await;
    // The initial sync (done when `skydock ready` is logged) fixed both.
    assert_eq!(
        lookup(&sky, &old_name).await.0,
        ResponseCode::NXDomain,
        "{}",
        tail(&dock.log(), 30)
    );
    assert_eq!(
        lookup(&sky, &new_name).await,
        (ResponseCode::NoError, vec![new.ip().await])
    );
    assert!(dock.log().contains("removing stale registration"));
}

#[tokio::test]
async fn registrations_of_others_are_never_removed_by_reconcile() {
    let rig = Rig::start(&["-resync", "1"]).await;
    let tag = format!("{:08x}", rand::random::<u32>());
    let svc = |host: &str, owner: Option<&str>| Service {
        name: "foreign".into(),
        version: format!("v-{host}").replace('.', "-"),
        environment: rig.env.clone(),
        host: host.into(),
        port: 80,
        ttl: 60,
        owner: owner.map(str::to_string),
        ..Service::default()
    };
    let none = format!("manual-{tag}");
    let other = format!("other-{tag}");
    let stale = format!("stale-{tag}");
    let client = &rig.sky.client;
    client
        .add_service(&none, &svc("127.0.0.21", None))
        .await
        .expect("add");
    client
        .add_service(&other, &svc("127.0.0.22", Some("skydock@elsewhere")))
        .await
        .expect("add");
    // Positive control: one this agent owns but does not want.
    client
        .add_service(&stale, &svc("127.0.0.23", Some(&rig.owner)))
        .await
        .expect("add");

    let reconciled = eventually(Duration::from_secs(4), || async {
        matches!(
            client.get_service(&stale).await,
            Err(ClientError::NotFound(_))
        )
    })
    .await;
    assert!(
        reconciled,
        "the reconcile never removed this agent's stale registration:\n{}",
        tail(&rig.dock.log(), 20)
    );
    // Several more reconciles (every second).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for (uuid, host) in [(&none, "127.0.0.21"), (&other, "127.0.0.22")] {
        let got = client.get_service(uuid).await;
        assert!(
            got.as_ref().is_ok_and(|s| s.host == host),
            "{uuid}: {got:?}"
        );
        let name = fqdn(&format!("v-{host}").replace('.', "-"), "foreign", &rig.env);
        assert_eq!(lookup(&rig.sky, &name).await.1, [host]);
    }
}

// ---------------------------------------------------------- mapping

/// A unix-socket proxy to the Docker socket that the test can cut and
/// restore: cutting closes the listener and every live connection.
struct DockerProxy {
    path: PathBuf,
    task: Option<JoinHandle<()>>,
}

impl DockerProxy {
    fn start(path: &Path) -> Self {
        let mut p = Self {
            path: path.to_path_buf(),
            task: None,
        };
        p.restore();
        p
    }

    fn restore(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let listener = UnixListener::bind(&self.path).expect("bind the proxy socket");
        self.task = Some(tokio::spawn(async move {
            // Dropped with this task: aborting it closes every connection.
            let mut conns = JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                conns.spawn(async move {
                    if let Ok(mut upstream) = UnixStream::connect(DOCKER_SOCKET).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                });
                while conns.try_join_next().is_some() {}
            }
        }));
    }

    async fn cut(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

/// skydock run directly (the harness always adds `-s /var/run/docker.sock`).
struct RawDock {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl RawDock {
    async fn start(args: &[&str]) -> Self {
        let mut child = Command::new(binary("skydock"))
            .args(args)
            .env("SKYDOCK_LOG", "info")
            .env("SKYDOCK_HTTP", "127.0.0.1:0")
            .env_remove("SKYDNS_PORT_8080_TCP_ADDR")
            .env_remove("SKYDNS_PORT_8080_TCP_PORT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start skydock");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&log);
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(mut l) = sink.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
            }
        });
        let dock = Self { child, log };
        let ready = eventually(Duration::from_secs(20), || async {
            dock.log().contains("skydock ready")
        })
        .await;
        assert!(ready, "skydock not ready:\n{}", dock.log());
        dock
    }

    fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

#[tokio::test]
async fn docker_connection_lost_and_back_reconnects_and_reconciles() {
    docker::ensure_test_images();
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("docker.sock");
    let mut proxy = DockerProxy::start(&sock);
    let sky = SkyDns::spawn(&[]).await;
    let env = unique_env();
    let owner = format!("skydock-test-{env}");
    let url = sky.url();
    let sock_s = sock.to_string_lossy().into_owned();
    let mut dock = RawDock::start(&[
        "-s",
        &sock_s,
        "-skydns",
        &url,
        "-environment",
        &env,
        "-owner",
        &owner,
        "-ttl",
        "60",
    ])
    .await;
    let old = Container::run(PREFIX, BUSYBOX, &[], &[]).await;
    let old_name = fqdn(&old.name, "busybox", &env);
    expect_resolves(&sky, &dock, &old_name, &old.ip().await, APPEAR).await;

    proxy.cut().await;
    let lost = eventually(Duration::from_secs(5), || async {
        dock.log().contains("Docker event stream")
    })
    .await;
    assert!(lost, "skydock did not notice:\n{}", tail(&dock.log(), 20));
    old.kill().await;
    let new = Container::run(PREFIX, BUSYBOX, &[], &[]).await;
    let new_name = fqdn(&new.name, "busybox", &env);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Cut off: neither change is seen.
    assert_eq!(lookup(&sky, &old_name).await.0, ResponseCode::NoError);
    assert_eq!(lookup(&sky, &new_name).await.0, ResponseCode::NXDomain);
    assert!(
        dock.child.try_wait().ok().flatten().is_none(),
        "skydock must not exit"
    );

    proxy.restore();
    let restored = Instant::now();
    expect_gone(&sky, &dock, &old_name, Duration::from_secs(12)).await;
    expect_resolves(&sky, &dock, &new_name, &new.ip().await, APPEAR).await;
    eprintln!(
        "reconciled {:?} after the socket came back",
        restored.elapsed()
    );
    assert!(
        dock.log().contains("reconciling"),
        "{}",
        tail(&dock.log(), 20)
    );

    // And the event stream works again.
    let third = Container::run(PREFIX, BUSYBOX, &[], &[]).await;
    expect_resolves(
        &sky,
        &dock,
        &fqdn(&third.name, "busybox", &env),
        &third.ip().await,
        APPEAR,
    )
    .await;
    proxy.cut().await;
}

impl Logs for RawDock {
    fn text(&self) -> String {
        self.log()
    }
}
