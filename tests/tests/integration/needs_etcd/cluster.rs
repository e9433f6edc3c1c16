//! Several skydns instances on one registry in a real 3-member etcd
//! cluster (Debian's etcd-server): propagation both ways, the 409 rule
//! across instances, expiry and callbacks once, the etcd leader killed
//! mid-stream, every member down and back, a compaction while an instance
//! was cut off, and the SkyDNS2/CoreDNS layout both ways with etcdctl.

use std::time::{Duration, Instant};

use hickory_proto::{
    op::ResponseCode,
    rr::{RData, RecordType},
};
use skydns_tests::{
    ClientError, HttpReply, SkyDns, a_records, etcd::EtcdCluster, eventually, http, service,
};

use crate::api::callbacks::{callback_listener, next_callback};

const REDIS: &str = "redis.dev.skydns.local.";

/// An instance on `etcd` (a comma list of client URLs).
async fn instance(etcd: &str) -> SkyDns {
    SkyDns::start(&["-etcd", etcd, "-no-forward"]).await
}

/// Two instances on every member of `etcd`.
async fn pair(etcd: &EtcdCluster) -> (SkyDns, SkyDns) {
    let endpoints = etcd.endpoints();
    (instance(&endpoints).await, instance(&endpoints).await)
}

fn redis(host: &str, ttl: u32) -> skydns_tests::Service {
    service("redis", "dev", "east", host, 6379, ttl)
}

async fn answers(sky: &SkyDns, name: &str) -> Vec<String> {
    a_records(&sky.query(name, RecordType::A).await)
}

async fn get(sky: &SkyDns, path: &str) -> HttpReply {
    http(sky.http, "GET", path, &[], None)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// Waits until `sky` answers `name` with exactly `want`; how long it took.
async fn until_answers(sky: &SkyDns, name: &str, want: &[&str], within: Duration) -> Duration {
    let started = Instant::now();
    let mut last = Vec::new();
    while started.elapsed() < within {
        last = answers(sky, name).await;
        if last == want {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("{name} answered {last:?}, not {want:?}, within {within:?}");
}

#[tokio::test]
async fn a_registration_on_one_instance_is_answered_by_the_other_and_a_removal_too() {
    let etcd = EtcdCluster::start(3).await;
    let (a, b) = pair(&etcd).await;
    a.client
        .add_service("r1", &redis("10.0.0.1", 60))
        .await
        .expect("register on A");
    let to_b = until_answers(&b, REDIS, &["10.0.0.1"], Duration::from_secs(5)).await;
    b.client.delete_service("r1").await.expect("delete on B");
    let to_a = until_answers(&a, REDIS, &[], Duration::from_secs(5)).await;
    let gone = a.query(REDIS, RecordType::A).await;
    assert_eq!(gone.response_code, ResponseCode::NXDomain);
    assert!(
        matches!(
            a.client.get_service("r1").await,
            Err(ClientError::NotFound(_))
        ),
        "gone from A's API too"
    );
    eprintln!("propagation: A→B {to_b:?}, B→A {to_a:?}");
}

#[tokio::test]
async fn the_same_new_uuid_from_two_instances_at_once_gets_exactly_one_201() {
    let etcd = EtcdCluster::start(3).await;
    let (a, b) = pair(&etcd).await;
    for i in 0..20 {
        let uuid = format!("race{i}");
        let (sa, sb) = (redis("10.0.1.1", 60), redis("10.0.1.2", 60));
        let (ra, rb) = tokio::join!(
            a.client.add_service(&uuid, &sa),
            b.client.add_service(&uuid, &sb),
        );
        let won = [&ra, &rb].iter().filter(|r| r.is_ok()).count();
        let lost = [&ra, &rb]
            .iter()
            .filter(|r| matches!(r, Err(ClientError::Conflict(_))))
            .count();
        assert_eq!((won, lost), (1, 1), "{uuid}: A {ra:?}, B {rb:?}");
        // Both instances end up holding the winner's host.
        let winner = if ra.is_ok() { "10.0.1.1" } else { "10.0.1.2" };
        for sky in [&a, &b] {
            assert!(
                eventually(Duration::from_secs(5), || async {
                    sky.client
                        .get_service(&uuid)
                        .await
                        .is_ok_and(|s| s.host == winner)
                })
                .await,
                "{uuid} holds {winner} everywhere"
            );
        }
    }
}

#[tokio::test]
async fn expiry_and_callbacks_fire_once_with_two_instances_running() {
    let etcd = EtcdCluster::start(3).await;
    let (a, b) = pair(&etcd).await;
    let (port, mut calls) = callback_listener().await;
    let mut expiring = redis("10.0.2.1", 2);
    expiring.name = "expiring".into();
    a.client
        .add_service("x1", &expiring)
        .await
        .expect("register");
    let mut removed = redis("10.0.2.2", 60);
    removed.name = "removed".into();
    a.client
        .add_service("x2", &removed)
        .await
        .expect("register");
    let callback = |name: &str| skydns_tests::Callback {
        name: name.into(),
        reply: "127.0.0.1".into(),
        port,
        ..skydns_tests::Callback::default()
    };
    // Attached through B, so its record in etcd carries it to A too.
    for name in ["expiring", "removed"] {
        assert!(
            eventually(Duration::from_secs(5), || async {
                b.client
                    .add_callback(&format!("cb-{name}"), &callback(name))
                    .await
                    .is_ok()
            })
            .await,
            "callback for {name} attached on B"
        );
    }
    // A heartbeat on B renews the lease A's registration holds.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    b.client.heartbeat("x1", 2).await.expect("heartbeat on B");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        answers(&a, "expiring.dev.skydns.local.").await,
        ["10.0.2.1"],
        "alive past its first TTL: B's heartbeat renewed it"
    );
    // Then the beats stop: it expires once, everywhere, one callback.
    let call = next_callback(&mut calls, Duration::from_secs(8)).await;
    assert_eq!(call.method, "DELETE");
    assert!(call.path.ends_with("/cb-expiring"), "{}", call.path);
    for sky in [&a, &b] {
        until_answers(
            sky,
            "expiring.dev.skydns.local.",
            &[],
            Duration::from_secs(5),
        )
        .await;
    }
    // A removal through B: one callback, whichever instance sees it.
    b.client.delete_service("x2").await.expect("delete");
    let call = next_callback(&mut calls, Duration::from_secs(5)).await;
    assert!(call.path.ends_with("/cb-removed"), "{}", call.path);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(calls.try_recv().is_err(), "no second delivery of either");
    let expired = |m: String| {
        m.lines()
            .find(|l| l.starts_with("skydns_registry_expired_total"))
            .map(str::to_string)
    };
    eprintln!(
        "expired: A {:?}, B {:?}",
        expired(a.metrics().await),
        expired(b.metrics().await)
    );
}

#[tokio::test]
async fn every_acknowledged_put_survives_killing_the_etcd_leader_and_dns_keeps_answering() {
    let mut etcd = EtcdCluster::start(3).await;
    let (a, b) = pair(&etcd).await;
    a.client
        .add_service("steady", &redis("10.0.3.1", 3600))
        .await
        .expect("register");
    until_answers(&b, REDIS, &["10.0.3.1"], Duration::from_secs(5)).await;
    let writer = {
        let client = a.client.clone();
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..300 {
                let uuid = format!("s{i}");
                let mut s = redis(&format!("10.0.4.{}", i % 250 + 1), 3600);
                s.name = "stream".into();
                if client.add_service(&uuid, &s).await.is_ok() {
                    acked.push(uuid);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            acked
        })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    let leader = etcd.leader().await;
    etcd.kill9(leader).await;
    // DNS never stops answering while etcd elects a new leader.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert_eq!(answers(&b, REDIS).await, ["10.0.3.1"], "B answers");
        assert_eq!(answers(&a, REDIS).await, ["10.0.3.1"], "A answers");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let acked = writer.await.expect("writer");
    assert!(acked.len() > 100, "most PUTs acknowledged: {}", acked.len());
    for sky in [&a, &b] {
        for uuid in &acked {
            assert!(
                eventually(Duration::from_secs(10), || async {
                    sky.client.get_service(uuid).await.is_ok()
                })
                .await,
                "acknowledged {uuid} present on {}",
                sky.url()
            );
        }
    }
    // etcd holds them too, under the CoreDNS path.
    let keys = etcd
        .etcdctl(&[
            "get",
            "/skydns/local/skydns/dev/stream/",
            "--prefix",
            "--keys-only",
        ])
        .await
        .expect("etcdctl get");
    for uuid in &acked {
        assert!(
            keys.lines().any(|k| k.ends_with(&format!("/{uuid}"))),
            "{uuid} in etcd"
        );
    }
    etcd.restart(leader);
}

#[tokio::test]
async fn with_every_etcd_member_down_dns_answers_writes_get_503_and_it_converges_after() {
    let mut etcd = EtcdCluster::start(3).await;
    let (a, b) = pair(&etcd).await;
    a.client
        .add_service("d1", &redis("10.0.5.1", 3600))
        .await
        .expect("register");
    until_answers(&b, REDIS, &["10.0.5.1"], Duration::from_secs(5)).await;
    etcd.stop_all().await;
    for sky in [&a, &b] {
        assert!(
            eventually(Duration::from_secs(10), || async {
                get(sky, "/ready").await.status == 503
            })
            .await,
            "{} not ready while etcd is down",
            sky.url()
        );
        assert_eq!(
            answers(sky, REDIS).await,
            ["10.0.5.1"],
            "the last index answers"
        );
        assert!(
            sky.metrics().await.contains("skydns_store_connected 0"),
            "the metric says so"
        );
    }
    match a.client.add_service("d2", &redis("10.0.5.2", 3600)).await {
        Err(ClientError::Server { status, message }) => {
            assert_eq!(status, 503);
            assert!(message.contains("etcd"), "{message}");
        }
        other => panic!("a write while etcd is down: {other:?}"),
    }
    etcd.restart_all().await;
    for sky in [&a, &b] {
        assert!(
            eventually(Duration::from_secs(20), || async {
                get(sky, "/ready").await.status == 200
            })
            .await,
            "{} ready again",
            sky.url()
        );
    }
    a.client
        .add_service("d2", &redis("10.0.5.2", 3600))
        .await
        .expect("writes succeed again");
    until_answers(&b, REDIS, &["10.0.5.1", "10.0.5.2"], Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_compaction_while_an_instance_is_cut_off_is_recovered_by_a_re_read() {
    let mut etcd = EtcdCluster::start(3).await;
    let all = etcd.endpoints();
    let first = all.split(',').next().expect("an endpoint").to_string();
    // A reaches etcd through member 0 only; B through all.
    let (a, b) = (instance(&first).await, instance(&all).await);
    b.client
        .add_service("old", &redis("10.0.6.1", 3600))
        .await
        .expect("register");
    until_answers(&a, REDIS, &["10.0.6.1"], Duration::from_secs(5)).await;
    etcd.kill9(0).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            get(&a, "/ready").await.status == 503
        })
        .await,
        "A notices it is cut off"
    );
    // Meanwhile, through B: one removal, one registration, a compaction.
    assert!(
        eventually(Duration::from_secs(10), || async {
            b.client.delete_service("old").await.is_ok()
        })
        .await,
        "B removes through the other members"
    );
    b.client
        .add_service("new", &redis("10.0.6.2", 3600))
        .await
        .expect("register on B");
    let revision = etcd.revision().await;
    etcd.etcdctl(&["compact", &revision.to_string()])
        .await
        .expect("compact");
    assert_eq!(
        answers(&a, REDIS).await,
        ["10.0.6.1"],
        "A still answers its last index"
    );
    etcd.restart(0);
    until_answers(&a, REDIS, &["10.0.6.2"], Duration::from_secs(20)).await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            get(&a, "/ready").await.status == 200
        })
        .await,
        "A ready again"
    );
}

#[tokio::test]
async fn records_go_both_ways_with_etcdctl_in_the_skydns2_and_coredns_layout() {
    let etcd = EtcdCluster::start(3).await;
    let a = instance(&etcd.endpoints()).await;
    // In: a key as SkyDNS2-era tools wrote it.
    etcd.etcdctl(&[
        "put",
        "/skydns/local/skydns/prod/db",
        r#"{"host":"10.0.7.5","port":5432}"#,
    ])
    .await
    .expect("etcdctl put");
    until_answers(
        &a,
        "db.prod.skydns.local.",
        &["10.0.7.5"],
        Duration::from_secs(5),
    )
    .await;
    let srv = a.query("db.prod.skydns.local.", RecordType::SRV).await;
    let ports: Vec<u16> = srv
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some(s.port),
            _ => None,
        })
        .collect();
    assert_eq!(ports, [5432]);
    // A sibling key is not under the zone's path: never read.
    etcd.etcdctl(&[
        "put",
        "/skydns/local/skydnsx/prod/db",
        r#"{"host":"10.0.7.6","port":1}"#,
    ])
    .await
    .expect("etcdctl put");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(answers(&a, "db.prod.skydns.local.").await, ["10.0.7.5"]);
    etcd.etcdctl(&["del", "/skydns/local/skydns/prod/db"])
        .await
        .expect("etcdctl del");
    until_answers(&a, "db.prod.skydns.local.", &[], Duration::from_secs(5)).await;

    // Out: ours, at the path CoreDNS's etcd plugin reads, with its fields;
    // the ttl is the TTL, never the lease's ID.
    a.client
        .add_service("c1", &redis("10.0.7.1", 45))
        .await
        .expect("register");
    let out = etcd
        .etcdctl(&[
            "get",
            "/skydns/local/skydns/dev/redis/",
            "--prefix",
            "-w",
            "json",
        ])
        .await
        .expect("etcdctl get");
    let got: serde_json::Value = serde_json::from_str(&out).expect("json");
    let kv = &got["kvs"][0];
    let key = base64_decode(kv["key"].as_str().expect("key"));
    assert_eq!(key, "/skydns/local/skydns/dev/redis/1-0-0/east/1/7/0/10/c1");
    let value: serde_json::Value =
        serde_json::from_str(&base64_decode(kv["value"].as_str().expect("value"))).expect("value");
    assert_eq!(value["host"], "10.0.7.1");
    assert_eq!(value["port"], 6379);
    assert_eq!(value["ttl"], 45);
    assert!(
        kv["lease"].as_i64().is_some_and(|l| l != 45 && l != 0),
        "on a lease"
    );
}

/// etcdctl's JSON output carries keys and values in base64.
fn base64_decode(s: &str) -> String {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64");
    String::from_utf8(bytes).expect("utf-8")
}
