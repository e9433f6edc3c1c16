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
//! By topic: `lifecycle` (start and stop), `heartbeats` (TTL), `reconcile`,
//! `mapping` (names, ports, plugins), `finding_skydns`, `ownership` (two
//! agents on one engine), `plugin_budget` (a plugin that never returns),
//! `stalls` (a skydns that stops answering; what reconcile reads), `rollout`
//! (`skydock rollout` starts replicas like the old ones). The shared
//! helpers are here.

mod finding_skydns;
mod heartbeats;
mod lifecycle;
mod mapping;
mod ownership;
mod plugin_budget;
mod reconcile;
mod rollout;
mod stalls;

use std::{
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Message, ResponseCode},
    rr::RecordType,
};
use skydns_tests::{
    ClientError, Service, SkyDns, a_records, binary,
    docker::{self, BUSYBOX, COOL_API_V2, Container, DOCKER_SOCKET},
    eventually,
    skydock::SkyDock,
    srv_records,
};
use tokio::process::Command;

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
