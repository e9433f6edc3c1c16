//! The REST registry over the wire: status codes, JSON bodies, validation,
//! heartbeats, listing, callbacks delivered to a listener the test runs, the
//! secret, NoExpire, metrics, health and TLS.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use hickory_proto::{op::ResponseCode, rr::RecordType};
use serde_json::{Value, json};
use skydns_tests::{
    Callback, Client, ClientError, HttpReply, Service, SkyDns, a_records, eventually, http, service,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    sync::mpsc,
};

const RAILS: &str = "rails.production.skydns.local.";

fn body(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("json")
}

async fn req(sky: &SkyDns, method: &str, path: &str, b: Option<&Value>) -> HttpReply {
    let bytes = b.map(body);
    http(sky.http, method, path, &[], bytes.as_deref())
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

fn rails(host: &str) -> Value {
    json!({"Name":"rails","Version":"1.0.0","Environment":"production","Region":"east","Host":host,"Port":80,"TTL":60})
}

/// Asserts a 400 whose JSON body is `{"error": <non-empty>, "field": field}`.
fn assert_bad_field(r: &HttpReply, field: &str, what: &str) {
    assert_eq!(r.status, 400, "{what}: {}", r.text());
    let j = r.json();
    assert!(
        j["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: error message in {j}"
    );
    assert_eq!(j["field"], field, "{what}: field named in {j}");
}

#[tokio::test]
async fn put_is_201_and_the_same_uuid_again_is_409_changing_nothing() {
    let sky = SkyDns::start(&[]).await;
    let r = req(
        &sky,
        "PUT",
        "/skydns/services/1001",
        Some(&rails("127.0.0.10")),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = req(
        &sky,
        "PUT",
        "/skydns/services/1001",
        Some(&rails("127.0.0.99")),
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(
        r.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("1001")),
        "{}",
        r.text()
    );
    assert!(matches!(
        sky.client
            .add_service(
                "1001",
                &service("rails", "production", "east", "127.0.0.99", 80, 60)
            )
            .await,
        Err(ClientError::Conflict(_))
    ));
    let got = sky.client.get_service("1001").await.expect("still there");
    assert_eq!(got.host, "127.0.0.10");
    assert_eq!(
        a_records(&sky.query(RAILS, RecordType::A).await),
        ["127.0.0.10"]
    );
}

/// Concurrent PUTs of one uuid (with the embedded store, so they wait on the
/// disk together): exactly one wins, the others are 409, and the stored and
/// served service is the winner's.
#[tokio::test]
async fn concurrent_puts_of_one_uuid_let_exactly_one_win() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf8 path");
    let sky = SkyDns::spawn(&["-data", data]).await;
    let mut expected = std::collections::BTreeMap::new();
    for round in 0..5 {
        let uuid = format!("race-{round}");
        let mut racers = tokio::task::JoinSet::new();
        for i in 0..16u8 {
            let (client, uuid) = (sky.client.clone(), uuid.clone());
            racers.spawn(async move {
                let host = format!("127.0.5.{}", i + 1);
                let svc = service("race", "production", "", &host, 80, 3600);
                (host, client.add_service(&uuid, &svc).await)
            });
        }
        let mut winners = Vec::new();
        while let Some(done) = racers.join_next().await {
            let (host, result) = done.expect("racer");
            match result {
                Ok(()) => winners.push(host),
                Err(ClientError::Conflict(_)) => {}
                Err(e) => panic!("PUT {uuid}: unexpected {e}"),
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "exactly one PUT of {uuid} wins: {winners:?}"
        );
        let got = sky.client.get_service(&uuid).await.expect("registered");
        assert_eq!(got.host, winners[0]);
        expected.insert(uuid, got.host);
    }
    assert!(sky.stop().await, "SIGTERM exits cleanly");
    let sky = SkyDns::spawn(&["-data", data]).await;
    let stored: std::collections::BTreeMap<String, String> = sky
        .client
        .list_services(None)
        .await
        .expect("list")
        .into_iter()
        .map(|s| (s.uuid, s.host))
        .collect();
    assert_eq!(stored, expected, "the winners, and only they, were stored");
    assert!(
        !sky.log().contains("not closed cleanly"),
        "SIGTERM closes the store cleanly: {}",
        sky.log()
    );
}

#[tokio::test]
async fn missing_host_or_port_is_400_naming_the_field() {
    let sky = SkyDns::start(&[]).await;
    let no_host = json!({"Name":"rails","Environment":"production","Port":80,"TTL":60});
    let r = req(&sky, "PUT", "/skydns/services/a1", Some(&no_host)).await;
    assert_bad_field(&r, "Host", "missing Host");
    let no_port = json!({"Name":"rails","Environment":"production","Host":"127.0.0.10","TTL":60});
    let r = req(&sky, "PUT", "/skydns/services/a2", Some(&no_port)).await;
    assert_bad_field(&r, "Port", "missing Port");
    // The typed client sees the field as well.
    let err = sky
        .client
        .add_service("a3", &service("rails", "production", "", "", 80, 60))
        .await
        .expect_err("empty host");
    assert!(
        matches!(&err, ClientError::Rejected { status: 400, field: Some(f), .. } if f == "Host"),
        "{err:?}"
    );
    for id in ["a1", "a2", "a3"] {
        let r = req(&sky, "GET", &format!("/skydns/services/{id}"), None).await;
        assert_eq!(r.status, 404, "{id} must not exist");
    }
}

#[tokio::test]
async fn invalid_fields_are_400_naming_the_field_and_register_nothing() {
    let sky = SkyDns::start(&[]).await;
    let base = rails("127.0.0.10");
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let long = "x".repeat(60);
    let cases: Vec<(&str, Value, &str)> = vec![
        ("Port 70000", with("Port", json!(70000)), "Port"),
        ("Port 0", with("Port", json!(0)), "Port"),
        ("Port as a string", with("Port", json!("80")), "Port"),
        ("TTL 0 without NoExpire", with("TTL", json!(0)), "TTL"),
        ("negative TTL", with("TTL", json!(-5)), "TTL"),
        ("Name with a space", with("Name", json!("a b")), "Name"),
        (
            "Region with a slash",
            with("Region", json!("ea/st")),
            "Region",
        ),
        (
            "Environment is a wildcard",
            with("Environment", json!("*")),
            "Environment",
        ),
        (
            "Name label over 63 bytes",
            with("Name", json!("n".repeat(64))),
            "Name",
        ),
        (
            "Host that is no hostname",
            with("Host", json!("bad host!")),
            "Host",
        ),
    ];
    for (i, (what, b, field)) in cases.iter().enumerate() {
        let r = req(&sky, "PUT", &format!("/skydns/services/bad{i}"), Some(b)).await;
        assert_bad_field(&r, field, what);
        let r = req(&sky, "GET", &format!("/skydns/services/bad{i}"), None).await;
        assert_eq!(r.status, 404, "{what}: a rejected PUT registers nothing");
    }

    // A whole name over 253 bytes, though each label is fine.
    let too_long = json!({"Name":long,"Version":long,"Environment":long,"Region":long,
        "Host":"127.0.0.10","Port":80,"TTL":60});
    let r = req(&sky, "PUT", "/skydns/services/longname", Some(&too_long)).await;
    assert_eq!(r.status, 400, "{}", r.text());
    let field = r.json()["field"].as_str().unwrap_or_default().to_string();
    assert!(
        ["Name", "Version", "Environment", "Region"].contains(&field.as_str()),
        "field named: {}",
        r.text()
    );
    assert!(
        r.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("253")),
        "{}",
        r.text()
    );

    // A uuid that is no DNS label.
    let r = req(&sky, "PUT", "/skydns/services/a.b", Some(&base)).await;
    assert_bad_field(&r, "UUID", "uuid with a dot");

    // TTL 0 is fine with NoExpire.
    let r = req(
        &sky,
        "PUT",
        "/skydns/services/forever",
        Some(&with("NoExpire", json!(true)).clone()),
    )
    .await;
    assert_eq!(r.status, 201, "NoExpire with TTL 60: {}", r.text());
    let mut zero = with("TTL", json!(0));
    zero["NoExpire"] = json!(true);
    zero["Name"] = json!("other");
    let r = req(&sky, "PUT", "/skydns/services/forever0", Some(&zero)).await;
    assert_eq!(r.status, 201, "NoExpire with TTL 0: {}", r.text());

    // Nothing rejected reached the registry or DNS.
    let all = sky.client.list_services(None).await.expect("list");
    let mut ids: Vec<String> = all.into_iter().map(|s| s.uuid).collect();
    ids.sort();
    assert_eq!(ids, ["forever", "forever0"]);
}

#[tokio::test]
async fn malformed_json_is_400() {
    let sky = SkyDns::start(&[]).await;
    for raw in [&b"{\"Name\":"[..], b"not json", b"[1,2]", b""] {
        let r = http(sky.http, "PUT", "/skydns/services/m1", &[], Some(raw))
            .await
            .expect("answer");
        assert_eq!(
            r.status,
            400,
            "{:?}: {}",
            String::from_utf8_lossy(raw),
            r.text()
        );
        assert!(
            r.json()["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{}",
            r.text()
        );
    }
    let r = http(
        sky.http,
        "PATCH",
        "/skydns/services/m1",
        &[],
        Some(b"{oops"),
    )
    .await
    .expect("answer");
    assert!(matches!(r.status, 400 | 404), "{}", r.status);
    assert_eq!(
        req(&sky, "GET", "/skydns/services/m1", None).await.status,
        404
    );
}

#[tokio::test]
async fn body_over_64_kib_is_413_and_changes_nothing() {
    let sky = SkyDns::start(&[]).await;
    let mut big = rails("127.0.0.10");
    big["Padding"] = json!("p".repeat(70 * 1024));
    let bytes = body(&big);
    assert!(bytes.len() > 64 * 1024);
    let r = http(sky.http, "PUT", "/skydns/services/big", &[], Some(&bytes))
        .await
        .expect("answer");
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(
        r.text().contains("\"field\":\"body\""),
        "413 carries the JSON error: {}",
        r.text()
    );
    let missing = req(&sky, "GET", "/skydns/services/big", None).await;
    assert_eq!(missing.status, 404);
    let nowhere = req(&sky, "GET", "/no/such/route", None).await;
    assert_eq!(nowhere.status, 404);
    assert!(
        nowhere.text().contains("\"error\""),
        "404 carries the JSON error: {}",
        nowhere.text()
    );
    // Just under the limit is fine (unknown fields are ignored, as in v1).
    big["Padding"] = json!("p".repeat(60 * 1024));
    let r = req(&sky, "PUT", "/skydns/services/big", Some(&big)).await;
    assert_eq!(r.status, 201, "{}", r.text());
}

#[tokio::test]
async fn a_rejected_request_leaves_the_existing_service_unchanged() {
    let sky = SkyDns::start(&[]).await;
    assert_eq!(
        req(
            &sky,
            "PUT",
            "/skydns/services/1001",
            Some(&rails("127.0.0.10"))
        )
        .await
        .status,
        201
    );
    let before = req(&sky, "GET", "/skydns/services/1001", None).await.json();

    let mut bad = rails("127.0.0.99");
    bad["Port"] = json!(70000);
    assert_bad_field(
        &req(&sky, "PUT", "/skydns/services/1001", Some(&bad)).await,
        "Port",
        "bad port on existing uuid",
    );
    let r = req(
        &sky,
        "PATCH",
        "/skydns/services/1001",
        Some(&json!({"TTL": 0})),
    )
    .await;
    assert_bad_field(&r, "TTL", "heartbeat TTL 0");
    let r = req(
        &sky,
        "PATCH",
        "/skydns/services/1001",
        Some(&json!({"TTL": "soon"})),
    )
    .await;
    assert_bad_field(&r, "TTL", "heartbeat TTL string");
    let r = req(&sky, "PATCH", "/skydns/services/1001", Some(&json!({}))).await;
    assert_bad_field(&r, "TTL", "heartbeat without TTL");

    let after = req(&sky, "GET", "/skydns/services/1001", None).await.json();
    for k in [
        "UUID",
        "Name",
        "Version",
        "Environment",
        "Region",
        "Host",
        "Port",
        "Expires",
    ] {
        assert_eq!(before[k], after[k], "{k} changed");
    }
    assert_eq!(
        a_records(&sky.query(RAILS, RecordType::A).await),
        ["127.0.0.10"]
    );
}

#[tokio::test]
async fn get_is_200_with_the_service_json_and_404_when_unknown() {
    let sky = SkyDns::start(&[]).await;
    let sent = json!({"Name":"TestService","Version":"1.0.0","Environment":"Production","Region":"Test",
        "Host":"web1.site.com","Port":9000,"TTL":60});
    assert_eq!(
        req(&sky, "PUT", "/skydns/services/1001", Some(&sent))
            .await
            .status,
        201
    );
    let r = req(&sky, "GET", "/skydns/services/1001", None).await;
    assert_eq!(r.status, 200);
    let j = r.json();
    for k in ["Name", "Version", "Environment", "Region", "Host", "Port"] {
        assert_eq!(j[k], sent[k], "{k} in {j}");
    }
    assert_eq!(j["UUID"], "1001");
    let ttl = j["TTL"].as_u64().expect("TTL");
    assert!((58..=60).contains(&ttl), "remaining TTL {ttl}");
    assert!(
        j["Expires"].as_str().is_some_and(|e| e.len() >= 20),
        "Expires in {j}"
    );

    let r = req(&sky, "GET", "/skydns/services/nope", None).await;
    assert_eq!(r.status, 404);
    assert!(
        r.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("nope")),
        "{}",
        r.text()
    );
    assert!(matches!(
        sky.client.get_service("nope").await,
        Err(ClientError::NotFound(_))
    ));
}

#[tokio::test]
async fn heartbeat_is_200_extends_the_life_and_404_when_unknown() {
    let sky = SkyDns::start(&[]).await;
    sky.client
        .add_service(
            "hb",
            &service("rails", "production", "east", "127.0.0.10", 80, 2),
        )
        .await
        .expect("add");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let r = req(
        &sky,
        "PATCH",
        "/skydns/services/hb",
        Some(&json!({"TTL": 30})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Well past the original two seconds: still alive, with the new TTL.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let got = sky
        .client
        .get_service("hb")
        .await
        .expect("alive after heartbeat");
    assert!(
        (27..=30).contains(&got.ttl),
        "TTL after heartbeat {}",
        got.ttl
    );
    let msg = sky.query(RAILS, RecordType::A).await;
    assert_eq!(a_records(&msg), ["127.0.0.10"]);
    assert!(
        msg.answers.iter().all(|r| r.ttl >= 27),
        "DNS TTL follows the heartbeat"
    );

    let r = req(
        &sky,
        "PATCH",
        "/skydns/services/unknown",
        Some(&json!({"TTL": 30})),
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(matches!(
        sky.client.heartbeat("unknown", 30).await,
        Err(ClientError::NotFound(_))
    ));

    // A service that expired cannot be revived by a late heartbeat.
    sky.client
        .add_service(
            "late",
            &service("late", "production", "", "127.0.0.11", 80, 1),
        )
        .await
        .expect("add");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(matches!(
        sky.client.heartbeat("late", 30).await,
        Err(ClientError::NotFound(_))
    ));
}

#[tokio::test]
async fn delete_is_200_then_404_and_the_name_leaves_dns() {
    let sky = SkyDns::start(&[]).await;
    sky.client
        .add_service(
            "d1",
            &service("rails", "production", "east", "127.0.0.10", 80, 60),
        )
        .await
        .expect("add");
    sky.client
        .add_service(
            "d2",
            &service("rails", "production", "east", "127.0.0.11", 80, 60),
        )
        .await
        .expect("add");
    let r = req(&sky, "DELETE", "/skydns/services/d1", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = req(&sky, "DELETE", "/skydns/services/d1", None).await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(
        req(&sky, "GET", "/skydns/services/d1", None).await.status,
        404
    );
    assert_eq!(
        a_records(&sky.query(RAILS, RecordType::A).await),
        ["127.0.0.11"]
    );
    sky.client.delete_service("d2").await.expect("delete");
    let msg = sky.query(RAILS, RecordType::A).await;
    assert_eq!(msg.metadata.response_code, ResponseCode::NXDomain);
    // The uuid is free again.
    let r = req(
        &sky,
        "PUT",
        "/skydns/services/d1",
        Some(&rails("127.0.0.12")),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        a_records(&sky.query(RAILS, RecordType::A).await),
        ["127.0.0.12"]
    );
}

async fn register_readme_services(client: &Client) {
    let svc = |version: &str, region: &str, host: &str, port: u16| Service {
        name: "TestService".into(),
        version: version.into(),
        environment: "Production".into(),
        region: region.into(),
        host: host.into(),
        port,
        ttl: 600,
        ..Service::default()
    };
    client
        .add_service("1001", &svc("1.0.0", "East", "web1.site.com", 80))
        .await
        .expect("1001");
    client
        .add_service("1002", &svc("1.0.0", "East", "web2.site.com", 8080))
        .await
        .expect("1002");
    client
        .add_service("1003", &svc("1.0.0", "West", "web3.site.com", 9000))
        .await
        .expect("1003");
    client
        .add_service("1004", &svc("2.0.0", "West", "web4.site.com", 8080))
        .await
        .expect("1004");
    let mut staging = svc("1.0.0", "East", "10.0.0.5", 80);
    staging.environment = "Staging".into();
    client.add_service("1005", &staging).await.expect("1005");
}

fn uuids(list: &[Service]) -> Vec<&str> {
    list.iter().map(|s| s.uuid.as_str()).collect()
}

#[tokio::test]
async fn list_shows_all_and_filters_with_a_dns_style_query() {
    let sky = SkyDns::start(&[]).await;
    let r = req(&sky, "GET", "/skydns/services/", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!([]));
    register_readme_services(&sky.client).await;

    let r = req(&sky, "GET", "/skydns/services/", None).await;
    assert_eq!(r.status, 200);
    let all: Vec<Service> = serde_json::from_slice(&r.body).expect("list of services");
    assert_eq!(uuids(&all), ["1001", "1002", "1003", "1004", "1005"]);
    assert_eq!(all[0].host, "web1.site.com");

    let c = &sky.client;
    let east = c
        .list_services(Some("east.*.testservice.production"))
        .await
        .expect("list");
    assert_eq!(uuids(&east), ["1001", "1002"]);
    let prod = c
        .list_services(Some("testservice.production"))
        .await
        .expect("list");
    assert_eq!(uuids(&prod), ["1001", "1002", "1003", "1004"]);
    let v2 = c
        .list_services(Some("2-0-0.testservice.production"))
        .await
        .expect("list");
    assert_eq!(uuids(&v2), ["1004"]);
    let staging = c.list_services(Some("staging")).await.expect("list");
    assert_eq!(uuids(&staging), ["1005"]);
    let any_env = c
        .list_services(Some("east.any.testservice.*"))
        .await
        .expect("list");
    assert_eq!(uuids(&any_env), ["1001", "1002", "1005"]);
    let with_domain = c
        .list_services(Some("West.*.TestService.Production.skydns.local."))
        .await
        .expect("list");
    assert_eq!(uuids(&with_domain), ["1003", "1004"]);
    let none = c
        .list_services(Some("north.*.testservice.production"))
        .await
        .expect("list");
    assert!(none.is_empty(), "{none:?}");
}

#[tokio::test]
async fn regions_and_environments_are_counted() {
    let sky = SkyDns::start(&[]).await;
    register_readme_services(&sky.client).await;
    let r = req(&sky, "GET", "/skydns/regions/", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"East": 3, "West": 2}));
    let r = req(&sky, "GET", "/skydns/environments/", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"Production": 4, "Staging": 1}));
    sky.client.delete_service("1005").await.expect("delete");
    let envs = sky.client.environments().await.expect("environments");
    assert_eq!(envs.get("Production"), Some(&4));
    assert_eq!(envs.get("Staging"), None);
    let regions = sky.client.regions().await.expect("regions");
    assert_eq!(regions.get("East"), Some(&2));
}

/// What a callback listener received.
#[derive(Debug)]
struct Received {
    method: String,
    path: String,
    body: Vec<u8>,
}

/// A tiny HTTP listener on 127.0.0.1: records each request and answers 200.
async fn callback_listener() -> (u16, mpsc::UnboundedReceiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break p;
                    }
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                while buf.len() < head_end + 4 + len {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let mut first = head.lines().next().unwrap_or_default().split_whitespace();
                let method = first.next().unwrap_or_default().to_string();
                let path = first.next().unwrap_or_default().to_string();
                let body = buf.get(head_end + 4..).unwrap_or_default().to_vec();
                let _ = sock
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .await;
                let _ = tx.send(Received { method, path, body });
            });
        }
    });
    (port, rx)
}

async fn next_callback(rx: &mut mpsc::UnboundedReceiver<Received>, within: Duration) -> Received {
    tokio::time::timeout(within, rx.recv())
        .await
        .expect("callback delivered in time")
        .expect("listener alive")
}

fn callback_for(name: &str, port: u16) -> Callback {
    Callback {
        name: name.into(),
        version: "1.0.0".into(),
        environment: "production".into(),
        region: "east".into(),
        reply: "127.0.0.1".into(),
        port,
        ..Callback::default()
    }
}

#[tokio::test]
async fn callback_is_delivered_when_its_service_is_deleted() {
    let sky = SkyDns::start(&[]).await;
    let (port, mut rx) = callback_listener().await;
    sky.client
        .add_service(
            "s1",
            &service("rails", "production", "east", "127.0.0.10", 8080, 60),
        )
        .await
        .expect("add");
    let cb = json!({"Name":"rails","Version":"1.0.0","Environment":"production","Region":"east",
        "Reply":"127.0.0.1","Port":port});
    let r = req(&sky, "PUT", "/skydns/callbacks/cb1", Some(&cb)).await;
    assert_eq!(r.status, 201, "{}", r.text());
    // Nothing is sent before the service goes.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), rx.recv())
            .await
            .is_err(),
        "no early callback"
    );

    assert_eq!(
        req(&sky, "DELETE", "/skydns/services/s1", None)
            .await
            .status,
        200
    );
    let got = next_callback(&mut rx, Duration::from_secs(5)).await;
    assert_eq!(got.method, "DELETE");
    assert_eq!(got.path, "/skydns/callbacks/cb1");
    let svc: Value = serde_json::from_slice(&got.body).expect("service JSON in the callback body");
    assert_eq!(svc["UUID"], "s1", "{svc}");
    assert_eq!(svc["Name"], "rails");
    assert_eq!(svc["Host"], "127.0.0.10");
    assert_eq!(svc["Port"], 8080);
    assert_eq!(svc["Region"], "east");
    // Exactly once.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), rx.recv())
            .await
            .is_err(),
        "one delivery only"
    );
}

#[tokio::test]
async fn callback_is_delivered_when_its_service_expires() {
    let sky = SkyDns::start(&[]).await;
    let (port, mut rx) = callback_listener().await;
    sky.client
        .add_service(
            "e1",
            &service("web", "production", "east", "127.0.0.20", 80, 2),
        )
        .await
        .expect("add");
    sky.client
        .add_service(
            "e2",
            &service("web", "production", "west", "127.0.0.21", 80, 60),
        )
        .await
        .expect("add");
    // Matches e1 only (region east).
    sky.client
        .add_callback("cb-exp", &callback_for("web", port))
        .await
        .expect("callback");
    let started = Instant::now();
    let got = next_callback(&mut rx, Duration::from_secs(5)).await;
    assert!(
        started.elapsed() < Duration::from_millis(3000),
        "fired at expiry, took {:?}",
        started.elapsed()
    );
    assert_eq!(got.method, "DELETE");
    assert_eq!(got.path, "/skydns/callbacks/cb-exp");
    let svc: Value = serde_json::from_slice(&got.body).expect("service JSON");
    assert_eq!(svc["UUID"], "e1", "{svc}");
    assert_eq!(svc["Host"], "127.0.0.20");
    assert!(matches!(
        sky.client.get_service("e1").await,
        Err(ClientError::NotFound(_))
    ));
    assert!(sky.client.get_service("e2").await.is_ok());
}

#[tokio::test]
async fn callback_matching_no_service_is_404() {
    let sky = SkyDns::start(&[]).await;
    let (port, _rx) = callback_listener().await;
    let r = req(
        &sky,
        "PUT",
        "/skydns/callbacks/cbx",
        Some(&serde_json::to_value(callback_for("nosuch", port)).expect("json")),
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.text());
    sky.client
        .add_service(
            "s1",
            &service("rails", "production", "west", "127.0.0.10", 80, 60),
        )
        .await
        .expect("add");
    // Same name, other region: still no match.
    let err = sky
        .client
        .add_callback("cbx", &callback_for("rails", port))
        .await
        .expect_err("no match");
    assert!(matches!(err, ClientError::NotFound(_)), "{err:?}");
    // A callback without Reply is rejected.
    let r = req(
        &sky,
        "PUT",
        "/skydns/callbacks/cby",
        Some(&json!({"Name":"rails","Port":port})),
    )
    .await;
    assert_bad_field(&r, "Reply", "callback without Reply");
}

#[tokio::test]
async fn callbacks_are_bounded_per_service_and_per_callback() {
    let sky = SkyDns::start(&[]).await;
    sky.client
        .add_service(
            "s1",
            &service("rails", "production", "east", "127.0.0.10", 80, 60),
        )
        .await
        .expect("add");
    let cb = callback_for("rails", 9);
    for i in 0..64 {
        sky.client
            .add_callback(&format!("cb{i}"), &cb)
            .await
            .unwrap_or_else(|e| panic!("callback {i} of 64: {e}"));
    }
    sky.client
        .add_callback("cb0", &cb)
        .await
        .expect("the same callback again replaces it");
    let r = req(
        &sky,
        "PUT",
        "/skydns/callbacks/cb64",
        Some(&serde_json::to_value(&cb).expect("json")),
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(
        r.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("s1") && e.contains("64")),
        "{}",
        r.text()
    );

    // One callback may not attach to more than 4,096 services.
    let mut set = tokio::task::JoinSet::new();
    for worker in 0..8u32 {
        let client = sky.client.clone();
        set.spawn(async move {
            for i in (worker..4097).step_by(8) {
                let host = format!("10.1.{}.{}", i / 250, i % 250 + 1);
                client
                    .add_service(
                        &format!("m{i}"),
                        &service("many", "production", "", &host, 80, 600),
                    )
                    .await
                    .expect("add");
            }
        });
    }
    while let Some(done) = set.join_next().await {
        done.expect("task");
    }
    let broad = Callback {
        name: "many".into(),
        reply: "127.0.0.1".into(),
        port: 9,
        ..Callback::default()
    };
    let r = req(
        &sky,
        "PUT",
        "/skydns/callbacks/broad",
        Some(&serde_json::to_value(&broad).expect("json")),
    )
    .await;
    assert_bad_field(&r, "Name", "a callback matching 4,097 services");
    sky.client.delete_service("m0").await.expect("delete");
    sky.client
        .add_callback("broad", &broad)
        .await
        .expect("4,096 services are within the limit");
}

async fn timed<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    let start = Instant::now();
    let out = fut.await;
    assert!(
        start.elapsed() < Duration::from_millis(1000),
        "{what} stalled for {:?}",
        start.elapsed()
    );
    out
}

#[tokio::test]
async fn a_slow_or_dead_callback_listener_does_not_stall_the_api() {
    let sky = SkyDns::start(&[]).await;
    // A listener that accepts and never answers, and a port where nobody listens.
    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let dead_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    for i in 0..20 {
        let host = format!("127.0.1.{}", i + 1);
        sky.client
            .add_service(
                &format!("s{i}"),
                &service("slow", "production", "east", &host, 80, 60),
            )
            .await
            .expect("add");
    }
    sky.client
        .add_callback("silent", &callback_for("slow", silent_port))
        .await
        .expect("callback");
    sky.client
        .add_callback("dead", &callback_for("slow", dead_port))
        .await
        .expect("callback");

    for i in 0..20 {
        timed("DELETE", sky.client.delete_service(&format!("s{i}")))
            .await
            .expect("delete");
    }
    // While 20 deliveries hang on the silent listener, the API and DNS answer at once.
    timed(
        "PUT",
        sky.client.add_service(
            "n1",
            &service("fast", "production", "", "127.0.0.30", 80, 60),
        ),
    )
    .await
    .expect("add");
    let got = timed("GET", sky.client.get_service("n1"))
        .await
        .expect("get");
    assert_eq!(got.host, "127.0.0.30");
    timed("list", sky.client.list_services(None))
        .await
        .expect("list");
    let msg = timed(
        "DNS",
        sky.query("fast.production.skydns.local.", RecordType::A),
    )
    .await;
    assert_eq!(a_records(&msg), ["127.0.0.30"]);
    timed("DELETE", sky.client.delete_service("n1"))
        .await
        .expect("delete");
    hold.abort();
}

#[tokio::test]
async fn with_a_secret_every_route_needs_the_authorization_header() {
    let sky = SkyDns::start(&["-secret", "s3cret"]).await;
    let good = rails("127.0.0.10");
    let r = req(&sky, "PUT", "/skydns/services/1001", Some(&good)).await;
    assert_eq!(r.status, 401, "no header: {}", r.text());
    let bytes = body(&good);
    let r = http(
        sky.http,
        "PUT",
        "/skydns/services/1001",
        &[("Authorization", "wrong")],
        Some(&bytes),
    )
    .await
    .expect("answer");
    assert_eq!(r.status, 401, "wrong secret: {}", r.text());
    let r = http(
        sky.http,
        "PUT",
        "/skydns/services/1001",
        &[("Authorization", "s3cret-and-more")],
        Some(&bytes),
    )
    .await
    .expect("answer");
    assert_eq!(r.status, 401, "secret with a suffix");
    for (m, p) in [
        ("GET", "/skydns/services/"),
        ("GET", "/skydns/regions/"),
        ("GET", "/skydns/environments/"),
        ("GET", "/skydns/services/1001"),
        ("DELETE", "/skydns/services/1001"),
    ] {
        assert_eq!(req(&sky, m, p, None).await.status, 401, "{m} {p}");
    }
    assert!(matches!(
        sky.client.list_services(None).await,
        Err(ClientError::Unauthorized(_))
    ));
    assert!(matches!(
        sky.client
            .clone()
            .with_secret("nope")
            .get_service("1001")
            .await,
        Err(ClientError::Unauthorized(_))
    ));
    // Nothing was registered by the refused PUTs.
    assert_eq!(
        sky.query(RAILS, RecordType::A).await.metadata.response_code,
        ResponseCode::NXDomain
    );

    let r = http(
        sky.http,
        "PUT",
        "/skydns/services/1001",
        &[("Authorization", "s3cret")],
        Some(&bytes),
    )
    .await
    .expect("answer");
    assert_eq!(r.status, 201, "right secret: {}", r.text());
    let client = sky.client.clone().with_secret("s3cret");
    client
        .add_service(
            "1002",
            &service("rails", "production", "east", "127.0.0.11", 80, 60),
        )
        .await
        .expect("add");
    assert_eq!(
        client.get_service("1001").await.expect("get").host,
        "127.0.0.10"
    );
    assert_eq!(client.list_services(None).await.expect("list").len(), 2);
    client.heartbeat("1001", 60).await.expect("heartbeat");
    client.delete_service("1002").await.expect("delete");
    assert_eq!(
        a_records(&sky.query(RAILS, RecordType::A).await),
        ["127.0.0.10"]
    );
}

#[tokio::test]
async fn no_expire_services_keep_answering() {
    let sky = SkyDns::start(&[]).await;
    let forever = Service {
        no_expire: true,
        ..service("db", "production", "", "127.0.0.40", 5432, 1)
    };
    sky.client
        .add_service("forever", &forever)
        .await
        .expect("add");
    let never_set = Service {
        no_expire: true,
        ..service("db", "production", "", "127.0.0.41", 5432, 0)
    };
    sky.client
        .add_service("forever0", &never_set)
        .await
        .expect("add with TTL 0");
    sky.client
        .add_service(
            "short",
            &service("db", "production", "", "127.0.0.42", 5432, 1),
        )
        .await
        .expect("add");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let msg = sky
        .query("db.production.skydns.local.", RecordType::A)
        .await;
    assert_eq!(
        a_records(&msg),
        ["127.0.0.40", "127.0.0.41"],
        "the TTL-1 service expired, NoExpire ones stay"
    );
    assert!(
        msg.answers.iter().all(|r| r.ttl == 3600),
        "NoExpire answers carry the default TTL: {:?}",
        msg.answers
    );
    let got = sky.client.get_service("forever").await.expect("get");
    assert!(got.no_expire);
    assert!(got.expires.is_none(), "no expiry date: {got:?}");
    sky.client
        .heartbeat("forever", 5)
        .await
        .expect("heartbeat on NoExpire is accepted");
    assert!(matches!(
        sky.client.get_service("short").await,
        Err(ClientError::NotFound(_))
    ));
}

fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && labels.iter().all(|lab| l.contains(lab)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn metrics_count_dns_and_api_traffic_and_health_answers() {
    let sky = SkyDns::start(&[]).await;
    let r = req(&sky, "GET", "/health", None).await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("ok"), "{}", r.text());

    sky.client
        .add_service(
            "m1",
            &service("rails", "production", "east", "127.0.0.10", 80, 60),
        )
        .await
        .expect("add");
    assert_eq!(
        req(&sky, "GET", "/skydns/services/none", None).await.status,
        404
    );
    for _ in 0..3 {
        sky.query(RAILS, RecordType::A).await;
    }
    sky.query("nosuch.production.skydns.local.", RecordType::SRV)
        .await;

    let r = req(&sky, "GET", "/metrics", None).await;
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(text.contains("skydns_dns_queries_total"), "{text}");
    assert!(text.contains("skydns_api_requests_total"), "{text}");
    assert!(
        metric_sum(&text, "skydns_dns_queries_total", &["qtype=\"A\""]) >= 3.0,
        "{text}"
    );
    assert!(
        metric_sum(&text, "skydns_dns_queries_total", &["qtype=\"SRV\""]) >= 1.0,
        "{text}"
    );
    assert!(
        metric_sum(
            &text,
            "skydns_api_requests_total",
            &["method=\"PUT\"", "status=\"201\""]
        ) >= 1.0,
        "{text}"
    );
    assert!(
        metric_sum(
            &text,
            "skydns_api_requests_total",
            &["method=\"GET\"", "status=\"404\""]
        ) >= 1.0,
        "{text}"
    );
    assert!(
        text.contains("skydns_registry_services 1"),
        "registry size: {text}"
    );
    assert!(
        text.contains("skydns_dns_latency_seconds"),
        "latency histogram: {text}"
    );
    assert!(
        metric_sum(
            &text,
            "skydns_api_requests_total",
            &["route=\"/skydns/services/{uuid}\"", "method=\"PUT\""]
        ) >= 1.0,
        "requests by route: {text}"
    );
    assert!(
        metric_sum(
            &text,
            "skydns_dns_queries_total",
            &["qtype=\"SRV\"", "rcode=\"Non-Existent Domain\""]
        ) + metric_sum(
            &text,
            "skydns_dns_queries_total",
            &["qtype=\"SRV\"", "rcode=\"NXDomain\""]
        ) >= 1.0,
        "queries by rcode: {text}"
    );

    // Expiries are counted.
    sky.client
        .add_service(
            "m2",
            &service("short", "production", "", "127.0.0.11", 80, 1),
        )
        .await
        .expect("add");
    let counted = eventually(Duration::from_secs(3), || async {
        let text = req(&sky, "GET", "/metrics", None).await.text();
        text.lines().any(|l| l == "skydns_registry_expired_total 1")
    })
    .await;
    assert!(
        counted,
        "expiry counted: {}",
        req(&sky, "GET", "/metrics", None).await.text()
    );
}

fn run(cmd: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run `{cmd}` (is it installed? apt-get install {cmd}): {e}")
        })
}

#[tokio::test]
async fn tls_serves_the_api_over_https_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("k.pem");
    let cert = dir.path().join("c.pem");
    let (key_s, cert_s) = (key.to_str().expect("utf8"), cert.to_str().expect("utf8"));
    let out = run(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            key_s,
            "-out",
            cert_s,
            "-days",
            "1",
        ],
    );
    assert!(
        out.status.success(),
        "openssl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let sky = SkyDns::start(&["-tls-key", key_s, "-tls-pem", cert_s]).await;
    let addr: SocketAddr = sky.http;
    let https = format!("https://{addr}/skydns/services/");
    let curl = |args: Vec<String>| async move {
        tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            run("curl", &refs)
        })
        .await
        .expect("curl task")
    };

    let out = curl(vec![
        "-sk".into(),
        "-m".into(),
        "5".into(),
        "-w".into(),
        "\n%{http_code}".into(),
        https.clone(),
    ])
    .await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl over TLS failed: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.trim(), "[]\n200", "answer over TLS");

    let put = format!("https://{addr}/skydns/services/tls1");
    let out = curl(vec![
        "-sk".into(),
        "-m".into(),
        "5".into(),
        "-o".into(),
        "/dev/null".into(),
        "-w".into(),
        "%{http_code}".into(),
        "-X".into(),
        "PUT".into(),
        "-d".into(),
        r#"{"Name":"rails","Environment":"production","Host":"127.0.0.10","Port":80,"TTL":60}"#
            .into(),
        put,
    ])
    .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "201", "PUT over TLS");
    assert_eq!(
        a_records(
            &sky.query("rails.production.skydns.local.", RecordType::A)
                .await
        ),
        ["127.0.0.10"]
    );

    let plain = format!("http://{addr}/skydns/services/");
    let out = curl(vec![
        "-s".into(),
        "-m".into(),
        "5".into(),
        "-o".into(),
        "/dev/null".into(),
        "-w".into(),
        "%{http_code}".into(),
        plain,
    ])
    .await;
    let code = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        !out.status.success() || code != "200",
        "plain HTTP must not be served: exit {:?} code {code}",
        out.status
    );
    assert_ne!(code, "200");
}

#[tokio::test]
async fn the_api_answers_right_after_start_and_services_resolve_at_once() {
    let sky = SkyDns::start(&[]).await;
    let ok = eventually(Duration::from_secs(2), || async {
        sky.client
            .add_service(
                "x1",
                &service("now", "production", "", "127.0.0.50", 80, 60),
            )
            .await
            .is_ok()
    })
    .await;
    assert!(ok, "registration accepted");
    // No propagation delay: the very next query sees it.
    assert_eq!(
        a_records(
            &sky.query("now.production.skydns.local.", RecordType::A)
                .await
        ),
        ["127.0.0.50"]
    );
}

#[tokio::test]
async fn only_the_owner_may_renew_or_remove_and_the_list_filters_by_owner() {
    let sky = SkyDns::start(&[]).await;
    let a = sky.client.clone().with_owner("agent-a");
    let b = sky.client.clone().with_owner("agent-b");
    let mut svc = service("web", "prod", "east", "127.0.0.10", 80, 60);
    a.add_service("w1", &svc).await.expect("a registers w1");
    svc.host = "127.0.0.11".into();
    sky.client
        .add_service("w2", &svc)
        .await
        .expect("an unowned registration");
    assert_eq!(
        sky.client
            .get_service("w1")
            .await
            .expect("get")
            .owner
            .as_deref(),
        Some("agent-a"),
        "the client names its owner in the registration"
    );

    // Another owner: 409 on every write, with a message naming both owners.
    match b.add_service("w1", &svc).await {
        Err(ClientError::Conflict(m)) => assert!(m.contains("agent-a"), "{m}"),
        other => panic!("PUT over another's uuid: {other:?}"),
    }
    match b.heartbeat("w1", 5).await {
        Err(ClientError::Conflict(m)) => {
            assert!(m.contains("agent-a") && m.contains("agent-b"), "{m}")
        }
        other => panic!("heartbeat of another's service: {other:?}"),
    }
    match b.delete_service("w1").await {
        Err(ClientError::Conflict(m)) => assert!(m.contains("agent-a"), "{m}"),
        other => panic!("delete of another's service: {other:?}"),
    }
    // A request naming an owner may not touch an unowned service either.
    assert!(matches!(
        b.heartbeat("w2", 5).await,
        Err(ClientError::Conflict(_))
    ));
    assert!(matches!(
        b.delete_service("w2").await,
        Err(ClientError::Conflict(_))
    ));
    // The same over raw HTTP: ?owner= on PATCH and DELETE.
    let r = req(
        &sky,
        "PATCH",
        "/skydns/services/w1?owner=agent-b",
        Some(&json!({"TTL": 5})),
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.text());
    let r = req(&sky, "DELETE", "/skydns/services/w1?owner=agent-b", None).await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(
        r.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("agent-a")),
        "{}",
        r.text()
    );

    // Nothing was changed by the refused writes: w1 keeps its 60 s.
    let w1 = sky
        .client
        .get_service("w1")
        .await
        .expect("w1 is still there");
    assert!(
        w1.ttl > 50,
        "a refused heartbeat changed the TTL: {}",
        w1.ttl
    );
    assert_eq!(
        a_records(&sky.query("web.prod.skydns.local.", RecordType::A).await),
        ["127.0.0.10", "127.0.0.11"]
    );

    // The owner's own writes pass; the list filters by owner.
    a.heartbeat("w1", 30).await.expect("the owner's heartbeat");
    let owned = |list: Vec<Service>| list.into_iter().map(|s| s.uuid).collect::<Vec<_>>();
    assert_eq!(
        owned(a.list_owned_by("agent-a").await.expect("list")),
        ["w1"]
    );
    assert!(a.list_owned_by("agent-b").await.expect("list").is_empty());
    let r = req(
        &sky,
        "GET",
        "/skydns/services/?query=web.prod&owner=agent-a",
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json().as_array().map(Vec::len), Some(1), "{}", r.text());
    a.delete_service("w1").await.expect("the owner removes w1");

    // A SkyDNS v1 client names no owner and is not checked, as in v1.
    a.add_service("w3", &svc).await.expect("register w3");
    sky.client.heartbeat("w3", 30).await.expect("v1 heartbeat");
    sky.client.delete_service("w3").await.expect("v1 delete");
    sky.client
        .delete_service("w2")
        .await
        .expect("v1 delete of an unowned one");
}
