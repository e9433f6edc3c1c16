//! What operators read: metrics counting DNS and API traffic, health.

use std::time::Duration;

use hickory_proto::rr::RecordType;
use skydns_tests::{SkyDns, eventually, service};

use super::*;

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
