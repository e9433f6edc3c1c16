//! The zone itself: SOA and NS at the apex, PTR for registered IPs,
//! NXDOMAIN vs NODATA, the AA bit.

use std::time::Duration;

use hickory_proto::{
    op::ResponseCode,
    rr::{RData, RecordType},
};
use skydns_tests::{SkyDns, a_records, service};

use super::*;

#[tokio::test]
async fn ptr_answers_the_reverse_name_of_registered_ips() {
    let sky = SkyDns::start(&[]).await;
    sky.client
        .add_service(
            "r1",
            &service("rails", "production", "east", "127.0.0.10", 80, 60),
        )
        .await
        .expect("add");
    sky.client
        .add_service(
            "r6",
            &service("rails6", "production", "east", "fd00::1", 80, 60),
        )
        .await
        .expect("add");

    let msg = sky.query("10.0.0.127.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
    assert!(msg.metadata.authoritative);
    let ptrs: Vec<String> = msg
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::PTR(p) => Some(p.0.to_ascii()),
            _ => None,
        })
        .collect();
    assert_eq!(
        ptrs,
        ["r1.127-0-0-10.east.1-0-0.rails.production.skydns.local."]
    );
    assert!((55..=60).contains(&msg.answers[0].ttl));

    let nibbles: String = "fd000000000000000000000000000001"
        .chars()
        .rev()
        .map(|c| format!("{c}."))
        .collect();
    let msg = sky
        .query(&format!("{nibbles}ip6.arpa."), RecordType::PTR)
        .await;
    let ptrs: Vec<String> = msg
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::PTR(p) => Some(p.0.to_ascii()),
            _ => None,
        })
        .collect();
    assert_eq!(
        ptrs,
        ["r6.fd00--1.east.1-0-0.rails6.production.skydns.local."]
    );

    // Gone with the service.
    sky.client.delete_service("r1").await.expect("delete");
    let msg = sky.query("10.0.0.127.in-addr.arpa.", RecordType::PTR).await;
    assert!(msg.answers.is_empty(), "no PTR after delete: {msg:?}");
}

#[tokio::test]
async fn soa_and_ns_at_the_apex() {
    let sky = SkyDns::start(&[]).await;
    let msg = sky.query("skydns.local.", RecordType::SOA).await;
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
    assert!(msg.metadata.authoritative);
    assert_eq!(msg.answers.len(), 1, "{msg:?}");
    let RData::SOA(soa) = &msg.answers[0].data else {
        panic!("not a SOA: {msg:?}")
    };
    assert_eq!(msg.answers[0].name, name("skydns.local."));
    assert_eq!(soa.mname, name("ns1.skydns.local."));
    assert_eq!(soa.rname, name("hostmaster.skydns.local."));
    let serial = soa.serial;
    assert!(serial > 0);

    tokio::time::sleep(Duration::from_millis(10)).await;
    sky.client
        .add_service(
            "r1",
            &service("rails", "production", "east", "127.0.0.10", 80, 60),
        )
        .await
        .expect("add");
    let msg = sky.query("SKYDNS.local.", RecordType::SOA).await;
    let RData::SOA(soa) = &msg.answers[0].data else {
        panic!("not a SOA: {msg:?}")
    };
    assert!(
        soa.serial > serial,
        "serial grows with a change: {} -> {}",
        serial,
        soa.serial
    );

    let msg = sky.query_tcp("skydns.local.", RecordType::NS).await;
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
    assert!(msg.metadata.authoritative);
    let ns: Vec<String> = msg
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::NS(n) => Some(n.0.to_ascii()),
            _ => None,
        })
        .collect();
    assert_eq!(ns, ["ns1.skydns.local."]);
    let glue: Vec<String> = msg
        .additionals
        .iter()
        .filter(|r| r.name == name("ns1.skydns.local."))
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(glue, ["127.0.0.1"], "the name server's address as glue");
    let msg = sky.query("ns1.skydns.local.", RecordType::A).await;
    assert_eq!(a_records(&msg), ["127.0.0.1"]);

    let msg = sky.query("skydns.local.", RecordType::TXT).await;
    assert_nodata(&msg, "TXT at the apex");
}

#[tokio::test]
async fn unknown_names_under_the_domain_are_nxdomain_with_the_soa() {
    let sky = SkyDns::start(&[]).await;
    sky.client
        .add_service(
            "r1",
            &service("rails", "production", "east", "127.0.0.10", 80, 60),
        )
        .await
        .expect("add");
    for (q, t) in [
        ("nosuch.production.skydns.local.", RecordType::A),
        ("nosuch.production.skydns.local.", RecordType::SRV),
        ("staging.skydns.local.", RecordType::A),
        ("rails.staging.skydns.local.", RecordType::TXT),
        ("2-0-0.rails.production.skydns.local.", RecordType::A),
        (
            "x.r1.127-0-0-10.east.1-0-0.rails.production.skydns.local.",
            RecordType::A,
        ),
    ] {
        let msg = sky.query(q, t).await;
        assert_nxdomain(&msg, q);
        assert_eq!(
            msg.queries.first().map(|x| x.name().to_ascii()),
            Some(q.to_string()),
            "question echoed"
        );
    }
    let msg = sky
        .query_tcp("nosuch.production.skydns.local.", RecordType::A)
        .await;
    assert_nxdomain(&msg, "over TCP");
}

#[tokio::test]
async fn existing_name_with_another_type_is_nodata() {
    let sky = SkyDns::start(&[]).await;
    sky.client
        .add_service(
            "r1",
            &service("rails", "production", "east", "127.0.0.10", 80, 60),
        )
        .await
        .expect("add");
    for t in [
        RecordType::TXT,
        RecordType::MX,
        RecordType::AAAA,
        RecordType::CNAME,
    ] {
        let msg = sky.query(RAILS, t).await;
        assert_nodata(&msg, &format!("{t}"));
    }
    assert_nodata(
        &sky.query("production.skydns.local.", RecordType::TXT).await,
        "partial name, TXT",
    );
    // The name exists with A: not NXDOMAIN.
    assert_eq!(
        a_records(&sky.query(RAILS, RecordType::A).await),
        ["127.0.0.10"]
    );
}

#[tokio::test]
async fn answers_are_authoritative() {
    let sky = SkyDns::start(&[]).await;
    sky.client
        .add_service(
            "r1",
            &service("rails", "production", "east", "127.0.0.10", 80, 60),
        )
        .await
        .expect("add");
    for (q, t) in [
        (RAILS, RecordType::A),
        (RAILS, RecordType::SRV),
        ("skydns.local.", RecordType::SOA),
        ("r1.skydns.local.", RecordType::A),
        ("nosuch.skydns.local.", RecordType::A),
    ] {
        let msg = sky.query(q, t).await;
        assert!(msg.metadata.authoritative, "AA for {q} {t}");
        assert!(!msg.metadata.truncation, "{q} {t}");
    }
}
