//! TTL and heartbeats: names expire after the TTL when skydock dies, live
//! on while it beats, and come back within a beat when skydns lost them.

use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use skydns_tests::{
    SkyDns,
    docker::{self, BUSYBOX, Container},
};

use super::*;

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
