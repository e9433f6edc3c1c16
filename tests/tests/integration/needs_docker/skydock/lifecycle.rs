//! Start and stop: containers found at start, start/stop/kill, restarts,
//! pause, and what happens to names when skydock exits.

use std::time::{Duration, Instant};

use hickory_proto::{op::ResponseCode, rr::RecordType};
use skydns_tests::{
    a_records,
    docker::{self, BUSYBOX, COOL_API_V2, Container},
    srv_records,
};

use super::*;

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
