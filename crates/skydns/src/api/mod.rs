//! The HTTP API: SkyDNS v1's registry routes under `/skydns/`, plus
//! `/metrics` and `/health`.
//!
//! [`router`] builds the axum `Router`; [`serve`] runs it on a bound listener
//! (plain or TLS) until the cancellation token fires.

mod body;
mod error;
mod handlers;

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
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_secret,
        ));
    Router::new()
        .merge(skydns)
        .route("/metrics", get(handlers::metrics))
        .route("/health", get(handlers::health))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
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
        let given = given.strip_prefix(b"Bearer ").unwrap_or(given);
        if !bool::from(given.ct_eq(secret.as_bytes())) {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(req).await
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
