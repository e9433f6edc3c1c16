//! The binary as a process: flags, start-up errors, restarts with `-data`.

use std::time::Duration;

use hickory_proto::rr::RecordType;
use skydns_tests::{
    ClientError, SkyDns, a_records, service,
    stub::{ANSWER, Behavior, Stub},
};

#[tokio::test]
async fn restart_with_data_keeps_registrations_even_after_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf8 path");
    let sky = SkyDns::spawn(&["-data", data]).await;
    sky.client
        .add_service(
            "1011",
            &service("rails", "production", "east", "127.0.0.10", 80, 3600),
        )
        .await
        .expect("add");
    sky.client
        .add_service(
            "1012",
            &service("rails", "production", "east", "127.0.0.11", 80, 3600),
        )
        .await
        .expect("add");
    sky.client.delete_service("1012").await.expect("delete");
    sky.kill9().await;

    let sky = SkyDns::spawn(&["-data", data]).await;
    let got = sky.client.get_service("1011").await.expect("restored");
    assert_eq!(got.host, "127.0.0.10");
    assert!(matches!(
        sky.client.get_service("1012").await,
        Err(skydns_tests::ClientError::NotFound(_))
    ));
    let msg = sky
        .query("rails.production.skydns.local.", RecordType::A)
        .await;
    assert_eq!(a_records(&msg), ["127.0.0.10"]);
    assert!(sky.stop().await, "SIGTERM exits cleanly");
}

#[tokio::test]
async fn services_that_expired_while_down_stay_gone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf8 path");
    let sky = SkyDns::spawn(&["-data", data]).await;
    sky.client
        .add_service("short", &service("web", "prod", "", "127.0.0.20", 80, 1))
        .await
        .expect("add");
    sky.client
        .add_service("long", &service("web", "prod", "", "127.0.0.21", 80, 3600))
        .await
        .expect("add");
    sky.kill9().await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let sky = SkyDns::spawn(&["-data", data]).await;
    let msg = sky.query("web.prod.skydns.local.", RecordType::A).await;
    assert_eq!(a_records(&msg), ["127.0.0.21"]);
}

#[tokio::test]
async fn skydns_v1_readme_flags_work() {
    // Single-dash flags exactly as in the SkyDNS v1 README.
    let sky = SkyDns::spawn(&[
        "-domain",
        "example.test",
        "-no-round-robin",
        "-rtimeout=2s",
        "-metricsToStdErr",
    ])
    .await;
    sky.client
        .add_service("1", &service("web", "prod", "", "127.0.0.5", 80, 60))
        .await
        .expect("add");
    let msg = sky.query("web.prod.example.test.", RecordType::A).await;
    assert_eq!(a_records(&msg), ["127.0.0.5"]);
    let msg = sky.query("web.prod.skydns.local.", RecordType::A).await;
    assert!(a_records(&msg).is_empty(), "-domain replaced skydns.local");
}

#[tokio::test]
async fn skydns_env_vars_configure_it_and_flags_win_over_them() {
    let up = Stub::start("127.0.0.1:0", Behavior::Answer).await;
    let upstream = up.addr.to_string();
    let sky = SkyDns::try_spawn_with_env(
        "",
        "",
        &[],
        &[
            ("SKYDNS_DNS", "127.0.0.1:0"),
            ("SKYDNS", "127.0.0.1:0"),
            ("SKYDNS_DOMAIN", "env.test"),
            ("SKYDNS_NAMESERVER", &upstream),
            ("SKYDNS_SECRET", "s3cret"),
        ],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    // SKYDNS_SECRET: the API wants the secret.
    let svc = service("web", "prod", "", "127.0.0.6", 80, 60);
    assert!(matches!(
        sky.client.add_service("1", &svc).await,
        Err(ClientError::Unauthorized(_))
    ));
    let client = sky.client.clone().with_secret("s3cret");
    client
        .add_service("1", &svc)
        .await
        .expect("add with the secret");
    // SKYDNS_DOMAIN: served under env.test.
    let msg = sky.query("web.prod.env.test.", RecordType::A).await;
    assert_eq!(a_records(&msg), ["127.0.0.6"]);
    // SKYDNS_NAMESERVER: outside names go to the stub.
    let msg = sky.query("www.example.", RecordType::A).await;
    assert_eq!(a_records(&msg), [ANSWER.to_string()]);
    assert_eq!(up.udp_queries(), 1, "forwarded to SKYDNS_NAMESERVER");

    // A flag wins over its variable.
    let sky = SkyDns::try_spawn_with_env(
        "127.0.0.1:0",
        "127.0.0.1:0",
        &["-domain", "flag.test"],
        &[("SKYDNS_DOMAIN", "env.test")],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    sky.client.add_service("1", &svc).await.expect("add");
    let msg = sky.query("web.prod.flag.test.", RecordType::A).await;
    assert_eq!(a_records(&msg), ["127.0.0.6"]);
}

#[tokio::test]
async fn a_cache_size_beyond_the_limit_fails_the_start_in_one_line() {
    let err = SkyDns::try_spawn_on(
        "127.0.0.1:0",
        "127.0.0.1:0",
        &["-cache-size", "99999999999"],
    )
    .await
    .err()
    .expect("refused");
    let last = err.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("skydns: -cache-size 99999999999 is over the limit of 1000000"),
        "{err}"
    );
    // The largest allowed one starts, and answers.
    let sky = SkyDns::spawn(&["-cache-size", "1000000"]).await;
    let msg = sky.query("skydns.local.", RecordType::SOA).await;
    assert_eq!(msg.answers.len(), 1);
}

#[tokio::test]
async fn skydns_v1_clustering_flags_point_to_etcd_in_one_line() {
    let err = SkyDns::try_spawn_on("127.0.0.1:0", "127.0.0.1:0", &["-join", "127.0.0.1:9999"])
        .await
        .err()
        .expect("refused");
    assert!(err.contains("replaced by -etcd"), "{err}");
}

#[tokio::test]
async fn bind_failure_says_what_to_do() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let err = SkyDns::try_spawn_on(&addr, "127.0.0.1:0", &[])
        .await
        .err()
        .expect("bind fails");
    assert!(
        err.contains("cannot listen for DNS") && err.contains("-dns"),
        "{err}"
    );
}

/// Threads of the process whose name starts with `prefix` (Linux `/proc`).
fn threads_named(pid: u32, prefix: &str) -> usize {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc task list");
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .filter(|name| name.starts_with(prefix))
        .count()
}

#[tokio::test]
async fn workers_and_dns_workers_set_the_thread_counts() {
    for (workers, dns_workers) in [(1, 1), (3, 2)] {
        let (w, d) = (workers.to_string(), dns_workers.to_string());
        let sky = SkyDns::spawn(&["-workers", &w, "-dns-workers", &d]).await;
        sky.client
            .add_service("1", &service("web", "prod", "", "127.0.0.5", 80, 60))
            .await
            .expect("add");
        let msg = sky.query("web.prod.skydns.local.", RecordType::A).await;
        assert_eq!(a_records(&msg), ["127.0.0.5"]);
        // Runtime workers and the UDP threads (the runtime's blocking
        // threads) carry tokio's name; nothing else blocks in this test.
        // A thread takes its name once it first runs: on a loaded machine a
        // just-made one may still carry the process's name for a moment.
        let want = workers + dns_workers;
        let pid = sky.pid();
        skydns_tests::eventually(Duration::from_secs(5), || async move {
            threads_named(pid, "tokio-r") >= want
        })
        .await;
        assert_eq!(
            threads_named(pid, "tokio-r"),
            want,
            "-workers {workers} -dns-workers {dns_workers}"
        );
    }
}
