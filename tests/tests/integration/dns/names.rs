//! Names and their answers: SkyDNS v1 priorities and weights, A/AAAA,
//! SRV with glue, long hosts, wildcards, case, dotted versions, ANY.

use std::{
    collections::HashSet,
    net::{IpAddr, Ipv6Addr},
};

use hickory_proto::{
    op::{Message, MessageType, ResponseCode},
    rr::{RData, Record, RecordType},
};
use skydns_tests::{
    ClientError, SkyDns, a_records, query_message, service, srv_records, udp_exchange,
};

use super::*;

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
