//! The HTTP API: SkyDNS v1's registry routes under `/skydns/`, plus
//! `/metrics` and `/health`.
//!
//! [`router`] builds the axum `Router`; [`serve`] runs it on a bound listener
//! (plain or TLS) until the cancellation token fires. Both apply the
//! [`ApiLimits`] (connection cap, header/body read timeouts, write rate).

mod body;
mod error;
mod gate;
mod handlers;
pub mod limits;
mod starting;
mod status;

use std::{path::PathBuf, sync::Arc, time::Duration};

use axum::{
    Router, middleware,
    routing::{get, put},
};
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

pub use error::ApiError;
pub use limits::ApiLimits;
pub use starting::Starting;
pub use status::OPENAPI;

/// Every (method, path) the router serves; the OpenAPI document lists
/// exactly these (a test holds them equal).
pub const ROUTES: &[(&str, &str)] = &[
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

use crate::{Error, metrics::Metrics, readiness::Readiness, registry::Registry};

/// Largest accepted request body; larger ones get 413.
pub const MAX_BODY: usize = 64 * 1024;

/// What every handler can reach.
#[derive(Clone)]
pub(crate) struct AppState {
    registry: Registry,
    metrics: Arc<Metrics>,
    secret: Option<Arc<str>>,
    readiness: Readiness,
}

/// TLS certificate and key files for the API.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain (`-tls-pem`).
    pub cert: PathBuf,
    /// PEM private key (`-tls-key`).
    pub key: PathBuf,
}

/// The API router over `registry` with the default [`ApiLimits`]. With a
/// `secret`, every `/skydns/` route requires `Authorization: <secret>` (or
/// `Bearer <secret>`).
pub fn router(registry: Registry, metrics: Arc<Metrics>, secret: Option<String>) -> Router {
    let readiness = Readiness::new();
    readiness.set_ready();
    router_with_limits(registry, metrics, secret, &ApiLimits::default(), readiness)
}

/// [`router`] with explicit limits: writes beyond `limits.write_rate` per
/// client get 429, a write body not received within
/// `limits.body_read_timeout` gets 408. `/ready` reports `readiness`.
pub fn router_with_limits(
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

/// True when an Authorization header carries the secret: as SkyDNS v1 sent it
/// (the bare secret), as `Bearer <secret>`, or as HTTP Basic with the secret
/// as password (what browsers send for the status page). Compared in
/// constant time.
fn secret_matches(given: &[u8], secret: &[u8]) -> bool {
    use base64::Engine as _;
    if let Some(b64) = given.strip_prefix(b"Basic ") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap_or_default();
        let password = decoded.splitn(2, |b| *b == b':').nth(1).unwrap_or_default();
        return constant_time_eq(password, secret);
    }
    let given = given.strip_prefix(b"Bearer ").unwrap_or(given);
    constant_time_eq(given, secret)
}

/// `given == secret` in a time that depends on the secret's length only:
/// unlike `subtle`'s slice `ct_eq`, it does not return early when the
/// lengths differ, so a wrong guess does not even tell the secret's length.
fn constant_time_eq(given: &[u8], secret: &[u8]) -> bool {
    let mut same = given.len().ct_eq(&secret.len());
    for (i, s) in secret.iter().enumerate() {
        same &= given.get(i).copied().unwrap_or(!*s).ct_eq(s);
    }
    bool::from(same)
}

/// Loads the API's TLS certificate and key.
///
/// # Errors
/// [`Error::Tls`] naming both files when either cannot be read or parsed.
pub async fn load_tls(files: &TlsFiles) -> Result<RustlsConfig, Error> {
    RustlsConfig::from_pem_file(&files.cert, &files.key)
        .await
        .map_err(|e| {
            Error::Tls(format!(
                "cannot load -tls-pem {} / -tls-key {}: {e}",
                files.cert.display(),
                files.key.display()
            ))
        })
}

/// Serves `app` on `listener` (over TLS when `tls` is given) with the
/// default [`ApiLimits`] until `token` is cancelled, then drains in-flight
/// requests for up to five seconds.
///
/// # Errors
/// [`Error::Io`] when serving fails.
pub async fn serve(
    listener: std::net::TcpListener,
    app: Router,
    tls: Option<RustlsConfig>,
    token: CancellationToken,
) -> Result<(), Error> {
    serve_with_limits(listener, app, tls, token, ApiLimits::default()).await
}

/// [`serve`] with explicit limits: at most `limits.max_connections`
/// connections (more are closed on accept), and a request's header block
/// must arrive within `limits.header_read_timeout` of the connection's start
/// or of the previous response (which also closes idle keep-alive
/// connections).
///
/// # Errors
/// [`Error::Io`] when serving fails.
pub async fn serve_with_limits(
    listener: std::net::TcpListener,
    app: Router,
    tls: Option<RustlsConfig>,
    token: CancellationToken,
    limits: ApiLimits,
) -> Result<(), Error> {
    listener.set_nonblocking(true)?;
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    let stop_task = tokio::spawn(async move {
        token.cancelled().await;
        stopper.graceful_shutdown(Some(Duration::from_secs(5)));
    });
    let connections = limits::ConnectionLimit::new(limits.max_connections);
    let make = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let served = match tls {
        None => {
            let mut server = axum_server::from_tcp(listener)?
                .acceptor(connections)
                .handle(handle)
                .first_request_timeout(limits.header_read_timeout)
                .http1_only();
            server
                .http_builder()
                .http1()
                .header_read_timeout(limits.header_read_timeout);
            server.serve(make).await
        }
        Some(config) => {
            let acceptor = RustlsAcceptor::new(config).acceptor(connections);
            let mut server = axum_server::from_tcp(listener)?
                .acceptor(acceptor)
                .handle(handle)
                .first_request_timeout(limits.header_read_timeout);
            server
                .http_builder()
                .http1()
                .header_read_timeout(limits.header_read_timeout);
            server
                .http_builder()
                .http2()
                .max_concurrent_streams(MAX_H2_STREAMS)
                .keep_alive_interval(limits.header_read_timeout)
                .keep_alive_timeout(limits.header_read_timeout);
            server.serve(make).await
        }
    };
    stop_task.abort();
    served?;
    Ok(())
}

/// Concurrent requests on one HTTP/2 connection (TLS only).
const MAX_H2_STREAMS: u32 = 64;

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use axum::{
        body::Body,
        http::{Request as HttpRequest, header},
    };
    use tower::ServiceExt;

    use super::*;
    use crate::{
        registry::{Registry, RegistryOptions},
        store::MemoryStore,
    };

    async fn app() -> Router {
        limited_app(ApiLimits::default()).await
    }

    fn documented() -> BTreeSet<(String, String)> {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
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
        let metrics = Arc::new(Metrics::new());
        let options = RegistryOptions {
            domain: "skydns.local".into(),
            no_expire_ttl: 3600,
        };
        let (registry, _) = Registry::open(Arc::new(MemoryStore), options, Arc::clone(&metrics))
            .await
            .expect("opens");
        let readiness = Readiness::new();
        readiness.set_ready();
        router_with_limits(registry, metrics, None, &limits, readiness)
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

    async fn closed_within(s: &mut tokio::net::TcpStream, within: Duration) -> bool {
        use tokio::io::AsyncReadExt as _;
        let mut buf = [0u8; 256];
        loop {
            match tokio::time::timeout(within, s.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }

    #[tokio::test]
    async fn serve_closes_slow_headers_and_connections_beyond_the_cap() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let limits = ApiLimits {
            max_connections: 2,
            header_read_timeout: Duration::from_millis(300),
            ..ApiLimits::default()
        };
        let token = CancellationToken::new();
        let server = tokio::spawn(serve_with_limits(
            listener,
            app().await,
            None,
            token.clone(),
            limits,
        ));
        let mut slow1 = tokio::net::TcpStream::connect(addr).await.expect("c1");
        slow1.write_all(b"GET /health HT").await.expect("part");
        let mut slow2 = tokio::net::TcpStream::connect(addr).await.expect("c2");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut third = tokio::net::TcpStream::connect(addr).await.expect("c3");
        assert!(
            closed_within(&mut third, Duration::from_millis(200)).await,
            "a connection beyond the cap is closed at once"
        );
        assert!(
            closed_within(&mut slow1, Duration::from_secs(2)).await,
            "headers too slow"
        );
        assert!(
            closed_within(&mut slow2, Duration::from_secs(2)).await,
            "idle too long"
        );
        let mut ok = tokio::net::TcpStream::connect(addr).await.expect("c4");
        ok.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("request");
        let mut reply = Vec::new();
        ok.read_to_end(&mut reply).await.expect("reply");
        assert!(
            reply.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&reply)
        );
        token.cancel();
        server.await.expect("task").expect("served");
    }

    #[test]
    fn secrets_are_accepted_bare_bearer_and_basic() {
        assert!(secret_matches(b"s3cret", b"s3cret"));
        assert!(secret_matches(b"Bearer s3cret", b"s3cret"));
        assert!(secret_matches(b"Basic dXNlcjpzM2NyZXQ=", b"s3cret")); // user:s3cret
        assert!(!secret_matches(b"Basic dXNlcjp3cm9uZw==", b"s3cret")); // user:wrong
        assert!(!secret_matches(b"s3cret2", b"s3cret"));
        assert!(!secret_matches(b"", b"s3cret"));
        assert!(!secret_matches(b"s3cre", b"s3cret"));
        assert!(!secret_matches(b"s3crex", b"s3cret"));
        assert!(!secret_matches(b"Bearer ", b"s3cret"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"a", b""));
    }
}
