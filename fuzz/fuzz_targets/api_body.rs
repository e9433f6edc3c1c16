//! REST API body decoding and validation, through the real router
//! (`skydns::fuzzing::api_router`) over a registry on a `MemoryStore`.
//!
//! Input: up to 6 requests separated by 0xFF bytes, each a route
//! (registration PUT, heartbeat PATCH, callback PUT) and a uuid chosen by its
//! first byte, then an arbitrary body. Invariants
//! besides "no panic":
//! - every answer is 2xx or 4xx (the memory store never fails), and every
//!   4xx carries the JSON error body;
//! - a rejected request changes nothing (same services before and after);
//! - an accepted registration is a valid service: it reads back with GET,
//!   its DNS name parses and fits 255 bytes, and the body read back is
//!   accepted again under another uuid (validation is stable).
#![no_main]

use std::sync::LazyLock;

use axum::{
    Router,
    body::Body,
    http::{Method, Request, StatusCode},
};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use skydns::{Registry, fuzzing::to_label};
use skydns_api::Service;
use skydns_fuzz::{DOMAIN, empty_registry, runtime};
use tower::ServiceExt;

static RT: LazyLock<tokio::runtime::Runtime> = LazyLock::new(runtime);

#[derive(Debug, Clone, Copy)]
enum Route {
    Register,
    Heartbeat,
    Callback,
}

/// Uuids a call can use: ordinary ones (so calls meet), a dotted one, one at
/// the 63-byte label limit and one over it.
const UUIDS: [&str; 8] = [
    "1001",
    "web-1",
    "a",
    "UPPER",
    "u_1",
    "dot.ted",
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
];

/// Splits the input into calls at 0xFF bytes (never valid in UTF-8 JSON);
/// each call's first byte picks the route (bits 0-1) and the uuid (bits
/// 2-4); the rest is its body.
fn calls(data: &[u8]) -> impl Iterator<Item = (Route, &'static str, &[u8])> {
    data.split(|b| *b == 0xFF).filter_map(|chunk| {
        let (&head, body) = chunk.split_first()?;
        let route = match head & 3 {
            0 | 3 => Route::Register,
            1 => Route::Heartbeat,
            _ => Route::Callback,
        };
        let uuid = UUIDS
            .get(usize::from((head >> 2) & 7))
            .copied()
            .unwrap_or("1001");
        Some((route, uuid, body))
    })
}

async fn send(router: &Router, method: Method, path: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .expect("request");
    let resp = router.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    (status, bytes)
}

fn snapshot(registry: &Registry) -> Vec<Service> {
    let mut all: Vec<Service> = registry
        .lookup(&skydns::fuzzing::Pattern::parse("").expect("match-all pattern"))
        .iter()
        .map(|e| {
            let mut s = e.service.to_service();
            s.ttl = 0; // heartbeats legitimately change it
            s
        })
        .collect();
    all.sort_by(|a, b| a.uuid.cmp(&b.uuid));
    all
}

fn check_valid(uuid: &str, s: &Service) {
    // The service's DNS name as the registry labels it (empty optional
    // fields have no label).
    let fields = [
        uuid,
        s.host.trim_end_matches('.'),
        &s.region,
        &s.version,
        &s.name,
        &s.environment,
    ];
    let labels: Vec<Box<str>> = fields
        .iter()
        .filter(|f| !f.is_empty())
        .map(|f| to_label(f))
        .chain(DOMAIN.split('.').map(Box::from))
        .collect();
    // Raw labels: DNS carries any bytes; only lengths are limited.
    let parsed = hickory_proto::rr::Name::from_labels(labels.iter().map(|l| l.as_bytes()))
        .unwrap_or_else(|e| panic!("accepted service has no DNS name {labels:?}: {e}"));
    assert!(parsed.len() <= 255, "name {labels:?} over 255 bytes");
    assert_eq!(
        parsed.num_labels() as usize,
        labels.len(),
        "a field of {labels:?} is not a single label"
    );
    assert!(s.port != 0, "accepted port 0");
    assert!(s.ttl > 0 || s.no_expire, "accepted TTL 0 without NoExpire");
    assert!(!s.host.is_empty(), "accepted an empty Host");
}

fuzz_target!(|data: &[u8]| {
    RT.block_on(async {
        let registry = empty_registry().await;
        let router = skydns::fuzzing::api_router(registry.clone());
        for (route, uuid, body) in calls(data).take(6) {
            let (method, path) = match route {
                Route::Register => (Method::PUT, format!("/skydns/services/{uuid}")),
                Route::Heartbeat => (Method::PATCH, format!("/skydns/services/{uuid}")),
                Route::Callback => (Method::PUT, format!("/skydns/callbacks/{uuid}")),
            };
            let before = snapshot(&registry);
            let (status, body) = send(&router, method, &path, body.to_vec()).await;
            assert!(
                status.is_success() || status.is_client_error(),
                "{path}: status {status}, body {}",
                String::from_utf8_lossy(&body)
            );
            if status.is_client_error() {
                let err: skydns_api::ApiError = serde_json::from_slice(&body).unwrap_or_else(|e| {
                    panic!("{status} without a JSON error body ({e}): {body:?}")
                });
                assert!(!err.error.is_empty(), "empty error message");
                assert_eq!(
                    before,
                    snapshot(&registry),
                    "a rejected {path} changed the registry"
                );
                continue;
            }
            if matches!(route, Route::Register) {
                let (st, got) = send(&router, Method::GET, &path, Vec::new()).await;
                assert_eq!(st, StatusCode::OK, "registered {uuid:?} does not read back");
                let service: Service = serde_json::from_slice(&got).expect("GET body is a Service");
                check_valid(&uuid, &service);
                let again = format!("/skydns/services/{uuid}-again");
                if !registry.get(&format!("{uuid}-again")).is_some() && uuid.len() < 40 {
                    let mut body = service.clone();
                    body.uuid = String::new();
                    body.expires = None;
                    if body.no_expire {
                        body.ttl = 0;
                    }
                    body.ttl = body.ttl.max(1);
                    let (st, msg) = send(
                        &router,
                        Method::PUT,
                        &again,
                        serde_json::to_vec(&body).expect("json"),
                    )
                    .await;
                    // Longer uuid can push the name over 253 bytes; anything
                    // else must be accepted again.
                    assert!(
                        st == StatusCode::CREATED
                            || (st == StatusCode::BAD_REQUEST
                                && String::from_utf8_lossy(&msg).contains("over the limit")),
                        "read-back body of {uuid:?} rejected: {st} {}",
                        String::from_utf8_lossy(&msg)
                    );
                }
            }
        }
    });
});
