//! Services over the wire: PUT/GET/PATCH/DELETE and their status codes,
//! NoExpire, and an API that answers right after start.

use std::time::Duration;

use hickory_proto::{op::ResponseCode, rr::RecordType};
use serde_json::json;
use skydns_tests::{ClientError, Service, SkyDns, a_records, eventually, service};

use super::*;
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
