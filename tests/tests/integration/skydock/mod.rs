//! skydock against the real Docker engine: real `skydns` and `skydock`
//! processes, containers started with the `docker` CLI, and every check made
//! by asking skydns over DNS (or its API, for ownership).
//!
//! Names are `<container name>.<image service>.<environment>.skydns.local`.
//! Each test runs its own skydns, and its own skydock with a unique
//! `-environment` and `-owner`. Every skydock sees the whole engine, so it also
//! registers the containers of the tests running next to it: a test only ever
//! asks for the names of its own containers (their names are unique).
//! Containers are removed when their handles drop.
//!
//! By topic: this file (start and stop, heartbeats, reconcile, mapping,
//! plugins, connections), `ownership` (two agents on one engine),
//! `plugin_budget` (a plugin that never returns), `stalls` (a skydns that
//! stops answering; what reconcile reads), `rollout` (`skydock rollout`
//! starts replicas like the old ones).

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Message, ResponseCode},
    rr::RecordType,
};
use skydns_tests::{
    ClientError, Service, SkyDns, a_records, binary,
    docker::{self, BUSYBOX, COOL_API_V2, Container, DOCKER_SOCKET, HEALTHY},
    eventually,
    skydock::SkyDock,
    srv_records,
};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    net::{UnixListener, UnixStream},
    process::{Child, Command},
    task::{JoinHandle, JoinSet},
};

mod ownership;
mod plugin_budget;
mod rollout;
mod stalls;

/// Prefix of every container of this module.
const PREFIX: &str = "skt-dock";
/// How long a start may take to show in DNS (events on a loaded engine).
const APPEAR: Duration = Duration::from_secs(6);
/// How long a stop may take to leave DNS.
const LEAVE: Duration = Duration::from_secs(3);

// ---------------------------------------------------------------- helpers

/// A fresh environment name (`t` + 8 hex digits).
fn unique_env() -> String {
    format!("t{:08x}", rand::random::<u32>())
}

/// `<instance>.<service>.<env>.skydns.local.`
fn fqdn(instance: &str, service: &str, env: &str) -> String {
    format!("{instance}.{service}.{env}.skydns.local.")
}

/// The last `n` lines of a log, for failure messages.
fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A skydns, and a skydock pointed at it with its own environment and owner.
struct Rig {
    sky: SkyDns,
    dock: SkyDock,
    env: String,
    owner: String,
}

impl Rig {
    /// skydns on free ports; skydock `-environment <unique> -owner <unique> <args>`.
    async fn start(args: &[&str]) -> Self {
        docker::ensure_test_images();
        let sky = SkyDns::spawn(&[]).await;
        let env = unique_env();
        let owner = format!("skydock-test-{env}");
        let dock = start_dock(&sky, &env, &owner, args).await;
        Self {
            sky,
            dock,
            env,
            owner,
        }
    }

    /// The default name of `c` (image service `busybox`).
    fn name(&self, c: &Container) -> String {
        fqdn(&c.name, "busybox", &self.env)
    }

    async fn resolves(&self, name: &str, ip: &str, within: Duration) {
        expect_resolves(&self.sky, &self.dock, name, ip, within).await;
    }

    async fn gone(&self, name: &str, within: Duration) {
        expect_gone(&self.sky, &self.dock, name, within).await;
    }
}

async fn start_dock(sky: &SkyDns, env: &str, owner: &str, args: &[&str]) -> SkyDock {
    start_dock_at(&sky.url(), env, owner, args).await
}

/// Like [`start_dock`], with skydns at `url` (a tap in front of it, say).
async fn start_dock_at(url: &str, env: &str, owner: &str, args: &[&str]) -> SkyDock {
    let mut all = vec!["-environment", env, "-owner", owner];
    all.extend_from_slice(args);
    SkyDock::start(url, &all).await
}

/// Whatever has a log to show when a check fails (read at failure time).
trait Logs {
    fn text(&self) -> String;
}

impl Logs for SkyDock {
    fn text(&self) -> String {
        self.log()
    }
}

impl Logs for RawDock {
    fn text(&self) -> String {
        self.log()
    }
}

/// The log of a process that is gone.
impl Logs for String {
    fn text(&self) -> String {
        self.clone()
    }
}

/// Response code and sorted addresses of an A query.
async fn lookup(sky: &SkyDns, name: &str) -> (ResponseCode, Vec<String>) {
    let msg = sky.query(name, RecordType::A).await;
    (msg.metadata.response_code, a_records(&msg))
}

/// The SRV answer for `name`.
async fn srv(sky: &SkyDns, name: &str) -> Message {
    sky.query(name, RecordType::SRV).await
}

/// Sorted SRV ports of `name`.
async fn srv_ports(sky: &SkyDns, name: &str) -> Vec<u16> {
    let mut ports: Vec<u16> = srv_records(&srv(sky, name).await)
        .into_iter()
        .map(|r| r.2)
        .collect();
    ports.sort_unstable();
    ports
}

/// Waits until `name`'s SRV records carry exactly `ports` (skydock
/// registers a container's ports one request at a time, so the name can
/// resolve before its last port is in); panics with context otherwise.
async fn expect_srv_ports(
    sky: &SkyDns,
    log: &dyn Logs,
    name: &str,
    ports: &[u16],
    within: Duration,
) {
    let ok = eventually(within, || async { srv_ports(sky, name).await == ports }).await;
    if !ok {
        let last = srv_ports(sky, name).await;
        panic!(
            "{name} did not get SRV ports {ports:?} within {within:?}: last {last:?}\n--- skydock log (end):\n{}",
            tail(&log.text(), 40)
        );
    }
}

/// Waits until `name` answers exactly `[ip]`; panics with the last answer and
/// the end of skydock's log otherwise.
async fn expect_resolves(sky: &SkyDns, log: &dyn Logs, name: &str, ip: &str, within: Duration) {
    let want = vec![ip.to_string()];
    let ok = eventually(within, || async {
        lookup(sky, name).await == (ResponseCode::NoError, want.clone())
    })
    .await;
    if !ok {
        let last = lookup(sky, name).await;
        panic!(
            "{name} did not resolve to {ip} within {within:?}: last answer {last:?}\n--- skydock log (end):\n{}",
            tail(&log.text(), 40)
        );
    }
}

/// Waits until `name` is NXDOMAIN; panics with context otherwise.
async fn expect_gone(sky: &SkyDns, log: &dyn Logs, name: &str, within: Duration) {
    let ok = eventually(within, || async {
        lookup(sky, name).await.0 == ResponseCode::NXDomain
    })
    .await;
    if !ok {
        let last = lookup(sky, name).await;
        panic!(
            "{name} still answers after {within:?}: {last:?}\n--- skydock log (end):\n{}",
            tail(&log.text(), 40)
        );
    }
}

/// Checks every 100 ms during `during` that `name` keeps answering `[ip]`.
async fn expect_stays(sky: &SkyDns, name: &str, ip: &str, during: Duration) {
    let start = Instant::now();
    while start.elapsed() < during {
        let got = lookup(sky, name).await;
        assert_eq!(
            got,
            (ResponseCode::NoError, vec![ip.to_string()]),
            "{name} stopped answering {:?} after it had resolved",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Checks every 100 ms during `during` that `name` stays NXDOMAIN.
async fn expect_stays_gone(sky: &SkyDns, name: &str, during: Duration) {
    let start = Instant::now();
    while start.elapsed() < during {
        let got = lookup(sky, name).await;
        assert_eq!(
            got.0,
            ResponseCode::NXDomain,
            "{name} answered {got:?} after {:?}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Registrations in skydns under `owner`.
async fn owned_by(sky: &SkyDns, owner: &str) -> Vec<Service> {
    sky.client
        .list_services(None)
        .await
        .expect("list services")
        .into_iter()
        .filter(|s| s.owner.as_deref() == Some(owner))
        .collect()
}

/// A loopback port nothing listens on (bound and released).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// The workspace's plugin `deploy/plugins/<file>`.
fn plugin(file: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("deploy")
        .join("plugins")
        .join(file)
        .to_string_lossy()
        .into_owned()
}

// ------------------------------------------------------- start and stop

#[tokio::test]
async fn containers_running_before_skydock_starts_are_registered() {
    docker::ensure_test_images();
    let a = Container::run(PREFIX, BUSYBOX, &[], &[]).await;
    let b = Container::run(PREFIX, COOL_API_V2, &[], &[]).await;
    let rig = Rig::start(&[]).await;
    // `skydock ready` is logged after the initial sync: no waiting needed.
    let (ip_a, ip_b) = (a.ip().await, b.ip().await);
    assert_eq!(
        lookup(&rig.sky, &rig.name(&a)).await,
        (ResponseCode::NoError, vec![ip_a]),
        "{}",
        tail(&rig.dock.log(), 30)
    );
    assert_eq!(
        lookup(&rig.sky, &fqdn(&b.name, "cool-api", &rig.env)).await,
        (ResponseCode::NoError, vec![ip_b])
    );
    // Each carries this agent as owner, under the container id's first 10 characters.
    let mine = owned_by(&rig.sky, &rig.owner).await;
    for c in [&a, &b] {
        assert!(
            mine.iter()
                .any(|s| s.uuid == c.short_id() && s.version == c.name),
            "{} ({}) not among {mine:?}",
            c.name,
            c.short_id()
        );
    }
}

#[tokio::test]
async fn start_resolves_to_the_container_and_its_port_and_stop_removes_it() {
    let rig = Rig::start(&[]).await;
    let c = Container::run(PREFIX, BUSYBOX, &[], &[]).await;
    let name = rig.name(&c);
    let ip = c.ip().await;
    let started = Instant::now();
    rig.resolves(&name, &ip, APPEAR).await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "resolved only after {took:?}"
    );
    // SRV: the exposed port 8080, target the uuid name with the address as glue.
    let msg = srv(&rig.sky, &name).await;
    let target = format!("{}.skydns.local.", c.short_id());
    assert_eq!(srv_records(&msg).len(), 1, "{msg:?}");
    assert_eq!(srv_records(&msg)[0].2, 8080);
    assert_eq!(srv_records(&msg)[0].3, target);
    assert_eq!(
        a_records(&rig.sky.query(&target, RecordType::A).await),
        [ip.as_str()]
    );

    let stopping = Instant::now();
    c.stop_timeout(1).await;
    rig.gone(&name, LEAVE).await;
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(3), "gone only after {took:?}");
    // It does not come back while the container stays stopped.
    expect_stays_gone(&rig.sky, &name, Duration::from_millis(1500)).await;
}

#[tokio::test]
async fn docker_stop_deregisters_at_kill_time_while_the_container_still_drains() {
    let rig = Rig::start(&[]).await;
    let c = Container::run(PREFIX, BUSYBOX, &[], &[]).await;
    let name = rig.name(&c);
    rig.resolves(&name, &c.ip().await, APPEAR).await;

    // busybox httpd as PID 1 ignores SIGTERM: `docker stop -t 5` takes 5 s.
    let id = c.id.clone();
    let issued = Instant::now();
    let stopper = tokio::spawn(async move { docker::docker(&["stop", "-t", "5", &id]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    rig.gone(&name, Duration::from_millis(1200)).await;
    let gone_after = issued.elapsed();
    assert!(
        c.is_running().await,
        "the container must still be draining when its name is gone"
    );
    assert!(
        issued.elapsed() < Duration::from_secs(4),
        "checked too late to prove anything ({:?})",
        issued.elapsed()
    );
    let stopped = stopper.await.expect("stop task");
    assert!(stopped.is_ok(), "{stopped:?}");
    assert!(
        issued.elapsed() >= Duration::from_secs(4),
        "docker stop -t 5 returned early: the test proves nothing"
    );
    assert!(!c.is_running().await);
    // die/stop after the kill leave it out of DNS.
    expect_stays_gone(&rig.sky, &name, Duration::from_millis(500)).await;
    eprintln!("name gone {gone_after:?} after docker stop was issued");
}

#[tokio::test]
async fn twenty_restarts_in_a_row_end_registered() {
    let rig = Rig::start(&[]).await;
    let c = Container::run(PREFIX, BUSYBOX, &[], &[]).await;
    let name = rig.name(&c);
    rig.resolves(&name, &c.ip().await, APPEAR).await;
    for i in 0..20 {
        if i % 2 == 0 {
            c.restart_timeout(0).await;
        } else {
            c.kill().await;
            c.start().await;
        }
    }
    let ip = c.ip().await;
    rig.resolves(&name, &ip, APPEAR).await;
    // No late event takes it out again.
    expect_stays(&rig.sky, &name, &ip, Duration::from_secs(2)).await;
    let mine = owned_by(&rig.sky, &rig.owner).await;
    assert_eq!(
        mine.iter().filter(|s| s.version == c.name).count(),
        1,
        "exactly one registration: {mine:?}"
    );
}

// -------------------------------------------------- TTL and heartbeats

#[tokio::test]
async fn skydock_killed_with_sigkill_leaves_names_to_expire_after_the_ttl() {
    let rig = Rig::start(&["-ttl", "3"]).await;
    let c = Container::run(PREFIX, BUSYBOX, &[], &[]).await;
    let name = rig.name(&c);
    rig.resolves(&name, &c.ip().await, APPEAR).await;
    let Rig { sky, dock, .. } = rig;
    let log = dock.log();
    dock.kill9().await;
    let killed = Instant::now();
    expect_gone(&sky, &log, &name, Duration::from_secs(6)).await;
    let took = killed.elapsed();
    assert!(took <= Duration::from_secs(5), "expired after {took:?}");
    assert!(c.is_running().await, "the container itself still runs");
}

#[tokio::test]
async fn heartbeats_keep_names_alive_well_beyond_the_ttl() {
    let rig = Rig::start(&["-ttl", "3"]).await;
    let c = Container::run(PREFIX, BUSYBOX, &[], &[]).await;
    let name = rig.name(&c);
    let ip = c.ip().await;
    rig.resolves(&name, &ip, APPEAR).await;
    // Three TTLs: without heartbeats it would have expired twice.
    expect_stays(&rig.sky, &name, &ip, Duration::from_secs(9)).await;
    let log = rig.dock.log();
    assert!(
        !log.contains("skydns lost this registration"),
        "a heartbeat came too late and the entry expired in between:\n{}",
        tail(&log, 30)
    );
}

#[tokio::test]
async fn skydns_restarted_without_data_gets_everything_back_within_a_beat() {
    let rig = Rig::start(&["-ttl", "4"]).await; // beat 3 s
    let a = Container::run(PREFIX, BUSYBOX, &[], &[]).await;
    let b = Container::run(PREFIX, BUSYBOX, &["--expose", "7001"], &[]).await;
    let (name_a, name_b) = (rig.name(&a), rig.name(&b));
    let (ip_a, ip_b) = (a.ip().await, b.ip().await);
    rig.resolves(&name_a, &ip_a, APPEAR).await;
    rig.resolves(&name_b, &ip_b, APPEAR).await;

    let Rig { sky, dock, .. } = rig;
    let http = sky.http.to_string();
    sky.kill9().await;
    let sky = SkyDns::spawn_on("127.0.0.1:0", &http, &[]).await;
    let restarted = Instant::now();
    assert_eq!(
        lookup(&sky, &name_a).await.0,
        ResponseCode::NXDomain,
        "a new skydns without -data starts empty"
    );
    expect_resolves(&sky, &dock, &name_a, &ip_a, Duration::from_secs(5)).await;
    expect_resolves(&sky, &dock, &name_b, &ip_b, Duration::from_secs(5)).await;
    expect_srv_ports(&sky, &dock, &name_b, &[7001, 8080], Duration::from_secs(5)).await;
    let took = restarted.elapsed();
    assert!(
        took <= Duration::from_secs(5),
        "re-registered after {took:?}"
    );
    assert!(
        dock.log().contains("registering again"),
        "{}",
        tail(&dock.log(), 20)
    );
}

#[tokio::test]
async fn skydns_down_longer_than_the_ttl_gets_everything_back_within_a_beat() {
    docker::ensure_test_images();
    let data = tempfile::tempdir().expect("tempdir");
    let data_s = data.path().to_string_lossy().into_owned();
    let sky = SkyDns::spawn(&["-data", &data_s]).await;
    let env = unique_env();
    let owner = format!("skydock-test-{env}");
    let dock = start_dock(&sky, &env, &owner, &["-ttl", "3"]).await; // beat 2 s
    let a = Container::run(PREFIX, BUSYBOX, &[], &[]).await;
    let b = Container::run(PREFIX, BUSYBOX, &["--expose", "7001"], &[]).await;
    let (name_a, name_b) = (
        fqdn(&a.name, "busybox", &env),
        fqdn(&b.name, "busybox", &env),
    );
    let (ip_a, ip_b) = (a.ip().await, b.ip().await);
    expect_resolves(&sky, &dock, &name_a, &ip_a, APPEAR).await;
    expect_resolves(&sky, &dock, &name_b, &ip_b, APPEAR).await;

    // Down for twice the TTL: every stored registration expires meanwhile.
    let http = sky.http.to_string();
    sky.kill9().await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let sky = SkyDns::spawn_on("127.0.0.1:0", &http, &["-data", &data_s]).await;
    let restarted = Instant::now();
    // The log is coloured: keep only the text.
    let mut log = String::new();
    let mut in_escape = false;
    for ch in sky.log().chars() {
        match ch {
            '\u{1b}' => in_escape = true,
            'm' if in_escape => in_escape = false,
            _ if !in_escape => log.push(ch),
            _ => {}
        }
    }
    assert!(
        log.contains("expired_while_down=") && !log.contains("expired_while_down=0"),
        "the stored registrations expired while skydns was down:\n{log}"
    );
    expect_resolves(&sky, &dock, &name_a, &ip_a, Duration::from_secs(5)).await;
    expect_resolves(&sky, &dock, &name_b, &ip_b, Duration::from_secs(5)).await;
    expect_srv_ports(&sky, &dock, &name_b, &[7001, 8080], Duration::from_secs(5)).await;
    let took = restarted.elapsed();
    eprintln!("re-registered {took:?} after skydns came back");
    assert!(
        took <= Duration::from_secs(4),
        "re-registered after {took:?} (beat 2 s)"
    );
    assert!(
        dock.log().contains("registering again"),
        "{}",
        tail(&dock.log(), 20)
    );
}

// ---------------------------------------------------------- reconcile

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

#[tokio::test]
async fn env_overrides_rename_and_retime_the_registration() {
    let rig = Rig::start(&["-ttl", "60"]).await;
    let tag = format!("{:08x}", rand::random::<u32>());
    let (service, instance, env2) = (
        format!("svc-{tag}"),
        format!("inst-{tag}"),
        format!("e{tag}"),
    );
    let e_service = format!("DNS_SERVICE={service}");
    let e_instance = format!("DNS_INSTANCE={instance}");
    let e_env = format!("DNS_ENVIRONMENT={env2}");
    let c = Container::run(
        PREFIX,
        BUSYBOX,
        &[
            "-e",
            &e_service,
            "-e",
            &e_instance,
            "-e",
            &e_env,
            "-e",
            "DNS_TTL=7",
        ],
        &[],
    )
    .await;
    let name = fqdn(&instance, &service, &env2);
    rig.resolves(&name, &c.ip().await, APPEAR).await;
    let msg = rig.sky.query(&name, RecordType::A).await;
    let ttl = msg.answers.first().map(|r| r.ttl).unwrap_or_default();
    assert!((1..=7).contains(&ttl), "DNS_TTL=7 answered with TTL {ttl}");
    let reg = rig
        .sky
        .client
        .get_service(c.short_id())
        .await
        .expect("registered under the short id");
    assert_eq!(
        (
            reg.name.as_str(),
            reg.version.as_str(),
            reg.environment.as_str()
        ),
        (service.as_str(), instance.as_str(), env2.as_str())
    );
    assert!(reg.ttl <= 7, "{reg:?}");
    assert_eq!(
        lookup(&rig.sky, &rig.name(&c)).await.0,
        ResponseCode::NXDomain,
        "the default name is not registered as well"
    );
}

#[tokio::test]
async fn labels_win_over_env_and_service_name_names_the_service() {
    let rig = Rig::start(&[]).await;
    let tag = format!("{:08x}", rand::random::<u32>());
    let (lab, envv) = (format!("lab-{tag}"), format!("env-{tag}"));
    let (label_svc, env_svc) = (
        format!("SERVICE_NAME={lab}"),
        format!("SERVICE_NAME={envv}"),
    );
    // SERVICE_NAME as a label alone.
    let only_label = Container::run(PREFIX, BUSYBOX, &["--label", &label_svc], &[]).await;
    // DNS_SERVICE and DNS_INSTANCE in both: the label wins.
    let (l_dns, e_dns) = (format!("DNS_SERVICE={lab}"), format!("DNS_SERVICE={envv}"));
    let (l_inst, e_inst) = (
        format!("DNS_INSTANCE=li-{tag}"),
        format!("DNS_INSTANCE=ei-{tag}"),
    );
    let both = Container::run(
        PREFIX,
        BUSYBOX,
        &[
            "--label", &l_dns, "-e", &e_dns, "--label", &l_inst, "-e", &e_inst,
        ],
        &[],
    )
    .await;
    // SERVICE_NAME in env, overridden by a label.
    let svc_both = Container::run(
        PREFIX,
        BUSYBOX,
        &["-e", &env_svc, "--label", &label_svc],
        &[],
    )
    .await;
    // SERVICE_NAME in env only.
    let only_env = Container::run(PREFIX, BUSYBOX, &["-e", &env_svc], &[]).await;

    rig.resolves(
        &fqdn(&only_label.name, &lab, &rig.env),
        &only_label.ip().await,
        APPEAR,
    )
    .await;
    rig.resolves(
        &fqdn(&format!("li-{tag}"), &lab, &rig.env),
        &both.ip().await,
        APPEAR,
    )
    .await;
    rig.resolves(
        &fqdn(&svc_both.name, &lab, &rig.env),
        &svc_both.ip().await,
        APPEAR,
    )
    .await;
    rig.resolves(
        &fqdn(&only_env.name, &envv, &rig.env),
        &only_env.ip().await,
        APPEAR,
    )
    .await;
    for loser in [
        fqdn(&format!("ei-{tag}"), &envv, &rig.env),
        fqdn(&format!("li-{tag}"), &envv, &rig.env),
        fqdn(&format!("ei-{tag}"), &lab, &rig.env),
        fqdn(&svc_both.name, &envv, &rig.env),
        rig.name(&only_label),
    ] {
        assert_eq!(
            lookup(&rig.sky, &loser).await.0,
            ResponseCode::NXDomain,
            "{loser}"
        );
    }
}

#[tokio::test]
async fn service_ignore_keeps_a_container_out_of_dns() {
    let rig = Rig::start(&[]).await;
    let by_env = Container::run(PREFIX, BUSYBOX, &["-e", "SERVICE_IGNORE=1"], &[]).await;
    let by_label = Container::run(PREFIX, BUSYBOX, &["--label", "SERVICE_IGNORE=true"], &[]).await;
    // Started after them: once it resolves, skydock has seen the other two.
    let control = Container::run(PREFIX, BUSYBOX, &[], &[]).await;
    rig.resolves(&rig.name(&control), &control.ip().await, APPEAR)
        .await;
    for c in [&by_env, &by_label] {
        assert_eq!(
            lookup(&rig.sky, &rig.name(c)).await.0,
            ResponseCode::NXDomain,
            "{} ignored",
            c.name
        );
        assert!(
            matches!(
                rig.sky.client.get_service(c.short_id()).await,
                Err(ClientError::NotFound(_))
            ),
            "{} has no registration",
            c.name
        );
    }
    assert!(rig.dock.log().contains("SERVICE_IGNORE"));
}

#[tokio::test]
async fn registry_repository_and_tag_are_cleaned_from_the_image_name() {
    let rig = Rig::start(&[]).await;
    let c = Container::run(PREFIX, COOL_API_V2, &[], &[]).await; // localhost:5000/team/cool-api:v2
    rig.resolves(&fqdn(&c.name, "cool-api", &rig.env), &c.ip().await, APPEAR)
        .await;
    let reg = rig
        .sky
        .client
        .get_service(c.short_id())
        .await
        .expect("registered");
    assert_eq!(reg.name, "cool-api");
    assert_eq!(reg.version, c.name);
}

#[tokio::test]
async fn unhealthy_containers_are_registered_only_while_healthy() {
    let rig = Rig::start(&[]).await;
    let c = Container::run(PREFIX, HEALTHY, &[], &[]).await;
    let name = fqdn(&c.name, "healthy", &rig.env);
    let ip = c.ip().await;
    let unhealthy = eventually(Duration::from_secs(8), || async {
        c.health().await == "unhealthy"
    })
    .await;
    assert!(unhealthy, "health: {}", c.health().await);
    expect_stays_gone(&rig.sky, &name, Duration::from_secs(1)).await;

    c.set_healthy().await;
    rig.resolves(&name, &ip, Duration::from_secs(8)).await;
    assert_eq!(c.health().await, "healthy");

    c.set_unhealthy().await;
    rig.gone(&name, Duration::from_secs(8)).await;
    assert!(c.is_running().await, "unhealthy, not stopped");
}

#[tokio::test]
async fn several_exposed_ports_give_one_srv_each_and_one_address() {
    let rig = Rig::start(&[]).await;
    // The image exposes 8080 too.
    let c = Container::run(
        PREFIX,
        BUSYBOX,
        &["--expose", "7001", "--expose", "7002"],
        &[],
    )
    .await;
    let name = rig.name(&c);
    let ip = c.ip().await;
    rig.resolves(&name, &ip, APPEAR).await;
    let msg = srv(&rig.sky, &name).await;
    let got: Vec<(u16, String)> = srv_records(&msg)
        .into_iter()
        .map(|(_, _, port, target)| (port, target))
        .collect();
    // The lowest port keeps the original Skydock's uuid (the id's first 10
    // characters); each other port is `<id10>-<port>`.
    let id10 = c.short_id();
    let want: Vec<(u16, String)> = vec![
        (7001, format!("{id10}.skydns.local.")),
        (7002, format!("{id10}-7002.skydns.local.")),
        (8080, format!("{id10}-8080.skydns.local.")),
    ];
    let mut got_sorted = got.clone();
    got_sorted.sort();
    assert_eq!(got_sorted, want, "{msg:?}");
    // One address, not one per port.
    assert_eq!(lookup(&rig.sky, &name).await.1, std::slice::from_ref(&ip));
    // What scripts written for Skydock do: GET the container's short id.
    let reg = rig
        .sky
        .client
        .get_service(id10)
        .await
        .unwrap_or_else(|e| panic!("GET /skydns/services/{id10}: {e}"));
    assert_eq!((reg.port, reg.host.as_str()), (7001, ip.as_str()));
    assert_eq!(reg.version, c.name);
}

#[tokio::test]
async fn several_published_ports_keep_the_short_id_on_the_lowest_host_port() {
    let rig = Rig::start(&[]).await;
    let c = Container::run(
        PREFIX,
        BUSYBOX,
        &[
            "--expose",
            "7001",
            "-p",
            "127.0.0.1::7001",
            "-p",
            "127.0.0.1::8080",
        ],
        &[],
    )
    .await;
    let mut host_ports = vec![
        c.host_port("7001/tcp").await.expect("7001 published"),
        c.host_port("8080/tcp").await.expect("8080 published"),
    ];
    host_ports.sort_unstable();
    let name = rig.name(&c);
    rig.resolves(&name, &c.ip().await, APPEAR).await;
    expect_srv_ports(&rig.sky, &rig.dock, &name, &host_ports, APPEAR).await;
    let id10 = c.short_id();
    let plain = rig
        .sky
        .client
        .get_service(id10)
        .await
        .expect("the short id");
    assert_eq!(plain.port, host_ports[0], "the lowest published host port");
    let other = format!("{id10}-{}", host_ports[1]);
    let second = rig
        .sky
        .client
        .get_service(&other)
        .await
        .expect("the other port");
    assert_eq!(second.port, host_ports[1]);
}

#[tokio::test]
async fn a_published_port_is_the_srv_port() {
    let rig = Rig::start(&[]).await;
    let c = Container::run(PREFIX, BUSYBOX, &["-p", "127.0.0.1::8080"], &[]).await;
    let host_port = c.host_port("8080/tcp").await.expect("published port");
    assert_ne!(host_port, 8080);
    let name = rig.name(&c);
    rig.resolves(&name, &c.ip().await, APPEAR).await;
    assert_eq!(srv_ports(&rig.sky, &name).await, [host_port]);
}

#[tokio::test]
async fn pause_removes_the_name_and_unpause_brings_it_back() {
    let rig = Rig::start(&[]).await;
    let c = Container::run(PREFIX, BUSYBOX, &[], &[]).await;
    let name = rig.name(&c);
    let ip = c.ip().await;
    rig.resolves(&name, &ip, APPEAR).await;
    c.pause().await;
    rig.gone(&name, LEAVE).await;
    expect_stays_gone(&rig.sky, &name, Duration::from_millis(500)).await;
    c.unpause().await;
    rig.resolves(&name, &ip, APPEAR).await;
}

// ------------------------------------------------------------ exit

#[tokio::test]
async fn deregister_on_exit_removes_the_registrations_at_once() {
    let rig = Rig::start(&["-ttl", "60", "-deregister-on-exit"]).await;
    let c = Container::run(PREFIX, BUSYBOX, &[], &[]).await;
    let name = rig.name(&c);
    rig.resolves(&name, &c.ip().await, APPEAR).await;
    let Rig {
        sky, dock, owner, ..
    } = rig;
    assert!(!owned_by(&sky, &owner).await.is_empty());
    assert!(dock.stop().await, "SIGTERM: clean exit");
    assert_eq!(lookup(&sky, &name).await.0, ResponseCode::NXDomain);
    let left = owned_by(&sky, &owner).await;
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[tokio::test]
async fn sigterm_without_deregister_on_exit_leaves_names_to_expire() {
    let rig = Rig::start(&["-ttl", "5", "-beat", "1"]).await;
    let c = Container::run(PREFIX, BUSYBOX, &[], &[]).await;
    let name = rig.name(&c);
    let ip = c.ip().await;
    rig.resolves(&name, &ip, APPEAR).await;
    let Rig { sky, dock, .. } = rig;
    let log = dock.log();
    assert!(dock.stop().await, "SIGTERM: clean exit");
    let stopped = Instant::now();
    // Still answering (so a restarting skydock does not flap DNS)...
    expect_stays(&sky, &name, &ip, Duration::from_millis(1500)).await;
    // ...until the TTL runs out.
    expect_gone(&sky, &log, &name, Duration::from_secs(7)).await;
    assert!(stopped.elapsed() >= Duration::from_millis(1500));
}

// ---------------------------------------------------------- plugins

#[tokio::test]
async fn the_original_plugins_give_the_built_in_names() {
    docker::ensure_test_images();
    let tag = format!("{:08x}", rand::random::<u32>());
    let svc = format!("svc-{tag}");
    let env_var = format!("DNS_SERVICE={svc}");
    let with_env = Container::run(PREFIX, BUSYBOX, &["-e", &env_var], &[]).await;
    let plain = Container::run(PREFIX, BUSYBOX, &[], &[]).await;
    let (ip_env, ip_plain) = (with_env.ip().await, plain.ip().await);

    let env = unique_env();
    let env_js = plugin("containerEnv.js");
    let default_js = plugin("default.js");
    let mut rigs = Vec::new();
    for (what, extra) in [
        ("built-in", Vec::new()),
        ("containerEnv.js", vec!["-plugins", env_js.as_str()]),
        ("default.js", vec!["-plugins", default_js.as_str()]),
    ] {
        let sky = SkyDns::spawn(&[]).await;
        let dock = start_dock(&sky, &env, &format!("skydock-test-{env}-{what}"), &extra).await;
        rigs.push((what, sky, dock));
    }
    let env_name = fqdn(&with_env.name, &svc, &env);
    let plain_name = fqdn(&plain.name, "busybox", &env);
    for (what, sky, dock) in &rigs {
        let log: &dyn Logs = dock;
        match *what {
            "built-in" | "containerEnv.js" => {
                expect_resolves(sky, log, &env_name, &ip_env, APPEAR).await;
            }
            _ => {
                // default.js has no overrides: the image name.
                let img = fqdn(&with_env.name, "busybox", &env);
                expect_resolves(sky, log, &img, &ip_env, APPEAR).await;
            }
        }
        expect_resolves(sky, log, &plain_name, &ip_plain, APPEAR).await;
    }
    // default.js also picks the built-in port (lowest exposed: 8080).
    let (_, builtin_sky, _) = &rigs[0];
    let (_, default_sky, _) = &rigs[2];
    assert_eq!(srv_ports(builtin_sky, &plain_name).await, [8080]);
    assert_eq!(srv_ports(default_sky, &plain_name).await, [8080]);
}

#[tokio::test]
async fn a_throwing_plugin_skips_that_container_and_names_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("picky.js");
    let source = "// a plugin that refuses containers named *boom*\n\
        function createService(container) {\n\
        \x20   var name = removeSlash(container.Name);\n\
        \x20   if (name.indexOf(\"boom\") >= 0) {\n\
        \x20       throw new Error(\"no service for \" + name);\n\
        \x20   }\n\
        \x20   return {Port: 80, Environment: defaultEnvironment, TTL: defaultTTL,\n\
        \x20           Service: cleanImageName(container.Image), Instance: name,\n\
        \x20           Host: container.NetworkSettings.IpAddress};\n\
        }\n";
    std::fs::write(&file, source).expect("write plugin");
    let path = file.to_string_lossy().into_owned();
    let rig = Rig::start(&["-plugins", &path]).await;
    let mark = rig.dock.log_len();
    let boom = Container::run(&format!("{PREFIX}-boom"), BUSYBOX, &[], &[]).await;
    let fine = Container::run(PREFIX, BUSYBOX, &[], &[]).await;
    rig.resolves(&rig.name(&fine), &fine.ip().await, APPEAR)
        .await;
    assert_eq!(srv_ports(&rig.sky, &rig.name(&fine)).await, [80]);
    assert_eq!(
        lookup(&rig.sky, &rig.name(&boom)).await.0,
        ResponseCode::NXDomain
    );
    let where_ = format!("{path}:5");
    let logged = rig
        .dock
        .wait_for_log_since(mark, &where_, Duration::from_secs(3))
        .await;
    let log = rig.dock.log();
    assert!(logged, "no {where_} in the log:\n{}", tail(&log, 30));
    let line = log
        .lines()
        .find(|l| l.contains(&where_))
        .unwrap_or_default();
    assert!(
        line.contains(&boom.name) && line.contains("no service for"),
        "the error line names the container and the message: {line}"
    );
    // The agent lives on and keeps registering.
    let later = Container::run(PREFIX, BUSYBOX, &[], &[]).await;
    rig.resolves(&rig.name(&later), &later.ip().await, APPEAR)
        .await;
}

// ------------------------------------------------- connections

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

#[tokio::test]
async fn link_variables_tell_skydock_where_skydns_is() {
    docker::ensure_test_images();
    let sky = SkyDns::spawn(&[]).await;
    let env = unique_env();
    let owner = format!("skydock-test-{env}");
    let port = sky.http.port().to_string();
    let mut dock = SkyDock::spawn(
        &["-environment", &env, "-owner", &owner],
        &[
            ("SKYDNS_PORT_8080_TCP_ADDR", "127.0.0.1"),
            ("SKYDNS_PORT_8080_TCP_PORT", &port),
        ],
    )
    .expect("spawn skydock");
    dock.wait_ready().await.expect("ready");
    assert!(
        dock.log().contains(&format!("http://127.0.0.1:{port}")),
        "{}",
        dock.log()
    );
    let c = Container::run(PREFIX, BUSYBOX, &[], &[]).await;
    expect_resolves(
        &sky,
        &dock,
        &fqdn(&c.name, "busybox", &env),
        &c.ip().await,
        APPEAR,
    )
    .await;
}

#[tokio::test]
async fn unreachable_skydns_at_start_is_retried_until_it_is_up() {
    docker::ensure_test_images();
    let c = Container::run(PREFIX, BUSYBOX, &[], &[]).await;
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let env = unique_env();
    let owner = format!("skydock-test-{env}");
    let mut dock = SkyDock::spawn(
        &[
            "-skydns",
            &url,
            "-environment",
            &env,
            "-owner",
            &owner,
            "-ttl",
            "4",
            "-resync",
            "2",
        ],
        &[],
    )
    .expect("spawn skydock");
    // A clear complaint: a warning naming skydns's address.
    let complained = eventually(Duration::from_secs(10), || async {
        dock.log()
            .lines()
            .any(|l| l.contains("WARN") && l.contains(&url) && l.contains("skydns"))
    })
    .await;
    assert!(complained, "no clear log line:\n{}", dock.log());
    assert!(
        dock.wait_exit(Duration::from_secs(2)).await.is_none(),
        "skydock exited while skydns was down:\n{}",
        dock.log()
    );

    let sky = SkyDns::spawn_on("127.0.0.1:0", &format!("127.0.0.1:{port}"), &[]).await;
    let up = Instant::now();
    expect_resolves(
        &sky,
        &dock,
        &fqdn(&c.name, "busybox", &env),
        &c.ip().await,
        Duration::from_secs(6),
    )
    .await;
    eprintln!("registered {:?} after skydns came up", up.elapsed());
    assert!(dock.wait_exit(Duration::from_millis(10)).await.is_none());
}
