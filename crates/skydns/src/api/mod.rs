//! The HTTP API: SkyDNS v1's registry routes under `/skydns/`, plus
//! `/metrics` and `/health`.
//!
//! [`router`] builds the axum `Router`; [`serve`] runs it on a bound listener
//! (plain or TLS) until the cancellation token fires.

mod body;
mod error;
mod handlers;
mod status;

use std::{path::PathBuf, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::{DefaultBodyLimit, MatchedPath, Request, State},
    http::header,
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, put},
};
use axum_server::tls_rustls::RustlsConfig;
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

pub use error::ApiError;
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

use crate::{
    Error,
    metrics::{ApiLabels, Metrics},
    registry::Registry,
};

/// Largest accepted request body; larger ones get 413.
pub const MAX_BODY: usize = 64 * 1024;

/// What every handler can reach.
#[derive(Clone)]
pub(crate) struct AppState {
    registry: Registry,
    metrics: Arc<Metrics>,
    secret: Option<Arc<str>>,
}

/// TLS certificate and key files for the API.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain (`-tls-pem`).
    pub cert: PathBuf,
    /// PEM private key (`-tls-key`).
    pub key: PathBuf,
}

/// The API router over `registry`. With a `secret`, every `/skydns/` route
/// requires `Authorization: <secret>` (or `Bearer <secret>`).
pub fn router(registry: Registry, metrics: Arc<Metrics>, secret: Option<String>) -> Router {
    let state = AppState {
        registry,
        metrics,
        secret: secret.map(Arc::from),
    };
    let skydns = Router::new()
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
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_secret,
        ));
    Router::new()
        .merge(skydns)
        .route("/metrics", get(handlers::metrics))
        .route("/health", get(handlers::health))
        .route("/ready", get(status::ready))
        .route("/openapi.json", get(status::openapi))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .layer(middleware::map_response(json_errors))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

async fn require_secret(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(secret) = &state.secret {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if !secret_matches(given, secret.as_bytes()) {
            let mut resp = ApiError::unauthorized().into_response();
            // Lets a browser ask for the secret (as the password) for the status page.
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"skydns\", charset=\"UTF-8\""),
            );
            return resp;
        }
    }
    next.run(req).await
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
        return bool::from(password.ct_eq(secret));
    }
    let given = given.strip_prefix(b"Bearer ").unwrap_or(given);
    bool::from(given.ct_eq(secret))
}

/// Gives the client errors axum produces itself (413 body too large, 404 no
/// route, 405 wrong method, 400 from extractors) the same JSON body as ours.
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !status.is_client_error() || is_json {
        return resp;
    }
    let (error, field) = match status.as_u16() {
        413 => (
            format!("request body is larger than {MAX_BODY} bytes"),
            Some("body".to_string()),
        ),
        404 => ("no such route".to_string(), None),
        405 => ("method not allowed on this route".to_string(), None),
        _ => (
            status
                .canonical_reason()
                .unwrap_or("bad request")
                .to_string(),
            None,
        ),
    };
    let (mut parts, _) = resp.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = serde_json::to_vec(&skydns_api::ApiError { error, field }).unwrap_or_default();
    parts.headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, axum::body::Body::from(body))
}

async fn count_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = req.method().to_string();
    let resp = next.run(req).await;
    let labels = ApiLabels {
        route,
        method,
        status: resp.status().as_u16(),
    };
    state.metrics.api_requests.get_or_create(&labels).inc();
    resp
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

/// Serves `app` on `listener` (over TLS when `tls` is given) until `token` is
/// cancelled, then drains in-flight requests for up to five seconds.
///
/// # Errors
/// [`Error::Io`] when serving fails.
pub async fn serve(
    listener: std::net::TcpListener,
    app: Router,
    tls: Option<RustlsConfig>,
    token: CancellationToken,
) -> Result<(), Error> {
    listener.set_nonblocking(true)?;
    match tls {
        None => {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            axum::serve(listener, app)
                .with_graceful_shutdown(token.cancelled_owned())
                .await?;
        }
        Some(config) => {
            let handle = axum_server::Handle::new();
            let stopper = handle.clone();
            let stop_task = tokio::spawn(async move {
                token.cancelled().await;
                stopper.graceful_shutdown(Some(Duration::from_secs(5)));
            });
            let served = axum_server::from_tcp_rustls(listener, config)?
                .handle(handle)
                .serve(app.into_make_service())
                .await;
            stop_task.abort();
            served?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use axum::{body::Body, http::Request as HttpRequest};
    use tower::ServiceExt;

    use super::*;
    use crate::{
        registry::{Registry, RegistryOptions},
        store::MemoryStore,
    };

    async fn app() -> Router {
        let metrics = Arc::new(Metrics::new());
        let options = RegistryOptions {
            domain: "skydns.local".into(),
            no_expire_ttl: 3600,
        };
        let (registry, _) = Registry::open(Arc::new(MemoryStore), options, Arc::clone(&metrics))
            .await
            .expect("opens");
        router(registry, metrics, None)
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

    #[test]
    fn secrets_are_accepted_bare_bearer_and_basic() {
        assert!(secret_matches(b"s3cret", b"s3cret"));
        assert!(secret_matches(b"Bearer s3cret", b"s3cret"));
        assert!(secret_matches(b"Basic dXNlcjpzM2NyZXQ=", b"s3cret")); // user:s3cret
        assert!(!secret_matches(b"Basic dXNlcjp3cm9uZw==", b"s3cret")); // user:wrong
        assert!(!secret_matches(b"s3cret2", b"s3cret"));
        assert!(!secret_matches(b"", b"s3cret"));
    }
}
