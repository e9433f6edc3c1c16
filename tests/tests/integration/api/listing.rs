//! Reading the registry: the list and its DNS-style query, counts per
//! region and environment, and ownership (only an owner renews or removes).

use hickory_proto::rr::RecordType;
use serde_json::json;
use skydns_tests::{Client, ClientError, Service, SkyDns, a_records, service};

use super::*;
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
