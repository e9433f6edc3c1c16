//! Where skydns is: link variables, and a skydns that is not up yet.

use std::time::{Duration, Instant};

use skydns_tests::{
    SkyDns,
    docker::{self, BUSYBOX, Container},
    eventually,
    skydock::SkyDock,
};

use super::*;

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
