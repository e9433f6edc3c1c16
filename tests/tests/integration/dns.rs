//! The DNS side over the wire: names, wildcards, region priorities, glue,
//! PTR, apex records, NXDOMAIN vs NODATA, TTL countdown and expiry,
//! round-robin, truncation and TCP, EDNS, and protocol hygiene.

use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Edns, Message, MessageType, OpCode, Query, ResponseCode},
    rr::{Name, RData, Record, RecordType},
    serialize::binary::{BinDecodable, BinDecoder},
};
use skydns_tests::{
    Client, ClientError, Service, SkyDns, a_records, eventually, query_message, service,
    srv_records, tcp_query, udp_exchange, udp_raw, udp_raw_from,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const RAILS: &str = "rails.production.skydns.local.";

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap_or_else(|e| panic!("bad name {s}: {e}"))
}

/// The addresses of the answer section, in the order sent.
fn ordered_addrs(msg: &Message) -> Vec<IpAddr> {
    msg.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

fn has_soa(records: &[Record]) -> bool {
    records
        .iter()
        .any(|r| matches!(r.data, RData::SOA(_)) && r.name == name("skydns.local."))
}

fn assert_nxdomain(msg: &Message, what: &str) {
    assert_eq!(
        msg.metadata.response_code,
        ResponseCode::NXDomain,
        "{what}: {msg:?}"
    );
    assert!(msg.answers.is_empty(), "{what}: no answers");
    assert!(
        has_soa(&msg.authorities),
        "{what}: SOA in authority: {:?}",
        msg.authorities
    );
    assert!(msg.metadata.authoritative, "{what}: AA");
}

fn assert_nodata(msg: &Message, what: &str) {
    assert_eq!(
        msg.metadata.response_code,
        ResponseCode::NoError,
        "{what}: {msg:?}"
    );
    assert!(
        msg.answers.is_empty(),
        "{what}: no answers, got {:?}",
        msg.answers
    );
    assert!(
        has_soa(&msg.authorities),
        "{what}: SOA in authority: {:?}",
        msg.authorities
    );
    assert!(msg.metadata.authoritative, "{what}: AA");
}

fn readme(uuid_host: &str, region: &str, port: u16) -> Service {
    Service {
        name: "TestService".into(),
        version: "1.0.0".into(),
        environment: "Production".into(),
        region: region.into(),
        host: uuid_host.into(),
        port,
        ttl: 600,
        ..Service::default()
    }
}

async fn register_readme(client: &Client) {
    client
        .add_service("1001", &readme("web1.site.com", "East", 80))
        .await
        .expect("1001");
    client
        .add_service("1002", &readme("web2.site.com", "East", 8080))
        .await
        .expect("1002");
    client
        .add_service("1003", &readme("web3.site.com", "West", 9000))
        .await
        .expect("1003");
    client
        .add_service("1004", &readme("web4.site.com", "West", 8080))
        .await
        .expect("1004");
}

#[tokio::test]
async fn skydns_readme_srv_examples_get_v1_priorities_and_weights() {
    let sky = SkyDns::start(&[]).await;
    register_readme(&sky.client).await;

    let msg = sky
        .query("testservice.production.skydns.local.", RecordType::SRV)
        .await;
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
    assert!(msg.metadata.authoritative, "AA");
    assert_eq!(
        srv_records(&msg),
        [
            (10, 25, 80, "web1.site.com.".to_string()),
            (10, 25, 8080, "web2.site.com.".to_string()),
            (10, 25, 8080, "web4.site.com.".to_string()),
            (10, 25, 9000, "web3.site.com.".to_string()),
        ]
    );
    assert!(
        msg.answers.iter().all(|r| (590..=600).contains(&r.ttl)),
        "TTL is the remaining TTL"
    );
    assert!(
        msg.additionals
            .iter()
            .all(|r| !matches!(r.data, RData::A(_))),
        "hostname targets need no glue"
    );

    let msg = sky
        .query(
            "east.*.testservice.production.skydns.local.",
            RecordType::SRV,
        )
        .await;
    assert_eq!(
        srv_records(&msg),
        [
            (10, 50, 80, "web1.site.com.".to_string()),
            (10, 50, 8080, "web2.site.com.".to_string()),
            (20, 50, 8080, "web4.site.com.".to_string()),
            (20, 50, 9000, "web3.site.com.".to_string()),
        ]
    );

    sky.client
        .add_service("1005", &readme("web5.site.com", "West", 80))
        .await
        .expect("1005");
    let msg = sky
        .query("testservice.production.skydns.local.", RecordType::SRV)
        .await;
    let got = srv_records(&msg);
    assert_eq!(got.len(), 5);
    assert!(
        got.iter().all(|(p, w, _, _)| (*p, *w) == (10, 20)),
        "{got:?}"
    );

    let msg = sky
        .query(
            "east.*.testservice.production.skydns.local.",
            RecordType::SRV,
        )
        .await;
    let got = srv_records(&msg);
    let east: Vec<_> = got.iter().filter(|s| s.0 == 10).collect();
    let west: Vec<_> = got.iter().filter(|s| s.0 == 20).collect();
    assert_eq!(east.len(), 2, "{got:?}");
    assert!(
        east.iter()
            .all(|s| s.1 == 50 && ["web1.site.com.", "web2.site.com."].contains(&s.3.as_str()))
    );
    assert_eq!(west.len(), 3, "{got:?}");
    assert!(
        west.iter()
            .all(|s| s.1 == 33 && s.3 != "web1.site.com." && s.3 != "web2.site.com."),
        "{got:?}"
    );

    let msg = sky
        .query(
            "west.*.testservice.production.skydns.local.",
            RecordType::SRV,
        )
        .await;
    let got = srv_records(&msg);
    assert_eq!(
        got.iter().filter(|s| (s.0, s.1) == (10, 33)).count(),
        3,
        "{got:?}"
    );
    assert_eq!(
        got.iter().filter(|s| (s.0, s.1) == (20, 50)).count(),
        2,
        "{got:?}"
    );

    // A region nobody is in: everything is fail-over.
    let msg = sky
        .query(
            "north.*.testservice.production.skydns.local.",
            RecordType::SRV,
        )
        .await;
    let got = srv_records(&msg);
    assert_eq!(got.len(), 5, "every service answers, as fail-over: {got:?}");
    assert!(
        got.iter().all(|s| (s.0, s.1) == (20, 20)),
        "priority 20, the weight split five ways: {got:?}"
    );
}

#[tokio::test]
async fn a_and_aaaa_for_ip_hosts() {
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
            "r2",
            &service("rails", "production", "west", "127.0.0.11", 80, 60),
        )
        .await
        .expect("add");
    sky.client
        .add_service(
            "r3",
            &service("rails", "production", "west", "fd00::1", 80, 60),
        )
        .await
        .expect("add");
    sky.client
        .add_service(
            "r4",
            &service("rails", "production", "west", "web.example.com", 80, 60),
        )
        .await
        .expect("add");
    sky.client
        .add_service("v6", &service("only6", "production", "", "fd00::2", 80, 60))
        .await
        .expect("add");

    let msg = sky.query(RAILS, RecordType::A).await;
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
    assert!(msg.metadata.authoritative);
    assert_eq!(a_records(&msg), ["127.0.0.10", "127.0.0.11"]);
    assert!(
        msg.answers
            .iter()
            .all(|r| r.name == name(RAILS) && r.record_type() == RecordType::A)
    );

    let msg = sky.query(RAILS, RecordType::AAAA).await;
    assert_eq!(
        ordered_addrs(&msg),
        [IpAddr::V6("fd00::1".parse::<Ipv6Addr>().expect("v6"))]
    );

    let msg = sky
        .query("only6.production.skydns.local.", RecordType::AAAA)
        .await;
    assert_eq!(a_records(&msg), ["fd00::2"]);
    let msg = sky
        .query("only6.production.skydns.local.", RecordType::A)
        .await;
    assert_nodata(&msg, "A for a v6-only name");

    // Partial names: the environment alone, and the full name.
    let msg = sky.query("production.skydns.local.", RecordType::A).await;
    assert_eq!(a_records(&msg), ["127.0.0.10", "127.0.0.11"]);
    let msg = sky
        .query(
            "r1.127-0-0-10.east.1-0-0.rails.production.skydns.local.",
            RecordType::A,
        )
        .await;
    assert_eq!(a_records(&msg), ["127.0.0.10"]);
    let msg = sky
        .query("east.1-0-0.rails.production.skydns.local.", RecordType::A)
        .await;
    assert_eq!(a_records(&msg), ["127.0.0.10"]);

    // Over TCP too.
    let msg = sky.query_tcp(RAILS, RecordType::A).await;
    assert_eq!(a_records(&msg), ["127.0.0.10", "127.0.0.11"]);
}

#[tokio::test]
async fn srv_for_ip_hosts_targets_the_uuid_name_with_glue() {
    let sky = SkyDns::start(&[]).await;
    sky.client
        .add_service(
            "r1",
            &service("rails", "production", "east", "127.0.0.10", 8080, 60),
        )
        .await
        .expect("add");
    sky.client
        .add_service(
            "r6",
            &service("rails", "production", "east", "fd00::1", 8081, 60),
        )
        .await
        .expect("add");
    sky.client
        .add_service(
            "rh",
            &service("rails", "production", "east", "web1.site.com", 8082, 60),
        )
        .await
        .expect("add");

    let msg = sky.query(RAILS, RecordType::SRV).await;
    assert_eq!(
        srv_records(&msg),
        [
            (10, 33, 8080, "r1.skydns.local.".to_string()),
            (10, 33, 8081, "r6.skydns.local.".to_string()),
            (10, 33, 8082, "web1.site.com.".to_string()),
        ]
    );
    let glue: Vec<(String, String)> = msg
        .additionals
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some((r.name.to_ascii(), a.0.to_string())),
            RData::AAAA(a) => Some((r.name.to_ascii(), a.0.to_string())),
            _ => None,
        })
        .collect();
    assert!(
        glue.contains(&("r1.skydns.local.".into(), "127.0.0.10".into())),
        "{glue:?}"
    );
    assert!(
        glue.contains(&("r6.skydns.local.".into(), "fd00::1".into())),
        "{glue:?}"
    );
    assert_eq!(glue.len(), 2, "no glue for the hostname target: {glue:?}");

    let msg = sky.query("r1.skydns.local.", RecordType::A).await;
    assert_eq!(a_records(&msg), ["127.0.0.10"]);
    assert!(msg.metadata.authoritative);
    let msg = sky.query("R1.skydns.local.", RecordType::A).await;
    assert_eq!(
        a_records(&msg),
        ["127.0.0.10"],
        "uuid names are case-insensitive too"
    );
    let msg = sky.query("r6.skydns.local.", RecordType::AAAA).await;
    assert_eq!(a_records(&msg), ["fd00::1"]);
    let msg = sky.query("nosuchuuid.skydns.local.", RecordType::A).await;
    assert_nxdomain(&msg, "unknown uuid");
}

#[tokio::test]
async fn a_host_longer_than_a_label_is_registered_and_is_the_srv_target() {
    let sky = SkyDns::start(&[]).await;
    let host = "ip-10-0-0-1.a-very-long-internal-hostname.eu-west-1.compute.internal";
    assert!(host.len() > 63);
    sky.client
        .add_service("l1", &service("db", "production", "eu", host, 5432, 60))
        .await
        .expect("SkyDNS v1 accepts any valid hostname as Host");
    assert_eq!(sky.client.get_service("l1").await.expect("get").host, host);
    let target = format!("{host}.");
    for q in [
        "db.production.skydns.local.",
        "eu.*.db.production.skydns.local.",
        "l1.*.eu.*.db.production.skydns.local.",
    ] {
        let msg = sky.query(q, RecordType::SRV).await;
        assert_eq!(msg.metadata.response_code, ResponseCode::NoError, "{q}");
        assert_eq!(
            srv_records(&msg),
            [(10, 100, 5432, target.clone())],
            "{q}: the whole host name is the target"
        );
    }
    // Over 253 bytes it is no hostname: 400 naming Host, nothing stored.
    let too_long = format!("{}.example", vec!["x".repeat(62); 4].join("."));
    match sky
        .client
        .add_service(
            "l2",
            &service("db", "production", "eu", &too_long, 5432, 60),
        )
        .await
    {
        Err(ClientError::Rejected { field, .. }) => assert_eq!(field.as_deref(), Some("Host")),
        other => panic!("a 260-byte host: {other:?}"),
    }
    assert!(matches!(
        sky.client.get_service("l2").await,
        Err(ClientError::NotFound(_))
    ));
}

#[tokio::test]
async fn wildcards_match_any_label_at_any_position() {
    let sky = SkyDns::start(&[]).await;
    register_readme(&sky.client).await;
    let mut db = service("db", "staging", "east", "127.0.0.30", 5432, 600);
    db.version = "2.0".into();
    sky.client.add_service("2001", &db).await.expect("add");

    let targets = |msg: &Message| -> Vec<String> {
        let mut t: Vec<String> = srv_records(msg).into_iter().map(|s| s.3).collect();
        t.sort();
        t
    };
    let web =
        |ns: &[u8]| -> Vec<String> { ns.iter().map(|n| format!("web{n}.site.com.")).collect() };
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("*.testservice.production", web(&[1, 2, 3, 4])),
        ("any.testservice.production", web(&[1, 2, 3, 4])),
        ("testservice.*", web(&[1, 2, 3, 4])),
        ("testservice.any", web(&[1, 2, 3, 4])),
        ("*.*", {
            let mut v = web(&[1, 2, 3, 4]);
            v.insert(0, "2001.skydns.local.".into());
            v
        }),
        ("*.*.*.*.*.*", {
            let mut v = web(&[1, 2, 3, 4]);
            v.insert(0, "2001.skydns.local.".into());
            v
        }),
        (
            "*",
            vec!["2001.skydns.local.".to_string()]
                .into_iter()
                .chain(web(&[1, 2, 3, 4]))
                .collect(),
        ),
        ("1001.*.*.*.*.*", web(&[1])),
        ("*.web3-site-com.*.*.*.*", web(&[3])),
        ("web4-site-com.any.any.testservice.production", web(&[4])),
        ("east.*.*.*", {
            let mut v = web(&[1, 2, 3, 4]);
            v.insert(0, "2001.skydns.local.".into());
            v
        }),
        ("2-0.*.staging", vec!["2001.skydns.local.".to_string()]),
        (
            "1001.web1-site-com.east.1-0-0.testservice.production",
            web(&[1]),
        ),
    ];
    // Every case is tried before failing, so a failure lists all wrong ones.
    let mut wrong = Vec::new();
    for (q, want) in cases {
        let msg = sky
            .query(&format!("{q}.skydns.local."), RecordType::SRV)
            .await;
        let got = targets(&msg);
        if msg.metadata.response_code != ResponseCode::NoError || got != want {
            wrong.push(format!(
                "{q}: {} {got:?}, want NoError {want:?}",
                msg.metadata.response_code
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "wrong wildcard answers:\n{}",
        wrong.join("\n")
    );
    // `east.*.*.*`: the region asked for gets priority 10, others 20.
    let msg = sky.query("east.*.*.*.skydns.local.", RecordType::SRV).await;
    let got = srv_records(&msg);
    assert!(
        got.iter().filter(|s| s.0 == 10).all(|s| [
            "web1.site.com.",
            "web2.site.com.",
            "2001.skydns.local."
        ]
        .contains(&s.3.as_str())),
        "{got:?}"
    );
    assert_eq!(got.iter().filter(|s| s.0 == 20).count(), 2, "{got:?}");

    for q in [
        "*.nosuch.production",
        "*.*.*.*.*.*.*",
        "west.*.db.staging",
        "1001.*.*.*.*.staging",
    ] {
        let msg = sky
            .query(&format!("{q}.skydns.local."), RecordType::SRV)
            .await;
        if q == "west.*.db.staging" {
            // The region has none, but the service exists elsewhere: fail-over only.
            assert!(srv_records(&msg).iter().all(|s| s.0 == 20), "{q}: {msg:?}");
            continue;
        }
        assert_nxdomain(&msg, q);
    }
}

#[tokio::test]
async fn matching_is_case_insensitive_and_the_question_case_is_echoed() {
    let sky = SkyDns::start(&[]).await;
    sky.client
        .add_service(
            "r1",
            &service("Rails", "Production", "East", "127.0.0.10", 80, 60),
        )
        .await
        .expect("add");
    let asked = "RAILS.Production.SKYDNS.local.";
    let mut q = query_message(asked, RecordType::A, None);
    q.metadata.id = 0xBEEF;
    let msg = udp_exchange(sky.dns, &q).await.expect("answer");
    assert_eq!(msg.metadata.id, 0xBEEF, "query id echoed");
    assert_eq!(msg.metadata.message_type, MessageType::Response);
    assert_eq!(a_records(&msg), ["127.0.0.10"]);
    assert_eq!(msg.queries.len(), 1);
    assert_eq!(
        msg.queries[0].name().to_ascii(),
        asked,
        "question echoed with its letter case"
    );
    assert!(
        msg.answers.iter().all(|r| r.name.to_ascii() == asked),
        "answer owner keeps the case: {:?}",
        msg.answers
    );

    let msg = sky
        .query("rails.production.skydns.local.", RecordType::A)
        .await;
    assert_eq!(a_records(&msg), ["127.0.0.10"]);
    let asked = "EaSt.*.rAiLs.PRODUCTION.skydns.LOCAL.";
    let msg = sky.query(asked, RecordType::SRV).await;
    assert_eq!(
        srv_records(&msg),
        [(10, 100, 80, "r1.skydns.local.".to_string())]
    );
    assert!(msg.answers.iter().all(|r| r.name.to_ascii() == asked));
    let msg = sky
        .query_tcp(
            "R1.127-0-0-10.EAST.1-0-0.RAILS.PRODUCTION.SKYDNS.LOCAL.",
            RecordType::A,
        )
        .await;
    assert_eq!(a_records(&msg), ["127.0.0.10"]);
}

#[tokio::test]
async fn version_dots_become_hyphens() {
    let sky = SkyDns::start(&[]).await;
    sky.client
        .add_service(
            "v1",
            &service("rails", "production", "east", "127.0.0.10", 80, 60),
        )
        .await
        .expect("add");
    let mut v2 = service("rails", "production", "east", "127.0.0.11", 80, 60);
    v2.version = "2.1.0".into();
    sky.client.add_service("v2", &v2).await.expect("add");
    let msg = sky
        .query("1-0-0.rails.production.skydns.local.", RecordType::A)
        .await;
    assert_eq!(a_records(&msg), ["127.0.0.10"]);
    let msg = sky
        .query("2-1-0.rails.production.skydns.local.", RecordType::A)
        .await;
    assert_eq!(a_records(&msg), ["127.0.0.11"]);
    let msg = sky.query(RAILS, RecordType::A).await;
    assert_eq!(a_records(&msg), ["127.0.0.10", "127.0.0.11"]);
    assert_nxdomain(
        &sky.query("3-0-0.rails.production.skydns.local.", RecordType::A)
            .await,
        "unknown version",
    );
    // The host label is hyphenated too.
    let msg = sky
        .query(
            "127-0-0-11.*.*.rails.production.skydns.local.",
            RecordType::A,
        )
        .await;
    assert_eq!(a_records(&msg), ["127.0.0.11"]);
}

#[tokio::test]
async fn any_returns_addresses_and_srv() {
    let sky = SkyDns::start(&[]).await;
    sky.client
        .add_service(
            "r1",
            &service("rails", "production", "east", "127.0.0.10", 8080, 60),
        )
        .await
        .expect("add");
    sky.client
        .add_service(
            "r2",
            &service("rails", "production", "east", "fd00::1", 8080, 60),
        )
        .await
        .expect("add");
    let msg = sky.query(RAILS, RecordType::ANY).await;
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
    let types: HashSet<RecordType> = msg.answers.iter().map(Record::record_type).collect();
    assert!(types.contains(&RecordType::A), "{types:?}");
    assert!(types.contains(&RecordType::AAAA), "{types:?}");
    assert!(types.contains(&RecordType::SRV), "{types:?}");
    assert_eq!(a_records(&msg), ["127.0.0.10", "fd00::1"]);
    assert_eq!(srv_records(&msg).len(), 2);
}

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

async fn register_many(client: &Client, svc: &str, n: u8, third_octet: u8) {
    for i in 1..=n {
        let host = Ipv4Addr::new(127, 0, third_octet, i).to_string();
        client
            .add_service(
                &format!("{svc}{i}"),
                &service(svc, "prod", "", &host, 80, 300),
            )
            .await
            .expect("add");
    }
}

#[tokio::test]
async fn round_robin_by_default_varies_the_order() {
    let sky = SkyDns::start(&[]).await;
    register_many(&sky.client, "rr", 10, 1).await;
    let mut orders = HashSet::new();
    for _ in 0..30 {
        let msg = sky.query("rr.prod.skydns.local.", RecordType::A).await;
        let order = ordered_addrs(&msg);
        assert_eq!(order.len(), 10);
        orders.insert(order);
    }
    assert!(orders.len() >= 2, "30 answers, always the same order");
}

#[tokio::test]
async fn no_round_robin_gives_a_stable_order() {
    let sky = SkyDns::start(&["-no-round-robin"]).await;
    register_many(&sky.client, "rr", 10, 1).await;
    let mut orders = HashSet::new();
    for _ in 0..30 {
        let msg = sky.query("rr.prod.skydns.local.", RecordType::A).await;
        let order = ordered_addrs(&msg);
        assert_eq!(order.len(), 10);
        orders.insert(order);
    }
    assert_eq!(
        orders.len(),
        1,
        "stable order with -no-round-robin: {orders:?}"
    );
}

/// One length-prefixed exchange over TCP, raw bytes both ways.
async fn tcp_raw(server: std::net::SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(server).await.expect("connect");
    let len = u16::try_from(bytes.len()).expect("short query");
    stream.write_all(&len.to_be_bytes()).await.expect("write");
    stream.write_all(bytes).await.expect("write");
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await.expect("read length");
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut reply).await.expect("read");
    reply
}

#[tokio::test]
async fn every_owner_name_is_a_pointer_to_the_question() {
    let sky = SkyDns::start(&[]).await;
    register_many(&sky.client, "web", 10, 3).await;
    let asked = "Web.prod.skydns.local.";
    let question = 1 + 3 + 1 + 4 + 1 + 6 + 1 + 5 + 1 + 4; // labels, root, type, class
    let bytes = query_message(asked, RecordType::A, None)
        .to_vec()
        .expect("encode");
    // Twice over UDP (built, then copied from the wire cache), then over TCP.
    for round in 0..3 {
        let reply = if round < 2 {
            udp_raw(sky.dns, &bytes).await.expect("answer")
        } else {
            tcp_raw(sky.dns, &bytes).await
        };
        // Header, question, then 10 x (pointer 2 + type, class, TTL, length 10 + address 4).
        assert_eq!(
            reply.len(),
            12 + question + 10 * 16,
            "round {round}: {reply:?}"
        );
        for i in 0..10 {
            let at = 12 + question + i * 16;
            assert_eq!(reply[at..at + 2], [0xC0, 12], "round {round}, answer {i}");
        }
        let msg = Message::from_vec(&reply).expect("decode");
        assert!(msg.answers.iter().all(|r| r.name.to_ascii() == asked));
    }
}

#[tokio::test]
async fn large_answers_are_truncated_over_udp_and_complete_over_tcp() {
    let sky = SkyDns::start(&[]).await;
    register_many(&sky.client, "big", 60, 2).await;
    let q = "big.prod.skydns.local.";

    let udp = sky.query(q, RecordType::A).await;
    assert!(udp.metadata.truncation, "TC over UDP without EDNS");
    assert!(
        udp.answers.len() < 60,
        "{} answers in 512 bytes?",
        udp.answers.len()
    );
    let small = udp.answers.len();
    // Asked again: the truncated answer comes from the wire cache, the same
    // size, still marked TC, and round robin still varies which records fit.
    let mut subsets = HashSet::new();
    for _ in 0..30 {
        let again = sky.query(q, RecordType::A).await;
        assert!(again.metadata.truncation, "TC on a repeated question");
        assert_eq!(again.answers.len(), small);
        let mut got = a_records(&again);
        got.sort();
        subsets.insert(got);
    }
    assert!(
        subsets.len() > 1,
        "30 truncated answers, always the same records"
    );

    let tcp = sky.query_tcp(q, RecordType::A).await;
    assert!(!tcp.metadata.truncation, "no TC over TCP");
    assert_eq!(tcp.answers.len(), 60);
    let want: Vec<String> = (1..=60).map(|i| format!("127.0.2.{i}")).collect();
    let mut want = want;
    want.sort();
    assert_eq!(a_records(&tcp), want);

    let big = udp_exchange(sky.dns, &query_message(q, RecordType::A, Some(4096)))
        .await
        .expect("answer");
    assert!(
        big.answers.len() > small,
        "EDNS lets more fit: {} vs {small}",
        big.answers.len()
    );
    assert_eq!(big.answers.len(), 60, "60 A records fit in ~1 KB");
    assert!(!big.metadata.truncation);

    // A truncated answer ends where its last whole record does: no bytes of
    // the record that did not fit trail it (first built, then from the cache).
    let srv_query = query_message(q, RecordType::SRV, None)
        .to_vec()
        .expect("encode");
    for _ in 0..2 {
        let raw = udp_raw(sky.dns, &srv_query).await.expect("answer");
        let mut decoder = BinDecoder::new(&raw);
        let msg = Message::read(&mut decoder).expect("decodes");
        assert!(msg.metadata.truncation);
        assert!(
            decoder.is_empty(),
            "{} bytes after the message's {} records",
            raw.len() - decoder.index(),
            msg.answers.len() + msg.additionals.len()
        );
    }

    // SRV with glue does not fit: truncated over UDP, complete over TCP.
    let srv = udp_exchange(sky.dns, &query_message(q, RecordType::SRV, Some(1232)))
        .await
        .expect("answer");
    assert!(srv.metadata.truncation, "60 SRV + glue exceed 1232 bytes");
    let srv = tcp_query(sky.dns, &query_message(q, RecordType::SRV, None))
        .await
        .expect("tcp");
    assert_eq!(srv_records(&srv).len(), 60);
    assert!(!srv.metadata.truncation);
}

#[tokio::test]
async fn edns_is_echoed() {
    let sky = SkyDns::start(&[]).await;
    sky.client
        .add_service(
            "r1",
            &service("rails", "production", "east", "127.0.0.10", 80, 60),
        )
        .await
        .expect("add");
    let msg = udp_exchange(sky.dns, &query_message(RAILS, RecordType::A, Some(4096)))
        .await
        .expect("answer");
    let edns = msg.edns.as_ref().expect("OPT in the response");
    assert_eq!(edns.version(), 0);
    assert!(
        (512..=4096).contains(&edns.max_payload()),
        "our payload size {}",
        edns.max_payload()
    );
    assert_eq!(a_records(&msg), ["127.0.0.10"]);
    let msg = udp_exchange(
        sky.dns,
        &query_message("nosuch.skydns.local.", RecordType::A, Some(1232)),
    )
    .await
    .expect("answer");
    assert!(msg.edns.is_some(), "OPT on NXDOMAIN too");
    let msg = sky.query(RAILS, RecordType::A).await;
    assert!(msg.edns.is_none(), "no OPT when the query had none");
}

#[tokio::test]
async fn unknown_edns_version_is_badvers() {
    let sky = SkyDns::start(&[]).await;
    sky.client
        .add_service(
            "r1",
            &service("rails", "production", "east", "127.0.0.10", 80, 60),
        )
        .await
        .expect("add");
    let mut q = query_message(RAILS, RecordType::A, None);
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    edns.set_version(1);
    q.set_edns(edns);
    let msg = udp_exchange(sky.dns, &q).await.expect("answer");
    // BADVERS is extended rcode 16 (high bits in the OPT record); hickory
    // decodes 16 as BADSIG, the other name of the same number.
    assert_eq!(
        u16::from(msg.metadata.response_code),
        u16::from(ResponseCode::BADVERS),
        "{msg:?}"
    );
    assert!(msg.answers.is_empty());
    assert_eq!(
        msg.edns.as_ref().map(Edns::version),
        Some(0),
        "OPT with our version"
    );
}

#[tokio::test]
async fn zero_or_two_questions_are_formerr() {
    let sky = SkyDns::start(&[]).await;
    sky.client
        .add_service(
            "r1",
            &service("rails", "production", "east", "127.0.0.10", 80, 60),
        )
        .await
        .expect("add");
    let none = Message::new(4242, MessageType::Query, OpCode::Query);
    let msg = udp_exchange(sky.dns, &none).await.expect("answer");
    assert_eq!(msg.metadata.response_code, ResponseCode::FormErr);
    assert_eq!(msg.metadata.id, 4242);
    assert!(msg.answers.is_empty());

    let mut two = query_message(RAILS, RecordType::A, None);
    two.add_query(Query::query(name("r1.skydns.local."), RecordType::A));
    let msg = udp_exchange(sky.dns, &two).await.expect("answer");
    assert_eq!(msg.metadata.response_code, ResponseCode::FormErr);
    assert!(msg.answers.is_empty());
    let msg = tcp_query(sky.dns, &two).await.expect("answer over TCP");
    assert_eq!(msg.metadata.response_code, ResponseCode::FormErr);
}

#[tokio::test]
async fn opcodes_other_than_query_are_notimp() {
    let sky = SkyDns::start(&[]).await;
    sky.client
        .add_service(
            "r1",
            &service("rails", "production", "east", "127.0.0.10", 80, 60),
        )
        .await
        .expect("add");
    for op in [OpCode::Status, OpCode::Notify] {
        let mut m = Message::new(rand::random(), MessageType::Query, op);
        m.add_query(Query::query(name(RAILS), RecordType::A));
        let msg = udp_exchange(sky.dns, &m)
            .await
            .unwrap_or_else(|e| panic!("{op:?}: {e}"));
        assert_eq!(msg.metadata.response_code, ResponseCode::NotImp, "{op:?}");
        assert!(msg.answers.is_empty(), "{op:?}");
    }
}

#[tokio::test]
async fn zone_transfers_are_refused() {
    let sky = SkyDns::start(&[]).await;
    sky.client
        .add_service(
            "r1",
            &service("rails", "production", "east", "127.0.0.10", 80, 60),
        )
        .await
        .expect("add");
    let msg = tcp_query(
        sky.dns,
        &query_message("skydns.local.", RecordType::AXFR, None),
    )
    .await
    .expect("answer");
    assert_eq!(msg.metadata.response_code, ResponseCode::Refused);
    assert!(msg.answers.is_empty());
    let msg = tcp_query(
        sky.dns,
        &query_message("skydns.local.", RecordType::IXFR, None),
    )
    .await
    .expect("answer");
    assert_eq!(msg.metadata.response_code, ResponseCode::Refused);
    let msg = udp_exchange(
        sky.dns,
        &query_message("skydns.local.", RecordType::AXFR, None),
    )
    .await
    .expect("answer");
    assert_eq!(msg.metadata.response_code, ResponseCode::Refused);
}

#[tokio::test]
async fn responses_sent_to_the_server_are_ignored() {
    let sky = SkyDns::start(&[]).await;
    sky.client
        .add_service(
            "r1",
            &service("rails", "production", "east", "127.0.0.10", 80, 60),
        )
        .await
        .expect("add");
    let mut m = query_message(RAILS, RecordType::A, None);
    m.metadata.message_type = MessageType::Response;
    let bytes = m.to_vec().expect("encode");
    assert!(
        udp_raw(sky.dns, &bytes).await.is_none(),
        "a packet with QR=1 must get no answer"
    );
    // The same packet as a query is answered.
    let msg = sky.query(RAILS, RecordType::A).await;
    assert_eq!(a_records(&msg), ["127.0.0.10"]);
}

#[tokio::test]
async fn a_burst_of_garbage_neither_crashes_nor_stalls_the_server() {
    let sky = SkyDns::start(&[]).await;
    sky.client
        .add_service(
            "r1",
            &service("rails", "production", "east", "127.0.0.10", 80, 60),
        )
        .await
        .expect("add");
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    for i in 0..2000u32 {
        let len: usize = rand::random_range(0..512);
        let mut pkt: Vec<u8> = (0..len).map(|_| rand::random::<u8>()).collect();
        // A quarter look like queries (QR=0, opcode QUERY), to reach the parser and handler.
        if i % 4 == 0 && pkt.len() > 2 {
            pkt[2] &= 0x07;
        }
        let _ = sock.send_to(&pkt, sky.dns).await;
    }
    // Garbage over TCP too: bad lengths, truncated messages, abrupt closes.
    for _ in 0..20 {
        if let Ok(mut s) = TcpStream::connect(sky.dns).await {
            let len: usize = rand::random_range(0..300);
            let junk: Vec<u8> = (0..len).map(|_| rand::random::<u8>()).collect();
            let _ = s.write_all(&junk).await;
        }
    }
    // The burst overflows the server's socket buffer, so the kernel may drop
    // the next datagram or two whatever the server does: ask as a resolver
    // would, retrying briefly, and require a correct answer within 2 s.
    let start = Instant::now();
    let bytes = query_message(RAILS, RecordType::A, None)
        .to_vec()
        .expect("encode");
    let mut answer = None;
    while answer.is_none() && start.elapsed() < Duration::from_secs(2) {
        answer = udp_raw_from("127.0.0.1:0", sky.dns, &bytes, Duration::from_millis(200)).await;
    }
    let raw =
        answer.unwrap_or_else(|| panic!("no answer within {:?} after the burst", start.elapsed()));
    let msg = Message::from_vec(&raw).expect("decodable answer");
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_records(&msg), ["127.0.0.10"]);
    let msg = sky.query_tcp(RAILS, RecordType::SRV).await;
    assert_eq!(
        srv_records(&msg),
        [(10, 100, 80, "r1.skydns.local.".to_string())]
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "answers took {:?}",
        start.elapsed()
    );
    // And the API is still up.
    assert_eq!(
        sky.client.get_service("r1").await.expect("api alive").host,
        "127.0.0.10"
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
