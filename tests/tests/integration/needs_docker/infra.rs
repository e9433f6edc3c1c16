//! The Docker test infrastructure itself, against the real engine: the local
//! images build, a container runs with an address, and its handle removes it.
//! No engine is a failure (`docker engine not reachable ...`), never a skip.

use std::{net::Ipv4Addr, time::Duration};

use skydns_tests::{
    docker::{self, BUSYBOX, Container},
    eventually, http,
};

const PREFIX: &str = "skydns-test-infra";

#[tokio::test]
async fn busybox_container_runs_with_an_ip_and_drop_removes_it() {
    docker::ensure_test_images();
    // Leftovers of an earlier, killed run.
    docker::cleanup_prefix(PREFIX);

    let c = Container::run(PREFIX, BUSYBOX, &[], &[]).await;
    assert_eq!(c.id.len(), 64, "full id: {}", c.id);
    assert!(c.name.starts_with(PREFIX), "{}", c.name);
    assert_eq!(c.inspect("{{.Name}}").await, format!("/{}", c.name));
    assert_eq!(c.status().await, "running");
    assert!(c.is_running().await);
    assert_eq!(
        c.inspect("{{index .Config.Labels \"skydns-test\"}}").await,
        "1"
    );
    assert_eq!(
        c.inspect("{{range $p, $_ := .Config.ExposedPorts}}{{$p}}{{end}}")
            .await,
        "8080/tcp"
    );

    let ip: Ipv4Addr = c
        .ip()
        .await
        .parse()
        .unwrap_or_else(|e| panic!("no IPv4 address for {}: {e}", c.name));
    assert!(!ip.is_unspecified() && !ip.is_loopback(), "{ip}");

    // The image's httpd answers on the container's address (a container this
    // test started) once it listens.
    let addr = (ip, 8080).into();
    let served = eventually(Duration::from_secs(10), || async {
        http(addr, "GET", "/index.html", &[], None)
            .await
            .is_ok_and(|r| r.status == 200 && r.text().contains("skydns test image"))
    })
    .await;
    assert!(served, "busybox httpd did not answer on {addr}");
    assert_eq!(c.exec(&["cat", "/index.html"]).await, "skydns test image");

    let id = c.id.clone();
    drop(c);
    let gone = docker::docker(&["inspect", &id]).await;
    assert!(gone.is_err(), "container {id} still exists after drop");
    assert_eq!(docker::cleanup_prefix(PREFIX), 0);
}
