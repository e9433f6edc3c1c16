//! The HTTP API: SkyDNS v1's registry routes under `/skydns/`, plus
//! `/metrics` and `/health`.
//!
//! [`router`] builds the axum `Router`; [`serve`] runs it on a bound listener
//! (plain or TLS) until the cancellation token fires. Both apply the
//! [`ApiLimits`] (connection cap, header/body read timeouts, write rate).
//!
//! # Layout
//! - `handlers`: one function per registry route; `status`: status page,
//!   `/events`, `/ready`, OpenAPI; `starting`: the answers while the store loads.
//! - `gate`: the middleware every request passes (secret, write rate, body).
//! - `body`: JSON bodies decoded with errors naming the field; `error`: the
//!   one place errors become HTTP answers.
//! - `auth`: the secret; `tls`: certificates; [`limits`]; `serve`.

mod auth;
mod body;
mod error;
mod gate;
mod handlers;
pub mod limits;
mod serve;
mod starting;
mod status;
mod tls;

use std::sync::Arc;

use axum::{
    Router, middleware,
    routing::{get, put},
};

pub use limits::ApiLimits;
pub(crate) use serve::serve;
pub(crate) use starting::Starting;
pub use tls::TlsFiles;
pub(crate) use tls::load_tls;

/// Every (method, path) the router serves; the OpenAPI document lists
/// exactly these (a test holds them equal).
pub(crate) const ROUTES: &[(&str, &str)] = &[
    ("PUT", "/skydns/services/{uuid}"),
    ("GET", "/skydns/services/{uuid}"),
    ("PATCH", "/skydns/services/{uuid}"),
    ("DELETE", "/skydns/services/{uuid}"),
    ("GET", "/skydns/services/"),
    ("GET", "/skydns/services"),
    ("PUT", "/skydns/callbacks/{uuid}"),
    ("GET", "/skydns/regions/"),
    ("GET", "/skydns/environments/"),
    ("GET", "/skydns/expiries/"),
    ("GET", "/events"),
    ("GET", "/"),
    ("GET", "/metrics"),
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/openapi.json"),
];

use crate::{metrics::Metrics, readiness::Readiness, registry::Registry};

/// Largest accepted request body; larger ones get 413.
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// What every handler can reach.
#[derive(Clone)]
pub(crate) struct AppState {
    registry: Registry,
    metrics: Arc<Metrics>,
    secret: Option<Arc<str>>,
    readiness: Readiness,
}

/// The API router over `registry`. With a `secret`, every `/skydns/` route
/// requires `Authorization: <secret>` (or `Bearer <secret>`, or HTTP Basic
/// with it as the password). Writes beyond `limits.write_rate` per client
/// get 429, a write body not received within `limits.body_read_timeout`
/// gets 408. `/ready` reports `readiness`.
pub(crate) fn router(
    registry: Registry,
    metrics: Arc<Metrics>,
    secret: Option<String>,
    limits: &ApiLimits,
    readiness: Readiness,
) -> Router {
    let state = AppState {
        registry,
        metrics,
        secret: secret.map(Arc::from),
        readiness,
    };
    let gate = Arc::new(gate::Gate {
        state: state.clone(),
        writes: Arc::new(limits::WriteLimiter::new(
            limits.write_rate,
            limits.write_burst,
        )),
        body_timeout: limits.body_read_timeout,
    });
    Router::new()
        .route(
            "/skydns/services/{uuid}",
            put(handlers::add_service)
                .get(handlers::get_service)
                .patch(handlers::heartbeat)
                .delete(handlers::remove_service),
        )
        .route("/skydns/services/", get(handlers::list_services))
        .route("/skydns/services", get(handlers::list_services))
        .route("/skydns/callbacks/{uuid}", put(handlers::add_callback))
        .route("/skydns/regions/", get(handlers::regions))
        .route("/skydns/environments/", get(handlers::environments))
        .route("/skydns/expiries/", get(status::expiries))
        .route("/events", get(status::events))
        .route("/", get(status::page))
        .route("/metrics", get(handlers::metrics))
        .route("/health", get(handlers::health))
        .route("/ready", get(status::ready))
        .route("/openapi.json", get(status::openapi))
        // No `DefaultBodyLimit` layer: the gate reads and limits every
        // write's body before a handler sees it (413 beyond `MAX_BODY`).
        .layer(middleware::from_fn_with_state(gate, gate::gate))
        .with_state(state)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::{collections::BTreeSet, time::Duration};

    use axum::{
        body::Body,
        http::{Request as HttpRequest, header},
    };
    use tower::ServiceExt;

    use super::*;

    pub(crate) async fn app() -> Router {
        limited_app(ApiLimits::default()).await
    }

    fn documented() -> BTreeSet<(String, String)> {
        let doc: serde_json::Value =
            serde_json::from_str(status::OPENAPI).expect("openapi.json is JSON");
        let mut out = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in ["get", "put", "patch", "delete", "post"] {
                if item.get(method).is_some() {
                    out.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        out
    }

    #[test]
    fn openapi_lists_exactly_the_routes() {
        let routes: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| ((*m).to_string(), (*p).to_string()))
            .collect();
        assert_eq!(documented(), routes);
    }

    #[tokio::test]
    async fn the_router_serves_every_listed_route_and_nothing_else_on_those_paths() {
        let listed: BTreeSet<(String, String)> = documented();
        let paths: BTreeSet<&String> = listed.iter().map(|(_, p)| p).collect();
        for path in paths {
            let concrete = path.replace("{uuid}", "x1");
            for method in ["GET", "PUT", "PATCH", "DELETE", "POST"] {
                if path == "/events" && method == "GET" {
                    continue; // an endless stream; served, as the listing says
                }
                let req = HttpRequest::builder()
                    .method(method)
                    .uri(&concrete)
                    .body(Body::from("{}"))
                    .expect("request");
                let status = app().await.oneshot(req).await.expect("response").status();
                let served = status != axum::http::StatusCode::METHOD_NOT_ALLOWED
                    && status != axum::http::StatusCode::NOT_FOUND
                    || (status == axum::http::StatusCode::NOT_FOUND && concrete.contains("x1"));
                let should = listed.contains(&(method.to_string(), path.clone()));
                assert_eq!(served, should, "{method} {path} answered {status}");
            }
        }
    }

    async fn limited_app(limits: ApiLimits) -> Router {
        let registry = crate::registry::test_support::registry().await;
        router(
            registry,
            Arc::new(Metrics::new()),
            None,
            &limits,
            Readiness::ready(),
        )
    }

    const BODY: &str = r#"{"Name":"web","Version":"1","Environment":"prod","Region":"east","Host":"10.0.0.1","Port":80,"TTL":30}"#;

    #[tokio::test]
    async fn writes_beyond_the_rate_get_429_with_json_and_reads_do_not() {
        let app = limited_app(ApiLimits {
            write_rate: 1,
            write_burst: 2,
            ..ApiLimits::default()
        })
        .await;
        let put = |i: u32| {
            HttpRequest::builder()
                .method("PUT")
                .uri(format!("/skydns/services/u{i}"))
                .header("content-type", "application/json")
                .body(Body::from(BODY))
                .expect("request")
        };
        for i in 0..2 {
            let status = app
                .clone()
                .oneshot(put(i))
                .await
                .expect("response")
                .status();
            assert!(status.is_success(), "write {i}: {status}");
        }
        let resp = app.clone().oneshot(put(9)).await.expect("response");
        assert_eq!(resp.status(), axum::http::StatusCode::TOO_MANY_REQUESTS);
        assert!(resp.headers().contains_key(header::RETRY_AFTER));
        let body = axum::body::to_bytes(resp.into_body(), MAX_BODY)
            .await
            .expect("body");
        let err: skydns_api::ApiError = serde_json::from_slice(&body).expect("JSON error");
        assert!(err.error.contains("too many writes"), "{}", err.error);
        // Reads are not limited, and the throttled write stored nothing.
        let get = HttpRequest::builder()
            .uri("/skydns/services/u9")
            .body(Body::empty())
            .expect("request");
        let status = app.clone().oneshot(get).await.expect("response").status();
        assert_eq!(status, axum::http::StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn a_body_that_never_arrives_gets_408_and_a_large_one_413() {
        let app = limited_app(ApiLimits {
            body_read_timeout: Duration::from_millis(100),
            ..ApiLimits::default()
        })
        .await;
        let never = futures_util::stream::pending::<Result<Vec<u8>, std::io::Error>>();
        let req = HttpRequest::builder()
            .method("PUT")
            .uri("/skydns/services/slow")
            .header("content-type", "application/json")
            .body(Body::from_stream(never))
            .expect("request");
        let resp = app.clone().oneshot(req).await.expect("response");
        assert_eq!(resp.status(), axum::http::StatusCode::REQUEST_TIMEOUT);
        let body = axum::body::to_bytes(resp.into_body(), MAX_BODY)
            .await
            .expect("body");
        let err: skydns_api::ApiError = serde_json::from_slice(&body).expect("JSON error");
        assert_eq!(err.field.as_deref(), Some("body"));

        let chunks = futures_util::stream::iter(
            (0..20).map(|_| Ok::<_, std::io::Error>(vec![b' '; 8 * 1024])),
        );
        let req = HttpRequest::builder()
            .method("PUT")
            .uri("/skydns/services/big")
            .header("content-type", "application/json")
            .body(Body::from_stream(chunks))
            .expect("request");
        let resp = app.clone().oneshot(req).await.expect("response");
        assert_eq!(resp.status(), axum::http::StatusCode::PAYLOAD_TOO_LARGE);
    }
}
