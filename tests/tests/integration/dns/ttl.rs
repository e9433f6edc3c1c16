//! Time: TTLs counting down, expiry the moment a deadline passes, and
//! repeated questions (the response cache) seeing heartbeats and changes.

use std::time::{Duration, Instant};

use hickory_proto::{
    op::ResponseCode,
    rr::{RData, RecordType},
};
use skydns_tests::{SkyDns, a_records, eventually, query_message, service, udp_exchange};

use super::*;

#[tokio::test]
async fn answer_ttl_counts_down() {
    let sky = SkyDns::start(&[]).await;
    sky.client
        .add_service(
            "r1",
            &service("rails", "production", "east", "127.0.0.10", 80, 30),
        )
        .await
        .expect("add");
    let first = sky.query(RAILS, RecordType::A).await;
    let t1 = first.answers.first().expect("answer").ttl;
    assert!((29..=30).contains(&t1), "fresh TTL {t1}");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let second = sky.query(RAILS, RecordType::A).await;
    let t2 = second.answers.first().expect("answer").ttl;
    assert!(t2 <= t1 - 2 && t2 >= 26, "TTL counts down: {t1} then {t2}");
    let srv = sky.query(RAILS, RecordType::SRV).await;
    assert!(
        srv.answers.iter().all(|r| r.ttl <= t1 - 2),
        "SRV TTL counts down too"
    );
    assert!(
        srv.additionals
            .iter()
            .filter(|r| matches!(r.data, RData::A(_)))
            .all(|r| r.ttl <= t1 - 2),
        "glue too"
    );
}

#[tokio::test]
async fn a_service_vanishes_from_dns_the_moment_it_expires() {
    let sky = SkyDns::start(&[]).await;
    sky.client
        .add_service(
            "keep",
            &service("other", "production", "", "127.0.0.9", 80, 60),
        )
        .await
        .expect("add");
    let before = Instant::now();
    sky.client
        .add_service(
            "r1",
            &service("rails", "production", "east", "127.0.0.10", 80, 2),
        )
        .await
        .expect("add");
    let registered = Instant::now();
    let msg = sky.query(RAILS, RecordType::A).await;
    assert_eq!(a_records(&msg), ["127.0.0.10"]);
    // Still there a little before the deadline ...
    tokio::time::sleep(Duration::from_millis(1500).saturating_sub(registered.elapsed())).await;
    let msg = sky.query(RAILS, RecordType::A).await;
    assert_eq!(a_records(&msg), ["127.0.0.10"], "alive at 1.5 s of 2");
    assert_eq!(msg.answers[0].ttl, 1, "the last second");
    // ... and gone right at it, with no API call in between.
    let gone = eventually(Duration::from_secs(3), || async {
        sky.query(RAILS, RecordType::A).await.metadata.response_code == ResponseCode::NXDomain
    })
    .await;
    let at = before.elapsed();
    assert!(gone, "still answered after {at:?}");
    assert!(
        at >= Duration::from_millis(1900),
        "vanished too early: {at:?}"
    );
    assert!(
        at <= Duration::from_millis(2600),
        "vanished late (not at expiry): {at:?}"
    );
    assert_nxdomain(&sky.query(RAILS, RecordType::SRV).await, "SRV after expiry");
    assert_nxdomain(
        &sky.query("r1.skydns.local.", RecordType::A).await,
        "uuid name after expiry",
    );
    assert!(
        sky.query("10.0.0.127.in-addr.arpa.", RecordType::PTR)
            .await
            .answers
            .is_empty(),
        "no PTR after expiry"
    );
    // Purged from the registry as well; others untouched.
    let ids: Vec<String> = sky
        .client
        .list_services(None)
        .await
        .expect("list")
        .into_iter()
        .map(|s| s.uuid)
        .collect();
    assert_eq!(ids, ["keep"]);
    // TTL 1 as well.
    sky.client
        .add_service(
            "r2",
            &service("rails", "production", "east", "127.0.0.11", 80, 1),
        )
        .await
        .expect("add");
    let t = Instant::now();
    assert!(
        eventually(Duration::from_secs(3), || async {
            sky.query(RAILS, RecordType::A).await.metadata.response_code == ResponseCode::NXDomain
        })
        .await
    );
    assert!(
        t.elapsed() <= Duration::from_millis(1600),
        "TTL 1 gone after {:?}",
        t.elapsed()
    );
}

/// Repeated questions are answered from the wire cache: each copy still
/// echoes the asker's ID and letter case, shows TTLs extended by a
/// heartbeat, and a registration or removal is seen by the very next query.
#[tokio::test]
async fn repeated_questions_see_case_heartbeats_and_changes() {
    let sky = SkyDns::start(&[]).await;
    sky.client
        .add_service(
            "r1",
            &service("rails", "production", "east", "127.0.0.10", 80, 10),
        )
        .await
        .expect("add");
    for _ in 0..3 {
        assert_eq!(
            a_records(&sky.query(RAILS, RecordType::A).await),
            ["127.0.0.10"]
        );
    }
    for (id, asked) in [
        (1, "RAILS.production.skydns.local."),
        (2, "rails.PRODUCTION.skydns.local."),
        (3, "RaIlS.pRoDuCtIoN.SkYdNs.LoCaL."),
    ] {
        let mut q = query_message(asked, RecordType::A, None);
        q.metadata.id = id;
        let msg = udp_exchange(sky.dns, &q).await.expect("answer");
        assert_eq!(msg.metadata.id, id, "ID of this query");
        assert_eq!(
            msg.queries[0].name().to_ascii(),
            asked,
            "case of this query"
        );
        assert!(
            msg.answers.iter().all(|r| r.name.to_ascii() == asked),
            "owner in the case of this query: {:?}",
            msg.answers
        );
    }

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let t = sky.query(RAILS, RecordType::A).await.answers[0].ttl;
    assert!(t <= 8, "counted down from 10: {t}");
    sky.client.heartbeat("r1", 60).await.expect("heartbeat");
    let t = sky.query(RAILS, RecordType::A).await.answers[0].ttl;
    assert!((59..=60).contains(&t), "heartbeat seen at once: {t}");

    sky.client
        .add_service(
            "r2",
            &service("rails", "production", "west", "127.0.0.11", 80, 60),
        )
        .await
        .expect("add r2");
    let mut got = a_records(&sky.query(RAILS, RecordType::A).await);
    got.sort();
    assert_eq!(
        got,
        ["127.0.0.10", "127.0.0.11"],
        "registration seen at once"
    );
    sky.client.delete_service("r1").await.expect("remove");
    assert_eq!(
        a_records(&sky.query(RAILS, RecordType::A).await),
        ["127.0.0.11"],
        "removal seen at once"
    );
    sky.client.delete_service("r2").await.expect("remove");
    assert_nxdomain(&sky.query(RAILS, RecordType::A).await, "all removed");
}
