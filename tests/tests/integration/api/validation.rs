//! Bad input: every rejected request names the field at fault (400),
//! malformed or oversized bodies, and nothing stored is changed by them.

use hickory_proto::rr::RecordType;
use serde_json::{Value, json};
use skydns_tests::{ClientError, SkyDns, a_records, http, service};

use super::*;
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
