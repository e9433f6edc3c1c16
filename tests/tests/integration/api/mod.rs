//! The REST registry over the wire, by topic. Shared helpers live here.

mod auth;
pub(crate) mod callbacks;
mod listing;
mod ops;
mod services;
mod validation;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use skydns_tests::{HttpReply, SkyDns, http};

pub(super) const RAILS: &str = "rails.production.skydns.local.";

pub(super) fn body(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("json")
}

pub(super) async fn req(sky: &SkyDns, method: &str, path: &str, b: Option<&Value>) -> HttpReply {
    let bytes = b.map(body);
    http(sky.http, method, path, &[], bytes.as_deref())
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

pub(super) fn rails(host: &str) -> Value {
    json!({"Name":"rails","Version":"1.0.0","Environment":"production","Region":"east","Host":host,"Port":80,"TTL":60})
}

/// Asserts a 400 whose JSON body is `{"error": <non-empty>, "field": field}`.
pub(super) fn assert_bad_field(r: &HttpReply, field: &str, what: &str) {
    assert_eq!(r.status, 400, "{what}: {}", r.text());
    let j = r.json();
    assert!(
        j["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: error message in {j}"
    );
    assert_eq!(j["field"], field, "{what}: field named in {j}");
}

pub(super) async fn timed<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    let start = Instant::now();
    let out = fut.await;
    assert!(
        start.elapsed() < Duration::from_millis(1000),
        "{what} stalled for {:?}",
        start.elapsed()
    );
    out
}
